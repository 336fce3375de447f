"""Reductions: sum and mean (all / along a dim, keepdim), max along a dim, softmax and
log_softmax along the last dim."""

import torch

from .common import distinct, fixture, meta_str, op_case, randn

# ---------------------------------------------------------------------------------------
# sum / mean


for _op in ("sum", "mean"):
    def _all(op=_op):
        fn = (lambda x: x.sum()) if op == "sum" else (lambda x: x.mean())
        return op_case(fn, {"x": randn(3, 4)}, meta_str(op=op, dim="all", keepdim=False))
    fixture(f"op_{_op}_all")(_all)

    for _dim in (0, 1, -1):
        for _keep in (False, True):
            def _dim_case(op=_op, dim=_dim, keep=_keep):
                fn = getattr(torch, op)
                return op_case(lambda x: fn(x, dim=dim, keepdim=keep), {"x": randn(2, 3, 4)},
                               meta_str(op=op, dim=dim, keepdim=keep))
            _d = "m1" if _dim == -1 else str(_dim)
            fixture(f"op_{_op}_dim{_d}{'_keepdim' if _keep else ''}")(_dim_case)

# ---------------------------------------------------------------------------------------
# max along a dim (values get the gradient; no ties in the data)


for _dim, _keep in ((1, False), (-1, False), (0, True)):
    def _max(dim=_dim, keep=_keep):
        def fn(x):
            v, i = torch.max(x, dim=dim, keepdim=keep)
            return {"values": v, "indices": i}
        return op_case(fn, {"x": distinct(2, 3, 4)}, meta_str(op="max", dim=dim, keepdim=keep))
    _d = "m1" if _dim == -1 else str(_dim)
    fixture(f"op_max_dim{_d}{'_keepdim' if _keep else ''}")(_max)

# ---------------------------------------------------------------------------------------
# softmax / log_softmax along the last dim


def _softmax_input_2d():
    x = randn(4, 5, std=2.0)
    x[1] = torch.tensor([1000.0, 1001.0, 1002.0, 999.0, 1000.5])  # overflow without max-shift
    x[3] = torch.tensor([-50.0, 3.0, -1000.0, 2.5, 0.0])
    return x


for _op in ("softmax", "log_softmax"):
    def _sm2(op=_op):
        fn = getattr(torch, op)
        return op_case(lambda x: fn(x, dim=-1), {"x": _softmax_input_2d()},
                       meta_str(op=op, dim=-1, note="row 1 is ~1000, row 3 has -1000"))

    def _sm3(op=_op):
        fn = getattr(torch, op)
        return op_case(lambda x: fn(x, dim=-1), {"x": randn(2, 3, 4, std=2.0)},
                       meta_str(op=op, dim=-1))
    fixture(f"op_{_op}_2d")(_sm2)
    fixture(f"op_{_op}_3d")(_sm3)
