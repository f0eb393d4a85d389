"""``scrub`` (SCRUB): a student that moves away from its teacher on the forget set and stays with it on D_r.

Kurmanji, Triantafillou, Hayes & Triantafillou, NeurIPS 2023, "Towards Unbounded Machine Unlearning";
release github.com/meghdadk/SCRUB (``small_scale_unlearning.ipynb``, ``large_scale_unlearning.ipynb``,
``thirdparty/repdistiller/helper/loops.py::train_distill``, ``distiller_zoo/KD.py::DistillKL``).
Teacher w_t = the input model of request k (frozen, eval mode); the student starts from it. The released
``DistillKL`` is d_T(s, t) = T² · Σ_{i∈B} KL(softmax(t_i/T) ‖ softmax(s_i/T)) / |B|. The release's loop::

    for epoch e = 1 … E:
        lr ← lr₀ · rate^{#{d ∈ lr_decay_epochs : e > d}}                  (``adjust_learning_rate``)
        if e ≤ msteps: one shuffled pass over D_e(k), forget_batch:  L = − d_T(s, t)          (max)
        one shuffled pass over D_r(k), retain_batch:             L = α · d_T(s, t) + γ · CE(s, y)  (min)

one optimiser step per minibatch, one optimiser for all epochs, with its own (coupled, PyTorch
``weight_decay``) L2 — not the training recipe's. So msteps max passes and E min passes in all.
Configurations (``config``), as released:

* ``"small"`` (default; the suites' datasets have 1–5 k samples, the release's small-scale CIFAR-5 /
  Lacuna-5 ~ 500–625): Adam, lr 5e-4, weight decay 0.1, T = 2, α = 0.5, γ = 1, forget / retain batch 64 / 32,
  E = 10, msteps = 3, lr × 0.1 after epochs 5, 8, 9;
* ``"large"``: SGD (momentum 0.9), lr 5e-4, weight decay 5e-4, T = 4, α = 0.001, γ = 0.99, forget / retain
  batch 512 / 256 (the loaders of the notebook's current version), E = 3, msteps = 2, decay after [3, 5, 9]
  (never within 3 epochs).

Every field can be overridden by the parameter of the same name (``None``: the configuration's value).
The small notebook also sets ``smoothing = 0.5``, ``clip = 0.2`` and ``sstart = 10``; ``train_distill``
reads none of them (the smoothing term ``param_dist`` and the gradient clipping are commented out there),
so they are not parameters here. Without dropout/batch-norm noise the student equals the teacher during the
first max pass's first step, where ∇d = 0 (that step applies only the L2 term).
Counters: the student passes are gradient passes (``grad_samples``); the teacher's logits are forward-only
passes (``fwd_samples``, also ``ctx.info['teacher_samples']``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.space import Choice, Float, Int, Param
from benchmark.unlearners._distill import batches, distill_kl, frozen_copy, request_generator, soft_targets
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


@dataclass(frozen=True)
class ScrubConfig:
    """One released SCRUB configuration (see the module docstring)."""

    optimizer: str
    lr: float
    weight_decay: float
    momentum: float
    temperature: float
    alpha: float
    gamma: float
    forget_batch: int
    retain_batch: int
    epochs: int
    msteps: int
    lr_decay_epochs: tuple[int, ...]
    lr_decay_rate: float


CONFIGS: dict[str, ScrubConfig] = {
    "small": ScrubConfig("adam", 5e-4, 0.1, 0.9, 2.0, 0.5, 1.0, 64, 32, 10, 3, (5, 8, 9), 0.1),
    "large": ScrubConfig("sgd", 5e-4, 5e-4, 0.9, 4.0, 0.001, 0.99, 512, 256, 3, 2, (3, 5, 9), 0.1),
}
_CASTS: dict[str, Callable[[Any], Any]] = {
    "optimizer": str,
    "lr_decay_epochs": lambda v: tuple(int(e) for e in v),
}


@dataclass(frozen=True, kw_only=True)
class EpochList(Param):
    """A list (or tuple) of epoch numbers, each an integer ≥ 0 (``lr_decay_epochs``); kept as given."""

    def allowed(self) -> str:
        return "a list of integers >= 0" + (" or None" if self.none_ok else "")

    def _check(self, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 0 for e in value):
            raise ValueError
        return value


def resolve_config(hparams: dict) -> ScrubConfig:
    """The configuration named by ``hparams['config']`` with every non-None field of ``hparams`` applied."""
    name = str(hparams.get("config", "small"))
    if name not in CONFIGS:
        raise ValueError(f"scrub: unknown config {name!r}; expected one of {sorted(CONFIGS)}")
    base = CONFIGS[name]
    over = {}
    for f in fields(ScrubConfig):
        v = hparams.get(f.name)
        if v is not None:
            cast = _CASTS.get(f.name) or type(getattr(base, f.name))
            over[f.name] = cast(v)
    cfg = replace(base, **over)
    if cfg.optimizer not in ("adam", "sgd"):
        raise ValueError(f"scrub: unknown optimizer {cfg.optimizer!r}")
    return cfg


def scrub_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The released ``DistillKL``: T² · (1/|B|) Σ KL(softmax(t/T) ‖ softmax(s/T))."""
    return temperature**2 * distill_kl(student_logits, soft_targets(teacher_logits, temperature), temperature)


def scrub_max_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The max-step loss on a forget batch: − d_T(s, t)."""
    return -scrub_kl(student_logits, teacher_logits, temperature)


def scrub_min_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    y: torch.Tensor,
    temperature: float,
    alpha: float,
    gamma: float,
) -> torch.Tensor:
    """The min-step loss on a retain batch: α · d_T(s, t) + γ · CE(s, y)."""
    return alpha * scrub_kl(student_logits, teacher_logits, temperature) + gamma * F.cross_entropy(
        student_logits, y
    )


def scrub_lr(cfg: ScrubConfig, epoch: int) -> float:
    """The release's step decay at 1-based ``epoch``: lr · rate^{#{d : epoch > d}}."""
    return cfg.lr * cfg.lr_decay_rate ** sum(epoch > d for d in cfg.lr_decay_epochs)


def scrub_optimizer(model: nn.Module, cfg: ScrubConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


@register_unlearner("scrub")
class Scrub(Unlearner):
    # Every override may be None (the configuration's value). Searched: the settings that differ between
    # the released configurations (msteps, α, γ) and the learning rate, on ranges containing both
    # configurations' values (tests/unit/test_baselines_first_order.py); the other fields keep theirs.
    space = {
        "config": Choice(options=tuple(CONFIGS), doc="released configuration (small / large scale)"),
        "optimizer": Choice(options=("adam", "sgd"), none_ok=True, doc="student optimiser"),
        "lr": Float(low=0.0, low_open=True, none_ok=True, search=(1e-4, 5e-3), log=True, doc="learning rate"),
        "weight_decay": Float(low=0.0, none_ok=True, doc="the optimiser's L2"),
        "momentum": Float(low=0.0, high=1.0, none_ok=True, doc="SGD momentum"),
        "temperature": Float(low=0.0, low_open=True, none_ok=True, doc="distillation temperature T"),
        "alpha": Float(low=0.0, none_ok=True, search=(1e-3, 1.0), log=True, doc="weight α of d_T on D_r"),
        "gamma": Float(low=0.0, none_ok=True, search=(0.5, 1.0), doc="weight γ of the CE on D_r"),
        "forget_batch": Int(low=1, none_ok=True, doc="max-step batch size"),
        "retain_batch": Int(low=1, none_ok=True, doc="min-step batch size"),
        "epochs": Int(low=1, none_ok=True, doc="min passes E over D_r"),
        "msteps": Int(low=0, none_ok=True, search=(1, 6), doc="max passes over D_e (first epochs)"),
        "lr_decay_epochs": EpochList(none_ok=True, doc="epochs after which the lr decays"),
        "lr_decay_rate": Float(low=0.0, low_open=True, high=1.0, none_ok=True, doc="lr decay factor"),
    }
    params = {
        "config": ["small"],
        # None: the configuration's value (CONFIGS); typed overrides otherwise
        "optimizer": [None],
        "lr": [None],
        "weight_decay": [None],
        "momentum": [None],
        "temperature": [None],
        "alpha": [None],
        "gamma": [None],
        "forget_batch": [None],
        "retain_batch": [None],
        "epochs": [None],
        "msteps": [None],
        "lr_decay_epochs": [None],
        "lr_decay_rate": [None],
    }
    test_params = {"epochs": 1, "msteps": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        cfg = resolve_config(self.hparams)
        forget, retain = request.forget, request.retain
        if len(forget) == 0 or cfg.epochs == 0:
            return model.eval()
        teacher = frozen_copy(model)
        gen = request_generator(ctx, "scrub", request)
        opt = scrub_optimizer(model, cfg)
        T = cfg.temperature
        teacher_samples = student_samples = 0

        def step(x: torch.Tensor, y: torch.Tensor | None) -> None:
            nonlocal teacher_samples, student_samples
            with torch.no_grad():
                t_logits = teacher(x)
            s_logits = model(x)
            if y is None:
                loss = scrub_max_loss(s_logits, t_logits, T)
            else:
                loss = scrub_min_loss(s_logits, t_logits, y, T, cfg.alpha, cfg.gamma)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            teacher_samples += len(x)
            student_samples += len(x)

        model.train()
        for epoch in range(1, cfg.epochs + 1):
            ctx.check_budget()
            for group in opt.param_groups:
                group["lr"] = scrub_lr(cfg, epoch)
            if epoch <= cfg.msteps:
                for idx in batches(len(forget), cfg.forget_batch, gen):
                    step(forget.x[idx], None)
            for idx in batches(len(retain), cfg.retain_batch, gen):
                step(retain.x[idx], retain.y[idx])
        ctx.info["teacher_samples"] = teacher_samples
        ctx.counters.grad_samples += student_samples
        ctx.counters.fwd_samples += teacher_samples
        return model.eval()
