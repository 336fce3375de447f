"""Extra elementwise cases for tests/test_elementwise.c: broadcasts with () scalars and
with both operands expanded, a bias-sized gradient reduction, pow exponents with their own
kernels, activations at large magnitudes, and where() with all three operands broadcast.
Bool tensors are stored as I64 0/1 and listed in the metadata key "bool"."""

import torch
import torch.nn.functional as F

from .common import away_from_zero, fixture, meta_str, op_case, positive, randn

_BIN = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
        "mul": lambda a, b: a * b, "div": lambda a, b: a / b}

# name: (op, shape_a, shape_b)
_CASES = {
    "op_add_scalar0_2x3_extra": ("add", (), (2, 3)),
    "op_sub_2x3_scalar0_extra": ("sub", (2, 3), ()),
    "op_mul_3x1_1x4_extra": ("mul", (3, 1), (1, 4)),
    "op_div_4x1x3_1x2x1_extra": ("div", (4, 1, 3), (1, 2, 1)),
    "op_mul_2x1x3x1_4x1x1_extra": ("mul", (2, 1, 3, 1), (4, 1, 1)),
    # a bias-like operand whose gradient sums 200 rows
    "op_add_bias_8x25x16_16_extra": ("add", (8, 25, 16), (16,)),
    "op_mul_rows_8x25x16_8x25x1_extra": ("mul", (8, 25, 16), (8, 25, 1)),
}

for _name, (_op, _sa, _sb) in _CASES.items():
    def _make(op=_op, sa=_sa, sb=_sb):
        a = torch.randn(sa)  # a shape tuple, so () gives a 0-d tensor
        b = away_from_zero(*sb, lo=0.5, hi=2.0) if op == "div" else torch.randn(sb)
        return op_case(_BIN[op], {"a": a, "b": b},
                       meta_str(op=op, shape_a=sa, shape_b=sb, formula=f"out = a {op} b"))
    fixture(_name)(_make)


_POW = {"2.5": 2.5, "m0.5": -0.5, "m2": -2.0, "1.5": 1.5}
for _tag, _e in _POW.items():
    def _pow(e=_e, tag=_tag):
        return op_case(lambda x: x.pow(e), {"x": positive(3, 4, lo=0.3, hi=2.0)},
                       meta_str(op="pow", exponent=e, formula=f"out = x ** {e}"))
    fixture(f"op_pow_{_tag}_extra")(_pow)


def _large():
    """Magnitudes from 0.01 to 200 with both signs."""
    mags = torch.tensor([0.01, 0.5, 3.0, 9.0, 15.0, 20.0, 30.0, 50.0, 88.0, 89.0, 100.0, 200.0])
    return torch.cat([mags, -mags]).reshape(4, 6)


@fixture("op_sigmoid_large_extra")
def _sigmoid_large():
    return op_case(torch.sigmoid, {"x": _large()}, meta_str(op="sigmoid", input="|x| to 200"))


@fixture("op_tanh_large_extra")
def _tanh_large():
    return op_case(torch.tanh, {"x": _large()}, meta_str(op="tanh", input="|x| to 200"))


@fixture("op_exp_large_extra")
def _exp_large():
    x = torch.tensor([[-200.0, -100.0, -20.0, 0.0], [20.0, 60.0, 88.0, 88.5]])
    return op_case(torch.exp, {"x": x}, meta_str(op="exp", input="large |x|"))


@fixture("op_gelu_wide_extra")
def _gelu_wide():
    return op_case(lambda x: F.gelu(x), {"x": randn(4, 6, std=4.0)},
                   meta_str(op="gelu", approximate="none", input="x ~ N(0, 4^2)"))


@fixture("op_gelu_tanh_wide_extra")
def _gelu_tanh_wide():
    return op_case(lambda x: F.gelu(x, approximate="tanh"), {"x": randn(4, 6, std=4.0)},
                   meta_str(op="gelu", approximate="tanh", input="x ~ N(0, 4^2)"))


@fixture("op_where_all_bcast_extra")
def _where_all():
    return op_case(lambda cond, a, b: torch.where(cond, a, b),
                   {"cond": torch.rand(3, 1) < 0.5, "a": randn(1, 4), "b": randn(2, 1, 1)},
                   meta_str(op="where", formula="out = cond ? a : b; cond (3,1), a (1,4), "
                                                "b (2,1,1) -> (2,3,4)"))


@fixture("op_masked_fill_up_extra")
def _masked_fill_up():
    mask = torch.rand(2, 3, 4) < 0.4
    return op_case(lambda x, mask: x.masked_fill(mask, 2.5),
                   {"x": randn(3, 1), "mask": mask},
                   meta_str(op="masked_fill", value=2.5,
                            note="x (3,1) and mask (2,3,4) broadcast together -> (2,3,4)"))
