"""Cases the matmul/shape/index tests need beyond ops_matmul_shape.py and ops_index.py:
select, linear without bias and with a 1-D input, a shared 2-D operand on the left, a
transposed 3-D x 2-D product, embedding with a negative padding_idx."""

import torch
import torch.nn.functional as F

from .common import fixture, meta_str, op_case, randn


@fixture("op_select_dim1_last")
def _select():
    return op_case(lambda x: x.select(1, -1), {"x": randn(2, 4, 3)},
                   meta_str(op="select", dim=1, index=-1))


@fixture("op_select_dim0")
def _select0():
    return op_case(lambda x: x.select(0, 1), {"x": randn(3, 5)},
                   meta_str(op="select", dim=0, index=1))


@fixture("op_linear_nobias_3d")
def _linear_nobias():
    return op_case(lambda x, weight: F.linear(x, weight),
                   {"x": randn(2, 3, 5), "weight": randn(4, 5)},
                   meta_str(op="linear", bias="none", formula="out = x @ weight^T"))


@fixture("op_linear_1d")
def _linear_1d():
    return op_case(lambda x, weight, bias: F.linear(x, weight, bias),
                   {"x": randn(5), "weight": randn(4, 5), "bias": randn(4)},
                   meta_str(op="linear", formula="out = x @ weight^T + bias, 1-D x -> 1-D out"))


@fixture("op_matmul_2d_3d")
def _mm_2d_3d():
    return op_case(lambda a, b: torch.matmul(a, b), {"a": randn(3, 4), "b": randn(2, 4, 5)},
                   meta_str(op="matmul", trans_a=False, trans_b=False,
                            formula="out = matmul(a, b), a broadcast over the batch"))


@fixture("op_matmul_3d_2d_ta_tb")
def _mm_3d_2d_t():
    return op_case(lambda a, b: torch.matmul(a.transpose(-1, -2), b.transpose(-1, -2)),
                   {"a": randn(2, 4, 3), "b": randn(5, 4)},
                   meta_str(op="matmul", trans_a=True, trans_b=True,
                            formula="out = matmul(a^T, b^T), b broadcast over the batch"))


@fixture("op_embedding_padneg")
def _emb_padneg():
    ids = torch.tensor([[9, 2, 9], [2, 5, 0]])
    return op_case(lambda weight, ids: F.embedding(ids, weight, padding_idx=-1),
                   {"weight": randn(10, 3), "ids": ids},
                   meta_str(op="embedding", padding_idx=-1,
                            note="padding_idx -1 is row 9: its gradient is 0"))
