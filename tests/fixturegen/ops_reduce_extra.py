"""Extra softmax cases for tests/test_softmax.c: dims other than the last, and -inf
entries (a fully masked row gives NaN values and NaN gradients, as in PyTorch)."""

import torch

from .common import fixture, meta_str, op_case, randn


@fixture("op_softmax_dim0_extra")
def _softmax_dim0():
    return op_case(lambda x: torch.softmax(x, dim=0), {"x": randn(4, 5, std=2.0)},
                   meta_str(op="softmax", dim=0))


@fixture("op_log_softmax_dim1_extra")
def _log_softmax_dim1():
    return op_case(lambda x: torch.log_softmax(x, dim=1), {"x": randn(2, 3, 4, std=2.0)},
                   meta_str(op="log_softmax", dim=1, note="x (2, 3, 4); dim 1 is not contiguous"))


def _neginf_input():
    x = randn(3, 4, std=2.0)
    x[0, 1] = float("-inf")
    x[1, :] = float("-inf")  # fully masked row
    x[2, 0] = float("-inf")
    x[2, 3] = float("-inf")
    return x


for _op in ("softmax", "log_softmax"):
    def _neginf(op=_op):
        fn = getattr(torch, op)
        return op_case(lambda x: fn(x, dim=-1), {"x": _neginf_input()},
                       meta_str(op=op, dim=-1, note="-inf entries; row 1 is all -inf (NaN)"))
    fixture(f"op_{_op}_neginf_extra")(_neginf)
