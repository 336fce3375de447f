"""The fused output layer: F.linear then F.cross_entropy, as tg_linear_cross_entropy computes
them in one op. x is (T, B, in) as a language model's GRU output; targets (T, B) with some
positions ignored; x, weight and bias require grad."""

import torch.nn.functional as F

from .common import fixture, meta_str, op_case, randint, randn

_LCE = {
    # name: (reduction, ignore_index, bias)
    "mean": ("mean", -100, True),
    "sum": ("sum", -100, True),
    "none": ("none", -100, True),
    "nobias_mean": ("mean", -100, False),
    "custom_ignore_sum": ("sum", 3, True),  # an ignore_index that is a valid class
}

for _name, (_red, _ign, _bias) in _LCE.items():
    def _lce(red=_red, ign=_ign, bias=_bias):
        T, B, IN, V = 3, 4, 6, 11
        target = randint(V, T, B)
        target[0, 1] = ign
        target[2, 3] = ign
        inputs = {"x": randn(T, B, IN), "weight": randn(V, IN, std=0.5), "target": target}
        if bias:
            inputs["bias"] = randn(V, std=0.5)

        def fn(x, weight, target, bias=None):
            logits = F.linear(x, weight, bias)
            return F.cross_entropy(logits.view(-1, V), target.view(-1), ignore_index=ign,
                                   reduction=red)
        return op_case(fn, inputs, meta_str(op="linear_cross_entropy", reduction=red,
                                            ignore_index=ign, bias=bias))
    fixture(f"op_linear_cross_entropy_{_name}")(_lce)
