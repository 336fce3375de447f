"""Matmul (2-D, batched 3-D, either operand transposed) and shape ops: concat, narrow,
split, transpose, permute, reshape."""

import torch

from .common import fixture, meta_str, op_case, randn

# ---------------------------------------------------------------------------------------
# matmul. in.a / in.b are the STORED operands; with trans_a=1 the product uses a's last two
# dims swapped: out = matmul(a.transpose(-1, -2), b). Same for trans_b.

_MATMUL = {
    # name: (logical a shape, logical b shape)
    "2d": ((3, 4), (4, 5)),
    "3d": ((2, 3, 4), (2, 4, 5)),
}


def _tr(shape):
    return shape[:-2] + (shape[-1], shape[-2])


for _kind, (_la, _lb) in _MATMUL.items():
    for _ta in (False, True):
        for _tb in (False, True):
            def _mm(la=_la, lb=_lb, ta=_ta, tb=_tb):
                a = randn(*(_tr(la) if ta else la))
                b = randn(*(_tr(lb) if tb else lb))

                def fn(a, b):
                    return torch.matmul(a.transpose(-1, -2) if ta else a,
                                        b.transpose(-1, -2) if tb else b)
                f = f"out = matmul({'a^T' if ta else 'a'}, {'b^T' if tb else 'b'})"
                return op_case(fn, {"a": a, "b": b},
                               meta_str(op="matmul", trans_a=ta, trans_b=tb, formula=f))
            _suffix = ("_ta" if _ta else "") + ("_tb" if _tb else "")
            fixture(f"op_matmul_{_kind}{_suffix}")(_mm)


@fixture("op_matmul_3d_2d")
def _mm_3d_2d():
    return op_case(lambda a, b: torch.matmul(a, b), {"a": randn(2, 3, 4), "b": randn(4, 5)},
                   meta_str(op="matmul", trans_a=False, trans_b=False,
                            formula="out = matmul(a, b), b broadcast over the batch"))

# ---------------------------------------------------------------------------------------
# concat (3 inputs)


@fixture("op_cat_dim0")
def _cat0():
    return op_case(lambda a, b, c: torch.cat([a, b, c], dim=0),
                   {"a": randn(2, 3), "b": randn(1, 3), "c": randn(3, 3)},
                   meta_str(op="cat", dim=0, inputs="a,b,c"))


@fixture("op_cat_dim1")
def _cat1():
    return op_case(lambda a, b, c: torch.cat([a, b, c], dim=1),
                   {"a": randn(2, 1), "b": randn(2, 3), "c": randn(2, 2)},
                   meta_str(op="cat", dim=1, inputs="a,b,c"))


@fixture("op_cat_3d_dim1")
def _cat3():
    return op_case(lambda a, b, c: torch.cat([a, b, c], dim=1),
                   {"a": randn(2, 1, 3), "b": randn(2, 2, 3), "c": randn(2, 3, 3)},
                   meta_str(op="cat", dim=1, inputs="a,b,c"))

# ---------------------------------------------------------------------------------------
# narrow / split


for _shape, _dim, _start, _len in (((4, 5), 0, 1, 2), ((4, 5), 1, 1, 3), ((2, 5, 3), 1, 2, 3)):
    def _narrow(shape=_shape, dim=_dim, start=_start, length=_len):
        return op_case(lambda x: x.narrow(dim, start, length), {"x": randn(*shape)},
                       meta_str(op="narrow", dim=dim, start=start, length=length))
    fixture(f"op_narrow_{len(_shape)}d_dim{_dim}")(_narrow)


for _tag, _shape, _size, _dim in (("even_dim0", (6, 4), 2, 0), ("uneven_dim1", (3, 5), 2, 1)):
    def _split(shape=_shape, size=_size, dim=_dim):
        def fn(x):
            return {str(i): p for i, p in enumerate(torch.split(x, size, dim=dim))}
        n = -(-shape[dim] // size)
        return op_case(fn, {"x": randn(*shape)},
                       meta_str(op="split", split_size=size, dim=dim, chunks=n,
                                note="outputs out.0 .. out.<chunks-1>; the last may be shorter"))
    fixture(f"op_split_{_tag}")(_split)

# ---------------------------------------------------------------------------------------
# transpose / permute / reshape (outputs are contiguous copies in value)


@fixture("op_transpose_2d")
def _t2():
    return op_case(lambda x: x.transpose(0, 1), {"x": randn(3, 4)},
                   meta_str(op="transpose", dim0=0, dim1=1))


@fixture("op_transpose_3d_12")
def _t3():
    return op_case(lambda x: x.transpose(1, 2), {"x": randn(2, 3, 4)},
                   meta_str(op="transpose", dim0=1, dim1=2))


@fixture("op_permute_3d")
def _perm():
    return op_case(lambda x: x.permute(2, 0, 1), {"x": randn(2, 3, 4)},
                   meta_str(op="permute", dims=(2, 0, 1)))


@fixture("op_reshape")
def _reshape():
    return op_case(lambda x: x.reshape(6, 4), {"x": randn(2, 3, 4)},
                   meta_str(op="reshape", shape=(6, 4)))
