"""The fused transformer-layer ops without dropout (PyTorch's dropout masks cannot be
matched): F.relu(F.linear(x, weight, bias)) as tg_linear_relu_dropout computes it, and the
residual x + F.linear(a, weight, bias) of tg_linear_dropout_add. x (and a) are (T, B, features)
as a sequence-first layer's input."""

import torch.nn.functional as F

from .common import fixture, meta_str, op_case, randn

for _bias in (True, False):
    def _lrd(bias=_bias):
        T, B, IN, OUT = 3, 4, 6, 10
        inputs = {"x": randn(T, B, IN), "weight": randn(OUT, IN, std=0.5)}
        if bias:
            inputs["bias"] = randn(OUT, std=0.5)

        def fn(x, weight, bias=None):
            return F.dropout(F.relu(F.linear(x, weight, bias)), p=0.0)
        return op_case(fn, inputs, meta_str(op="linear_relu_dropout", bias=bias))
    fixture(f"op_linear_relu_dropout_{'bias' if _bias else 'nobias'}")(_lrd)


for _bias in (True, False):
    def _lda(bias=_bias):
        T, B, IN, OUT = 3, 4, 6, 5
        inputs = {"x": randn(T, B, OUT), "a": randn(T, B, IN), "weight": randn(OUT, IN, std=0.5)}
        if bias:
            inputs["bias"] = randn(OUT, std=0.5)

        def fn(x, a, weight, bias=None):
            return x + F.dropout(F.linear(a, weight, bias), p=0.0)
        return op_case(fn, inputs, meta_str(op="linear_dropout_add", bias=bias))
    fixture(f"op_linear_dropout_add_{'bias' if _bias else 'nobias'}")(_lda)
