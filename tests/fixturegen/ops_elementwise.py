"""Elementwise ops: binary ops with broadcasting, scalar ops, pow, unary functions."""

import torch
import torch.nn.functional as F

from .common import away_from_zero, fixture, meta_str, op_case, positive, randn

# ---------------------------------------------------------------------------------------
# binary ops with NumPy broadcasting: a (shape_a) OP b (shape_b)

_BROADCASTS = {
    "same": ((2, 3), (2, 3)),
    "2x3_3": ((2, 3), (3,)),
    "2x1x4_3x1": ((2, 1, 4), (3, 1)),
    "2x3_1": ((2, 3), (1,)),
}
_BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _binary(op, sa, sb):
    def make():
        a = randn(*sa)
        b = away_from_zero(*sb, lo=0.5, hi=2.0) if op == "div" else randn(*sb)
        return op_case(_BINARY[op], {"a": a, "b": b},
                       meta_str(op=op, shape_a=sa, shape_b=sb, formula=f"out = a {_SYMBOL[op]} b"))
    return make


for _op in _BINARY:
    for _tag, (_sa, _sb) in _BROADCASTS.items():
        fixture(f"op_{_op}_{_tag}")(_binary(_op, _sa, _sb))

# ---------------------------------------------------------------------------------------
# scalar ops and pow


@fixture("op_neg")
def _neg():
    return op_case(lambda x: -x, {"x": randn(3, 4)}, meta_str(op="neg"))


@fixture("op_add_scalar")
def _add_scalar():
    return op_case(lambda x: x + 2.5, {"x": randn(3, 4)},
                   meta_str(op="add_scalar", scalar=2.5, formula="out = x + 2.5"))


@fixture("op_mul_scalar")
def _mul_scalar():
    return op_case(lambda x: x * -1.5, {"x": randn(3, 4)},
                   meta_str(op="mul_scalar", scalar=-1.5, formula="out = x * -1.5"))


_POW = {"2": 2.0, "3": 3.0, "0.5": 0.5, "-1": -1.0}
for _tag, _e in _POW.items():
    def _pow(e=_e, tag=_tag):
        # positive inputs for 0.5; away from zero for -1 (and for all, to keep it simple)
        x = positive(3, 4, lo=0.3, hi=2.0) if e in (0.5, -1.0) else away_from_zero(3, 4)
        return op_case(lambda x: x.pow(e), {"x": x},
                       meta_str(op="pow", exponent=tag, formula=f"out = x ** {tag}"))
    fixture(f"op_pow_{_tag.replace('-', 'm')}")(_pow)

# ---------------------------------------------------------------------------------------
# unary functions

_UNARY = {
    # name: (fn, input maker, note)
    "exp": (torch.exp, lambda: randn(3, 4), "x ~ N(0,1)"),
    "log": (torch.log, lambda: positive(3, 4, lo=0.1, hi=3.0), "x in [0.1, 3)"),
    "sqrt": (torch.sqrt, lambda: positive(3, 4, lo=0.1, hi=3.0), "x in [0.1, 3)"),
    "tanh": (torch.tanh, lambda: randn(3, 4, std=1.5), "x ~ N(0, 1.5^2)"),
    "sigmoid": (torch.sigmoid, lambda: randn(3, 4, std=2.0), "x ~ N(0, 2^2)"),
    "relu": (torch.relu, lambda: away_from_zero(3, 4, lo=0.05, hi=2.0), "|x| >= 0.05"),
    "gelu": (lambda x: F.gelu(x), lambda: randn(3, 4, std=1.5), "approximate='none'"),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), lambda: randn(3, 4, std=1.5),
                  "approximate='tanh'"),
}
for _name, (_fn, _mk, _note) in _UNARY.items():
    def _unary(fn=_fn, mk=_mk, name=_name, note=_note):
        meta = {"op": name.split("_")[0], "input": note}
        if name.startswith("gelu"):
            meta["approximate"] = "tanh" if name == "gelu_tanh" else "none"
        return op_case(fn, {"x": mk()}, meta)
    fixture(f"op_{_name}")(_unary)
