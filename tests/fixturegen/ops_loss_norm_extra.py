"""Extra layer-norm and loss cases for tests/test_norm.c and tests/test_loss.c: layer
norm without affine and over two dims; cross entropy on (C) and (N, C, d1, d2) inputs,
with class weights, ignore_index and label smoothing under every reduction; NLL on
(N, C, d1); BCE with logits with an element weight, pos_weight and a target that gets a
gradient."""

import torch
import torch.nn.functional as F

from .common import fixture, meta_str, op_case, positive, randint, randn


@fixture("op_layer_norm_noaffine_extra")
def _ln_noaffine():
    return op_case(lambda x: F.layer_norm(x, (5,), None, None, eps=1e-5),
                   {"x": randn(3, 5, std=2.0) + 0.5},
                   meta_str(op="layer_norm", normalized_shape=5, eps=1e-5, affine=False))


@fixture("op_layer_norm_2dims_extra")
def _ln_2dims():
    return op_case(lambda x, weight, bias: F.layer_norm(x, (3, 4), weight, bias, eps=1e-5),
                   {"x": randn(2, 3, 4, std=2.0) - 0.3, "weight": randn(3, 4),
                    "bias": randn(3, 4)},
                   meta_str(op="layer_norm", normalized_shape="3,4", eps=1e-5, affine=True))


@fixture("op_cross_entropy_unbatched_extra")
def _ce_unbatched():
    return op_case(lambda logits, target: F.cross_entropy(logits, target, label_smoothing=0.2),
                   {"logits": randn(5, std=1.5), "target": torch.tensor(3)},
                   meta_str(op="cross_entropy", reduction="mean", ignore_index=-100,
                            label_smoothing=0.2, weight="none", note="logits (C), target ()"))


def _targets_4d():
    t = randint(4, 2, 3, 2)
    t[0, 1, 0] = -100
    t[1, 2, 1] = -100
    return t


for _red in ("mean", "sum", "none"):
    def _ce4(red=_red):
        def fn(logits, target, weight):
            return F.cross_entropy(logits, target, weight=weight, reduction=red,
                                   label_smoothing=0.15)
        return op_case(fn, {"logits": randn(2, 4, 3, 2, std=1.5), "target": _targets_4d(),
                            "weight": positive(4, lo=0.2, hi=2.0)},
                       meta_str(op="cross_entropy", reduction=red, ignore_index=-100,
                                label_smoothing=0.15, weight="in.weight",
                                note="logits (N, C, d1, d2) = (2, 4, 3, 2)"),
                       const=("weight",))
    fixture(f"op_cross_entropy_4d_weight_ls_{_red}_extra")(_ce4)


@fixture("op_cross_entropy_custom_ignore_extra")
def _ce_custom_ignore():
    t = randint(5, 7)
    t[2] = 1
    t[5] = 1
    return op_case(lambda logits, target: F.cross_entropy(logits, target, ignore_index=1,
                                                          reduction="sum"),
                   {"logits": randn(7, 5), "target": t},
                   meta_str(op="cross_entropy", reduction="sum", ignore_index=1,
                            label_smoothing=0.0, weight="none"))


@fixture("op_nll_loss_3d_weight_sum_extra")
def _nll_3d():
    t = randint(4, 2, 3)
    t[1, 0] = -100
    return op_case(lambda x, target, weight: F.nll_loss(x, target, weight=weight,
                                                        reduction="sum"),
                   {"x": torch.log_softmax(randn(2, 4, 3), dim=1), "target": t,
                    "weight": positive(4, lo=0.2, hi=2.0)},
                   meta_str(op="nll_loss", reduction="sum", ignore_index=-100,
                            weight="in.weight", note="x (N, C, d1) = (2, 4, 3)"),
                   const=("weight",))


for _red in ("mean", "none"):
    def _bce_w(red=_red):
        x = randn(2, 4, 3, std=2.0)
        x[0, 0, 0], x[1, 2, 1] = 25.0, -25.0

        def fn(x, target, weight, pos_weight):
            return F.binary_cross_entropy_with_logits(x, target, weight=weight,
                                                      pos_weight=pos_weight, reduction=red)
        return op_case(fn, {"x": x, "target": torch.rand(2, 4, 3),
                            "weight": positive(4, 1, lo=0.2, hi=2.0),
                            "pos_weight": positive(3, lo=0.5, hi=3.0)},
                       meta_str(op="binary_cross_entropy_with_logits", reduction=red,
                                weight="in.weight", pos_weight="in.pos_weight",
                                note="soft targets get a gradient; weight (4, 1) broadcast"),
                       const=("weight", "pos_weight"))
    fixture(f"op_bce_with_logits_weight_pos_weight_{_red}_extra")(_bce_w)
