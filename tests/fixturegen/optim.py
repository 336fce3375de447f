"""Optimizers, gradient clipping and LR schedulers.

The fixed problem (same in every optim_* file, built after torch.manual_seed(0)):
model = nn.Linear(4, 3); x = randn(8, 4); the targets come from a "teacher" close to the
initial model, y = x @ (W0 + D)^T + b0 + d (D, d ~ 0.1 N(0,1), except D[0,0] = 2), so that
the gradient norm starts above the clipping threshold (and, for SGD, drops below it
after about 10 steps) while most elements reach their optimum and oscillate (which is
when amsgrad's running max matters). loss = mse_loss(model(x), y).
Each step: zero_grad, loss, backward, clip_grad_norm_(params, max_norm=0.5), step."""

import torch
import torch.nn.functional as F
from torch import nn

from .common import fixture, meta_str, randn, state_dict_tensors

STEPS, MAX_NORM = 20, 0.5

_OPTIMIZERS = {
    # name: (class, kwargs)
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_dampening": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
    "adam": (torch.optim.Adam, dict(lr=1e-2)),
    "adam_amsgrad": (torch.optim.Adam, dict(lr=1e-2, amsgrad=True)),
    # With the default beta2 = 0.999, v can shrink by at most 0.1 % per step, so amsgrad's
    # running max changes the parameters by only ~2e-5 in 20 steps (compare its state20.*
    # instead). With beta2 = 0.9 the difference is ~1.5e-2: these two make it visible.
    "adam_amsgrad_beta2_0.9": (torch.optim.Adam, dict(lr=1e-2, betas=(0.9, 0.9), amsgrad=True)),
    "adam_beta2_0.9": (torch.optim.Adam, dict(lr=1e-2, betas=(0.9, 0.9))),
    "adam_weight_decay": (torch.optim.Adam, dict(lr=1e-2, weight_decay=0.01)),
    "adamw": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.01)),
    "adamw_amsgrad": (torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.01, amsgrad=True)),
}


def _train(cls, kwargs, clip_value=None):
    """clip_value None: clip_grad_norm_(max_norm=0.5) before every step (out.total_norm is the
    norm it returns); else clip_grad_value_(clip_value) instead, with out.total_norm the 2-norm
    and out.max_abs_grad the largest |gradient| before clipping (computed, not clipped)."""
    model = nn.Linear(4, 3)
    x = randn(8, 4)
    with torch.no_grad():
        d_w, d_b = randn(3, 4, std=0.1), randn(3, std=0.1)
        d_w[0, 0] = 2.0
        y = x @ (model.weight + d_w).T + model.bias + d_b
    tensors, keys = state_dict_tensors(model)
    tensors["in.x"], tensors["in.y"] = x, y
    opt = cls(model.parameters(), **kwargs)
    losses, norms, max_abs = [], [], []
    for step in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        if clip_value is None:
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_NORM))
        else:
            grads = [p.grad.detach() for p in model.parameters()]
            norms.append(torch.norm(torch.stack([torch.norm(g, 2.0) for g in grads]), 2.0))
            max_abs.append(torch.stack([g.abs().max() for g in grads]).max())
            nn.utils.clip_grad_value_(model.parameters(), clip_value=clip_value)
        opt.step()
        losses.append(loss.detach())
        if step in (1, STEPS):
            for k, v in state_dict_tensors(model, prefix=f"after{step}.")[0].items():
                tensors[k] = v
    tensors["out.loss"] = torch.stack(losses)
    tensors["out.total_norm"] = torch.stack(norms)
    # optimizer state after the last step, for checkpoint/resume tests
    for name, p in model.named_parameters():
        for sk, sv in opt.state[p].items():
            if isinstance(sv, torch.Tensor):
                tensors[f"state{STEPS}.{name}.{sk}"] = sv.detach().clone().reshape(sv.shape)
    if clip_value is None:
        limit = dict(clip_max_norm=MAX_NORM)
        clip = dict(clip="clip_grad_norm_(max_norm=0.5) after backward, before every step")
    else:
        tensors["out.max_abs_grad"] = torch.stack(max_abs)
        limit = dict(clip_value=clip_value)
        clip = dict(clip=f"clip_grad_value_(clip_value={clip_value}) after backward, before "
                         "every step; out.total_norm = pre-clip 2-norm (nothing clipped by "
                         "norm), out.max_abs_grad = pre-clip max |grad|")
    meta = meta_str(optimizer=cls.__name__, steps=STEPS, **limit, keys=keys,
                    problem="Linear(4,3), mse_loss(model(in.x), in.y), full batch", **clip,
                    **{k: v for k, v in kwargs.items()})
    for k, v in cls([torch.zeros(1, requires_grad=True)], **kwargs).defaults.items():
        if isinstance(v, (int, float, bool, tuple)) and k not in meta:
            meta[k] = meta_str(v=v)["v"]
    return tensors, meta


for _name, (_cls, _kw) in _OPTIMIZERS.items():
    fixture(f"optim_{_name}", seed=0)(lambda cls=_cls, kw=_kw: _train(cls, kw))

# clip_grad_value_ instead of clip_grad_norm_ (same problem, seed 0). out.max_abs_grad shows
# when clipping is active: for SGD with momentum (0.6) in the first 5 steps and not after,
# for Adam (0.5) at every step.
_CLIP_VALUE = {
    "sgd_momentum": (0.6, "sgd_momentum"),
    "adam": (0.5, "adam"),
}
for _name, (_cv, _opt) in _CLIP_VALUE.items():
    fixture(f"optim_{_name}_clip_value", seed=0)(
        lambda cls=_OPTIMIZERS[_opt][0], kw=_OPTIMIZERS[_opt][1], cv=_cv: _train(cls, kw, cv))

# ---------------------------------------------------------------------------------------
# clip_grad_norm_ on its own (two gradient tensors)


for _tag, _max in (("clips", 0.5), ("noclip", 100.0)):
    def _clip(max_norm=_max):
        a, b = torch.zeros(3, 4, requires_grad=True), torch.zeros(5, requires_grad=True)
        a.grad, b.grad = randn(3, 4), randn(5)
        tensors = {"in.g0": a.grad.clone(), "in.g1": b.grad.clone()}
        total = nn.utils.clip_grad_norm_([a, b], max_norm=max_norm)
        tensors.update({"out.total_norm": total, "out.g0": a.grad, "out.g1": b.grad})
        return tensors, meta_str(op="clip_grad_norm_", max_norm=max_norm, norm_type=2.0,
                                 note="out.g* are the grads after clipping")
    fixture(f"optim_clip_grad_norm_{_tag}")(_clip)

# ---------------------------------------------------------------------------------------
# The update itself, bit for bit (test_optim.c, test_update_bit_exact): no model, no loss.
# Parameters a (13 elements: 8 + 4 + 1 exercises every part of the 2-norm's reduction
# order) and b (3), three steps with given gradients, clip_grad_norm_(max_norm=1) before
# each step. Drawn in this order: in.a, in.b, then in.ga[s], in.gb[s] for s = 0, 1, 2 with
# scales 1, 0.3, 0.05. out.<tag> = a then b after the three steps.

_EXACT = {
    "sgd_nesterov": (torch.optim.SGD,
                     dict(lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)),
    "sgd_dampening": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
    "sgd_maximize": (torch.optim.SGD, dict(lr=0.05, maximize=True)),
    "adam_amsgrad": (torch.optim.Adam,
                     dict(lr=0.01, betas=(0.9, 0.99), amsgrad=True, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(lr=0.001)),
    "adamw_amsgrad": (torch.optim.AdamW, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
}


def _exact():
    p0a, p0b = randn(13), randn(3)
    ga, gb = [], []
    for k in (1.0, 0.3, 0.05):
        ga.append(randn(13, std=k))
        gb.append(randn(3, std=k))
    tensors = {"in.a": p0a, "in.b": p0b, "in.ga": torch.stack(ga), "in.gb": torch.stack(gb)}
    meta = {}
    for tag, (cls, kwargs) in _EXACT.items():
        a, b = nn.Parameter(p0a.clone()), nn.Parameter(p0b.clone())
        opt = cls([a, b], **kwargs)
        norms = []
        for s in range(3):
            a.grad, b.grad = ga[s].clone(), gb[s].clone()
            norms.append(nn.utils.clip_grad_norm_([a, b], max_norm=1.0))
            opt.step()
        tensors[f"out.{tag}"] = torch.cat([a.detach(), b.detach()])
        meta[tag] = cls.__name__ + "(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"
    tensors["out.total_norm"] = torch.stack(norms)  # the same gradients in every case
    return tensors, meta_str(op="optimizer.step, bit for bit", steps=3, clip_max_norm=1.0, **meta,
                             note="out.<tag>: a then b after 3 steps")


fixture("optim_update_exact", seed=2024)(_exact)

# ---------------------------------------------------------------------------------------
# LR schedulers: out.lr[e] = the lr after e scheduler steps (e = 0..12), as F64


def _sched(make, desc):
    def run():
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=0.1)
        sched = make(opt)
        lrs = [sched.get_last_lr()[0]]
        for _ in range(12):
            opt.step()
            sched.step()
            lrs.append(sched.get_last_lr()[0])
        return {"out.lr": torch.tensor(lrs, dtype=torch.float64)}, meta_str(
            scheduler=desc, base_lr=0.1, epochs=12,
            note="out.lr[e] = lr after e calls of scheduler.step(); recursive form")
    return run


fixture("sched_steplr", seed=0)(_sched(
    lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    "StepLR(step_size=3, gamma=0.5)"))
fixture("sched_cosine", seed=0)(_sched(
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5),
    "CosineAnnealingLR(T_max=5, eta_min=0)"))
