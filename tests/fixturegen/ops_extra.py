"""Ops that RNN, attention and Transformer code uses beside the core set, for
tests/test_ops_extra.c: stack, unsqueeze/squeeze/flatten, expand, repeat, chunk/split with sizes,
gather, index_select, one_hot, argmax/argmin, min along a dim, cumsum, sort, topk, clamp, abs,
pow with a tensor exponent, maximum/minimum, triu/tril, and masks made from token ids.

Integer outputs (indices, one_hot) are stored as I64 and have no gout. Inputs with ties or
exact boundary values are built on purpose where PyTorch has a rule for them (first index of a
tie, clamp's inclusive bounds, abs at 0, the halved gradient of maximum on a tie, pow at 0)."""

import torch
import torch.nn.functional as F

from .common import distinct, fixture, meta_str, op_case, positive, randn, uniform


def _ties(*shape, levels=3):
    """Small integers as floats: ties in every row."""
    return torch.randint(0, levels, shape).float()


# ---------------------------------------------------------------------------------------
# shapes


@fixture("op_stack_dim0")
def _():
    return op_case(lambda a, b, c: torch.stack([a, b, c], 0),
                   {"a": randn(2, 3), "b": randn(2, 3), "c": randn(2, 3)},
                   meta_str(op="stack", dim=0, n=3))


@fixture("op_stack_dimm1")
def _():
    return op_case(lambda a, b: torch.stack([a, b], -1), {"a": randn(2, 3), "b": randn(2, 3)},
                   meta_str(op="stack", dim=-1, n=2))


@fixture("op_unsqueeze_dimm1")
def _():
    return op_case(lambda x: x.unsqueeze(-1), {"x": randn(2, 3)}, meta_str(op="unsqueeze", dim=-1))


@fixture("op_squeeze_dim1")
def _():
    return op_case(lambda x: x.squeeze(1), {"x": randn(2, 1, 3)}, meta_str(op="squeeze", dim=1))


@fixture("op_squeeze_all")
def _():
    return op_case(lambda x: x.squeeze(), {"x": randn(1, 2, 1, 3, 1)}, meta_str(op="squeeze_all"))


@fixture("op_flatten_1_2")
def _():
    return op_case(lambda x: torch.flatten(x, 1, 2), {"x": randn(2, 3, 4, 2)},
                   meta_str(op="flatten", start_dim=1, end_dim=2))


@fixture("op_expand_2x1x3")
def _():
    return op_case(lambda x: x.expand(4, -1, 5, -1), {"x": randn(2, 1, 3)},
                   meta_str(op="expand", shape="4,-1,5,-1",
                            note="(2,1,3) -> (4,2,5,3): a new leading dim and a size-1 dim grow"))


@fixture("op_repeat_2x3")
def _():
    return op_case(lambda x: x.repeat(2, 1, 2), {"x": randn(2, 3)},
                   meta_str(op="repeat", repeats=(2, 1, 2), note="a new leading dim"))


@fixture("op_repeat_heads")
def _():
    return op_case(lambda x: x.repeat(3, 1, 1), {"x": randn(2, 4, 4)},
                   meta_str(op="repeat", repeats=(3, 1, 1),
                            note="a (N, L, S) mask for N*heads, as attention code does"))


@fixture("op_chunk_5_in_3")
def _():
    def fn(x):
        return {str(k): c for k, c in enumerate(torch.chunk(x, 3, dim=1))}
    return op_case(fn, {"x": randn(2, 5)}, meta_str(op="chunk", chunks=3, dim=1,
                                                    note="sizes 2, 2, 1"))


@fixture("op_split_sizes_dim0")
def _():
    def fn(x):
        return {str(k): c for k, c in enumerate(torch.split(x, [2, 4, 1], dim=0))}
    return op_case(fn, {"x": randn(7, 2)}, meta_str(op="split_sizes", sizes=(2, 4, 1), dim=0))


# ---------------------------------------------------------------------------------------
# indexing


@fixture("op_gather_dim1")
def _():
    index = torch.tensor([[0, 4], [2, 2], [1, 0]])  # a repeat in row 1: its gradient sums
    return op_case(lambda x, index: torch.gather(x, 1, index), {"x": randn(3, 5), "index": index},
                   meta_str(op="gather", dim=1))


@fixture("op_gather_dim0_smaller")
def _():
    index = torch.tensor([[3, 0], [3, 1]])
    return op_case(lambda x, index: torch.gather(x, 0, index), {"x": randn(4, 3), "index": index},
                   meta_str(op="gather", dim=0, note="index (2,2) smaller than x (4,3)"))


@fixture("op_index_select_dim0")
def _():
    index = torch.tensor([4, 0, 4, 2])
    return op_case(lambda x, index: torch.index_select(x, 0, index),
                   {"x": randn(5, 3), "index": index}, meta_str(op="index_select", dim=0))


@fixture("op_index_select_dim1")
def _():
    index = torch.tensor([1, 1, 3])
    return op_case(lambda x, index: torch.index_select(x, 1, index),
                   {"x": randn(2, 5, 3), "index": index}, meta_str(op="index_select", dim=1))


@fixture("op_one_hot_5")
def _():
    return op_case(lambda ids: F.one_hot(ids, 5), {"ids": torch.tensor([[0, 4, 2], [2, 1, 0]])},
                   meta_str(op="one_hot", num_classes=5))


@fixture("op_one_hot_infer")
def _():
    return op_case(lambda ids: F.one_hot(ids), {"ids": torch.tensor([3, 0, 1])},
                   meta_str(op="one_hot", num_classes=-1, note="num_classes = max + 1 = 4"))


@fixture("op_where_pad_mask")
def _():
    ids = torch.tensor([[5, 2, 0, 0], [7, 0, 3, 0], [1, 1, 1, 0]])
    return op_case(lambda ids, a, b: torch.where(ids == 0, a, b),
                   {"ids": ids, "a": randn(4), "b": randn(3, 4)},
                   meta_str(op="where_ids_eq", value=0, formula="out = where(ids == 0, a, b)"))


@fixture("op_masked_fill_key_padding")
def _():
    ids = torch.tensor([[5, 2, 0, 0], [7, 4, 3, 0]])
    return op_case(lambda x, ids: x.masked_fill((ids == 0).unsqueeze(1), -1e9),
                   {"x": randn(2, 3, 4), "ids": ids},
                   meta_str(op="masked_fill_ids_eq", value=0, fill=-1e9,
                            formula="out = x.masked_fill((ids == 0).unsqueeze(1), -1e9)"))


# ---------------------------------------------------------------------------------------
# reductions and sorting


@fixture("op_argmax_dim1_ties")
def _():
    return op_case(lambda x: torch.argmax(x, 1), {"x": _ties(4, 6)},
                   meta_str(op="argmax", dim=1, keepdim=False, note="ties: the first index"),
                   const=("x",))


@fixture("op_argmin_dim0_keepdim_ties")
def _():
    return op_case(lambda x: torch.argmin(x, 0, keepdim=True), {"x": _ties(5, 4, levels=2)},
                   meta_str(op="argmin", dim=0, keepdim=True, note="ties: the first index"),
                   const=("x",))


@fixture("op_min_dim1")
def _():
    def fn(x):
        v, i = torch.min(x, 1)
        return {"values": v, "indices": i}
    return op_case(fn, {"x": distinct(3, 5)}, meta_str(op="min_dim", dim=1, keepdim=False))


@fixture("op_cumsum_dim1")
def _():
    return op_case(lambda x: torch.cumsum(x, 1), {"x": randn(3, 5)}, meta_str(op="cumsum", dim=1))


@fixture("op_cumsum_dim0_3d")
def _():
    return op_case(lambda x: torch.cumsum(x, 0), {"x": randn(4, 2, 3)},
                   meta_str(op="cumsum", dim=0))


@fixture("op_sort_desc_dim1")
def _():
    def fn(x):
        v, i = torch.sort(x, dim=1, descending=True)
        return {"values": v, "indices": i}
    return op_case(fn, {"x": distinct(3, 6)}, meta_str(op="sort", dim=1, descending=True))


@fixture("op_sort_stable_ties_dim0")
def _():
    def fn(x):
        v, i = torch.sort(x, dim=0, stable=True)
        return {"values": v, "indices": i}
    return op_case(fn, {"x": _ties(6, 3)},
                   meta_str(op="sort", dim=0, descending=False, stable=True,
                            note="ties keep their order"))


@fixture("op_topk_3_dimm1")
def _():
    def fn(x):
        v, i = torch.topk(x, 3, dim=-1)
        return {"values": v, "indices": i}
    return op_case(fn, {"x": distinct(2, 3, 7)}, meta_str(op="topk", k=3, dim=-1, largest=True))


@fixture("op_topk_2_smallest_dim0")
def _():
    def fn(x):
        v, i = torch.topk(x, 2, dim=0, largest=False)
        return {"values": v, "indices": i}
    return op_case(fn, {"x": distinct(5, 4)}, meta_str(op="topk", k=2, dim=0, largest=False))


# ---------------------------------------------------------------------------------------
# elementwise


def _with_bounds(lo, hi, *shape):
    """Uniform values with some exactly on the bounds (clamp's gradient is 1 there)."""
    x = uniform(*shape, lo=2 * lo, hi=2 * hi).reshape(-1)
    x[0], x[3], x[5] = lo, hi, lo
    return x.reshape(*shape)


@fixture("op_clamp_both")
def _():
    return op_case(lambda x: torch.clamp(x, -0.5, 0.5), {"x": _with_bounds(-0.5, 0.5, 3, 4)},
                   meta_str(op="clamp", min=-0.5, max=0.5))


@fixture("op_clamp_min")
def _():
    return op_case(lambda x: torch.clamp(x, min=0.25), {"x": _with_bounds(0.25, 1.0, 3, 4)},
                   meta_str(op="clamp", min=0.25, max="none"))


@fixture("op_clamp_max")
def _():
    return op_case(lambda x: torch.clamp(x, max=-0.25), {"x": _with_bounds(-1.0, -0.25, 3, 4)},
                   meta_str(op="clamp", min="none", max=-0.25))


@fixture("op_abs_zeros")
def _():
    x = randn(3, 4).reshape(-1)
    x[1] = x[6] = 0.0
    return op_case(torch.abs, {"x": x.reshape(3, 4)}, meta_str(op="abs", note="two exact zeros"))


@fixture("op_pow_tensor_bcast")
def _():
    return op_case(lambda a, b: torch.pow(a, b),
                   {"a": positive(3, 4, lo=0.3, hi=2.0), "b": uniform(4, lo=-2.0, hi=2.0)},
                   meta_str(op="pow_tensor", formula="out = a ** b, b (4,) broadcast"))


@fixture("op_pow_tensor_special")
def _():
    a = torch.tensor([0.0, 0.0, 0.0, -1.5, -2.0, 1.5])
    b = torch.tensor([0.0, 2.0, 0.5, 2.0, 3.0, 0.0])
    return op_case(lambda a, b: torch.pow(a, b), {"a": a, "b": b},
                   meta_str(op="pow_tensor", note="0^0, 0^2, 0^0.5, negative bases (grad.b NaN), "
                                                  "x^0"))


@fixture("op_maximum_ties_bcast")
def _():
    return op_case(lambda a, b: torch.maximum(a, b), {"a": _ties(3, 1), "b": _ties(1, 4)},
                   meta_str(op="maximum", note="ties split the gradient in halves"))


@fixture("op_minimum_ties")
def _():
    return op_case(lambda a, b: torch.minimum(a, b), {"a": _ties(3, 4), "b": _ties(3, 4)},
                   meta_str(op="minimum", note="ties split the gradient in halves"))


@fixture("op_triu_k1")
def _():
    return op_case(lambda x: torch.triu(x, 1), {"x": randn(2, 3, 4)},
                   meta_str(op="triu", diagonal=1))


@fixture("op_tril_km1")
def _():
    return op_case(lambda x: torch.tril(x, -1), {"x": randn(4, 3)},
                   meta_str(op="tril", diagonal=-1))


@fixture("op_tril_k0")
def _():
    return op_case(lambda x: torch.tril(x), {"x": randn(2, 4, 4)}, meta_str(op="tril", diagonal=0))


# pow with a scalar exponent at the edges of its rule: dx = p·x^(p-1), 0 when p = 0
_POW_EDGES = {"0": 0.0, "0.5": 0.5, "3": 3.0, "m1": -1.0}
for _tag, _p in _POW_EDGES.items():
    def _pow_edge(p=_p):
        x = torch.tensor([[0.0, -1.5, 2.0], [0.0, 0.25, -3.0]])
        return op_case(lambda x: x.pow(p), {"x": x},
                       meta_str(op="pow_scalar", exponent=p,
                                note="zeros and negative bases: inf and NaN where the rule gives "
                                     "them"))
    fixture(f"op_pow_scalar_{_tag}_edges")(_pow_edge)
