"""Index ops: embedding lookup (with padding_idx), masked_fill, where.
Bool tensors are stored as I64 0/1 and listed in the metadata key "bool"."""

import torch
import torch.nn.functional as F

from .common import fixture, meta_str, op_case, randn


@fixture("op_embedding")
def _emb():
    ids = torch.tensor([[3, 7, 3], [0, 9, 7]])  # 3 and 7 repeat
    return op_case(lambda weight, ids: F.embedding(ids, weight),
                   {"weight": randn(10, 4), "ids": ids},
                   meta_str(op="embedding", padding_idx="none",
                            note="ids 3 and 7 occur twice: their grad rows are sums"))


@fixture("op_embedding_pad0")
def _emb_pad():
    ids = torch.tensor([[0, 4, 4], [2, 0, 9]])
    return op_case(lambda weight, ids: F.embedding(ids, weight, padding_idx=0),
                   {"weight": randn(10, 4), "ids": ids},
                   meta_str(op="embedding", padding_idx=0,
                            note="weight row 0 is random (not zeroed): the lookup returns it, "
                                 "its gradient is 0"))


def _mask(*shape):
    m = torch.rand(*shape) < 0.4
    m[..., 0] = False  # every row keeps at least one unmasked entry
    return m


@fixture("op_masked_fill")
def _mf():
    return op_case(lambda x, mask: x.masked_fill(mask, -1e9),
                   {"x": randn(3, 4), "mask": _mask(3, 4)},
                   meta_str(op="masked_fill", value=-1e9, formula="out = where(mask, -1e9, x)"))


@fixture("op_masked_fill_bcast")
def _mf_b():
    return op_case(lambda x, mask: x.masked_fill(mask, -1e9),
                   {"x": randn(2, 3, 4), "mask": _mask(1, 4)},
                   meta_str(op="masked_fill", value=-1e9, note="mask (1,4) broadcast over x"))


@fixture("op_masked_fill_neginf_softmax")
def _mf_inf():
    return op_case(lambda x, mask: torch.softmax(x.masked_fill(mask, float("-inf")), dim=-1),
                   {"x": randn(3, 4), "mask": _mask(3, 4)},
                   meta_str(op="masked_fill+softmax", value="-inf", dim=-1,
                            formula="out = softmax(where(mask, -inf, x), -1)"))


@fixture("op_where")
def _where():
    return op_case(lambda cond, a, b: torch.where(cond, a, b),
                   {"cond": torch.rand(3, 4) < 0.5, "a": randn(3, 4), "b": randn(3, 4)},
                   meta_str(op="where", formula="out = cond ? a : b"))


@fixture("op_where_bcast")
def _where_b():
    return op_case(lambda cond, a, b: torch.where(cond, a, b),
                   {"cond": torch.rand(3, 4) < 0.5, "a": randn(3, 4), "b": randn(4)},
                   meta_str(op="where", formula="out = cond ? a : b, b (4,) broadcast"))
