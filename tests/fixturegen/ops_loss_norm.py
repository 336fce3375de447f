"""layer_norm and the losses: cross_entropy, nll_loss, mse_loss,
binary_cross_entropy_with_logits. Targets, class weights and pos_weight are inputs
without gradient."""

import torch
import torch.nn.functional as F

from .common import fixture, meta_str, op_case, positive, randint, randn

# ---------------------------------------------------------------------------------------
# layer_norm over the last dim, affine weight and bias random (not ones/zeros)


for _tag, _shape in (("2d", (3, 5)), ("3d", (2, 3, 4))):
    def _ln(shape=_shape):
        n = shape[-1]
        return op_case(lambda x, weight, bias: F.layer_norm(x, (n,), weight, bias, eps=1e-5),
                       {"x": randn(*shape, std=2.0) + 0.5, "weight": randn(n), "bias": randn(n)},
                       meta_str(op="layer_norm", normalized_shape=n, eps=1e-5))
    fixture(f"op_layer_norm_{_tag}")(_ln)

# ---------------------------------------------------------------------------------------
# cross_entropy from logits (N=6, C=4 unless noted)

_CE = {
    # name: (reduction, ignore some targets, label_smoothing, class weights)
    "mean": ("mean", False, 0.0, False),
    "sum": ("sum", False, 0.0, False),
    "none": ("none", False, 0.0, False),
    "ignore_mean": ("mean", True, 0.0, False),
    "ignore_sum": ("sum", True, 0.0, False),
    "ignore_none": ("none", True, 0.0, False),
    "ls_mean": ("mean", False, 0.1, False),
    "ls_sum": ("sum", False, 0.1, False),
    "ls_ignore_mean": ("mean", True, 0.1, False),
    "weight_mean": ("mean", False, 0.0, True),
    "weight_ignore_mean": ("mean", True, 0.0, True),
    "weight_ls_ignore_mean": ("mean", True, 0.1, True),
}


def _targets(n, c, ignore):
    t = randint(c, n)
    if ignore:
        t[1] = -100
        t[4] = -100
    return t


for _name, (_red, _ign, _ls, _w) in _CE.items():
    def _ce(red=_red, ign=_ign, ls=_ls, w=_w):
        inputs = {"logits": randn(6, 4, std=1.5), "target": _targets(6, 4, ign)}
        if w:
            inputs["weight"] = positive(4, lo=0.2, hi=2.0)

        def fn(logits, target, weight=None):
            return F.cross_entropy(logits, target, weight=weight, ignore_index=-100,
                                   reduction=red, label_smoothing=ls)
        return op_case(fn, inputs, meta_str(op="cross_entropy", reduction=red,
                                            ignore_index=-100, label_smoothing=ls,
                                            weight="in.weight" if w else "none"),
                       const=("weight",))
    fixture(f"op_cross_entropy_{_name}")(_ce)


@fixture("op_cross_entropy_3d_mean")
def _ce3():
    t = randint(4, 2, 3)
    t[0, 1] = -100
    return op_case(lambda logits, target: F.cross_entropy(logits, target, label_smoothing=0.1),
                   {"logits": randn(2, 4, 3), "target": t},
                   meta_str(op="cross_entropy", reduction="mean", ignore_index=-100,
                            label_smoothing=0.1, weight="none",
                            note="logits (N, C, d1) = (2, 4, 3); classes along dim 1"))

# ---------------------------------------------------------------------------------------
# nll_loss on log-probabilities (in.x is log_softmax of random logits)

_NLL = {
    "mean": ("mean", False, False),
    "sum": ("sum", False, False),
    "none": ("none", False, False),
    "ignore_mean": ("mean", True, False),
    "weight_ignore_mean": ("mean", True, True),
}
for _name, (_red, _ign, _w) in _NLL.items():
    def _nll(red=_red, ign=_ign, w=_w):
        inputs = {"x": torch.log_softmax(randn(6, 4, std=1.5), dim=-1),
                  "target": _targets(6, 4, ign)}
        if w:
            inputs["weight"] = positive(4, lo=0.2, hi=2.0)

        def fn(x, target, weight=None):
            return F.nll_loss(x, target, weight=weight, ignore_index=-100, reduction=red)
        return op_case(fn, inputs, meta_str(op="nll_loss", reduction=red, ignore_index=-100,
                                            weight="in.weight" if w else "none"),
                       const=("weight",))
    fixture(f"op_nll_loss_{_name}")(_nll)

# ---------------------------------------------------------------------------------------
# mse_loss (both operands get gradients)


for _red in ("mean", "sum", "none"):
    def _mse(red=_red):
        return op_case(lambda a, b: F.mse_loss(a, b, reduction=red),
                       {"a": randn(3, 4), "b": randn(3, 4)},
                       meta_str(op="mse_loss", reduction=red))
    fixture(f"op_mse_loss_{_red}")(_mse)

# ---------------------------------------------------------------------------------------
# binary_cross_entropy_with_logits (logits include +-30; target has no gradient)


def _bce_logits():
    x = randn(4, 3, std=2.0)
    x[0, 0], x[1, 2], x[3, 1] = 30.0, -30.0, 30.0
    return x


_BCE = {
    # name: (reduction, pos_weight, soft targets)
    "mean": ("mean", False, False),
    "sum": ("sum", False, False),
    "none": ("none", False, False),
    "pos_weight_mean": ("mean", True, False),
    "soft_mean": ("mean", False, True),
    "pos_weight_soft_mean": ("mean", True, True),
}
for _name, (_red, _pw, _soft) in _BCE.items():
    def _bce(red=_red, pw=_pw, soft=_soft):
        x = _bce_logits()
        y = torch.rand(4, 3) if soft else (torch.rand(4, 3) < 0.5).float()
        if not soft:  # the saturated logits get both a matching and a wrong target
            y[0, 0], y[1, 2], y[3, 1] = 1.0, 1.0, 0.0
        inputs = {"x": x, "target": y}
        if pw:
            inputs["pos_weight"] = positive(3, lo=0.5, hi=3.0)

        def fn(x, target, pos_weight=None):
            return F.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight,
                                                      reduction=red)
        return op_case(fn, inputs,
                       meta_str(op="binary_cross_entropy_with_logits", reduction=red,
                                pos_weight="in.pos_weight" if pw else "none",
                                targets="soft" if soft else "hard"),
                       const=("target", "pos_weight"))
    fixture(f"op_bce_with_logits_{_name}")(_bce)


@fixture("op_log_softmax_nll_loss_mean")
def _lsm_nll():
    t = _targets(6, 4, True)
    return op_case(lambda logits, target: F.nll_loss(torch.log_softmax(logits, dim=-1), target),
                   {"logits": randn(6, 4, std=1.5), "target": t},
                   meta_str(op="log_softmax+nll_loss", reduction="mean", ignore_index=-100,
                            formula="out = nll_loss(log_softmax(logits, -1), target); "
                                    "equals cross_entropy"))
