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


def _train(cls, kwargs):
    model = nn.Linear(4, 3)
    x = randn(8, 4)
    with torch.no_grad():
        d_w, d_b = randn(3, 4, std=0.1), randn(3, std=0.1)
        d_w[0, 0] = 2.0
        y = x @ (model.weight + d_w).T + model.bias + d_b
    tensors, keys = state_dict_tensors(model)
    tensors["in.x"], tensors["in.y"] = x, y
    opt = cls(model.parameters(), **kwargs)
    losses, norms = [], []
    for step in range(1, STEPS + 1):
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(model(x), y)
        loss.backward()
        norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_NORM))
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
    meta = meta_str(optimizer=cls.__name__, steps=STEPS, clip_max_norm=MAX_NORM, keys=keys,
                    problem="Linear(4,3), mse_loss(model(in.x), in.y), full batch",
                    clip="clip_grad_norm_(max_norm=0.5) after backward, before every step",
                    **{k: v for k, v in kwargs.items()})
    for k, v in cls([torch.zeros(1, requires_grad=True)], **kwargs).defaults.items():
        if isinstance(v, (int, float, bool, tuple)) and k not in meta:
            meta[k] = meta_str(v=v)["v"]
    return tensors, meta


for _name, (_cls, _kw) in _OPTIMIZERS.items():
    fixture(f"optim_{_name}", seed=0)(lambda cls=_cls, kw=_kw: _train(cls, kw))

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
