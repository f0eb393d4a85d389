"""Shared plumbing of the first-order baselines (NegGrad+, RL, SalUn, ℓ1-sparse, SCRUB, Bad Teacher).

* seeded minibatch streams (a generator per request, derived from the cell seed and ``request.step``);
* the temperature-scaled distillation KL, KL(p_t ‖ p_s) with p = softmax(z / T), averaged over the batch;
* one optimiser step with the recipe's coupled L2 (the gradient of (λ/2)‖w‖² is added *before* an optional
  gradient mask, so masked-out weights stay exactly where they are, whatever the optimiser);
* the random-label fine-tuning loop shared by ``random_label`` and ``salun``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.models.training import make_optimizer
from benchmark.unlearners.base import Context, Request

# one independent random stream per method (the offsets passed to Context.generator)
STREAMS = {
    "neggrad_plus": 11,
    "random_label": 12,
    "salun": 13,
    "l1_sparse": 14,
    "scrub": 15,
    "bad_teacher": 16,
}


def request_generator(ctx: Context, method: str, request: Request, sub: int = 0) -> torch.Generator:
    """A generator determined by (cell seed, method, request step, sub-stream)."""
    return ctx.generator(STREAMS[method] * 1_000_000 + request.step * 100 + sub)


def batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One shuffled pass over range(n) in minibatches of ``batch_size`` (the last one may be short)."""
    order = torch.randperm(n, generator=gen)
    return [order[s : s + batch_size] for s in range(0, n, batch_size)]


def cycle_batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless minibatches over range(n), reshuffled after every pass (n must be > 0)."""
    while True:
        yield from batches(n, batch_size, gen)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with gradients switched off (teachers)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def distill_kl(student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """(1/|B|) Σ_i KL(q_i ‖ softmax(s_i / T)) the targets q_i given as the rows of ``target_probs``."""
    log_ps = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_ps, target_probs, reduction="batchmean")


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(teacher_logits / temperature, dim=1)


def make_step_optimizer(model: nn.Module, ctx: Context, lr_scale: float) -> torch.optim.Optimizer:
    """The recipe's optimiser at ``lr_scale`` × its learning rate, without built-in weight decay
    (:func:`optimizer_step` adds the recipe's coupled L2 gradient itself)."""
    recipe = replace(ctx.recipe, weight_decay=0.0)
    return make_optimizer(model, recipe, ctx.recipe.lr * float(lr_scale))


def optimizer_step(
    opt: torch.optim.Optimizer,
    model: nn.Module,
    loss: torch.Tensor,
    weight_decay: float,
    masks: Sequence[torch.Tensor] | None = None,
) -> None:
    """Backpropagate ``loss``, add λ·w (the gradient of (λ/2)‖w‖²), multiply by ``masks``, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        for i, p in enumerate(params):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if weight_decay:
                p.grad.add_(p, alpha=weight_decay)
            if masks is not None:
                p.grad.mul_(masks[i])
    opt.step()


def random_relabel(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Labels drawn uniformly among the *wrong* classes: y' = (y + u) mod C, u ~ U{1, …, C−1}."""
    if num_classes < 2:
        raise ValueError("random relabelling needs at least two classes")
    shift = torch.randint(1, num_classes, y.shape, generator=gen).to(y.device)
    return (y + shift) % num_classes


def random_label_loss(
    logits_f: torch.Tensor, y_random: torch.Tensor, logits_r: torch.Tensor | None, y_r: torch.Tensor | None
) -> torch.Tensor:
    """CE(f(x_f), y') + CE(f(x_r), y_r): fit random wrong labels on D_f while keeping D_r (α = 1)."""
    loss = F.cross_entropy(logits_f, y_random)
    if logits_r is not None and y_r is not None and y_r.numel():
        loss = loss + F.cross_entropy(logits_r, y_r)
    return loss


def relabel_finetune(
    model: nn.Module,
    request: Request,
    ctx: Context,
    method: str,
    epochs: int,
    lr_scale: float,
    masks: Sequence[torch.Tensor] | None = None,
) -> nn.Module:
    """Random-label fine-tuning: an epoch is one shuffled pass over D_r(k); each retain minibatch is paired
    with the next minibatch of an endless, reshuffled stream over D_e(k) whose labels were replaced once per
    request by :func:`random_relabel`. Minimises :func:`random_label_loss` (+ the recipe's L2)."""
    forget, retain = request.forget, request.retain
    n_f, n_r = len(forget), len(retain)
    if n_f == 0 or epochs == 0:
        return model.eval()
    bs = ctx.recipe.batch_size
    y_random = random_relabel(forget.y, request.num_classes, request_generator(ctx, method, request, 0))
    gen = request_generator(ctx, method, request, 1)
    forget_stream = cycle_batches(n_f, min(bs, n_f), gen)
    opt = make_step_optimizer(model, ctx, lr_scale)
    model.train()
    for _ in range(epochs):
        ctx.check_budget()
        retain_batches = batches(n_r, bs, gen) if n_r else [torch.empty(0, dtype=torch.long)] * -(-n_f // bs)
        for idx_r in retain_batches:
            idx_f = next(forget_stream)
            logits_f = model(forget.x[idx_f])
            logits_r = model(retain.x[idx_r]) if idx_r.numel() else None
            loss = random_label_loss(logits_f, y_random[idx_f], logits_r, retain.y[idx_r] if n_r else None)
            optimizer_step(opt, model, loss, ctx.recipe.weight_decay, masks)
            ctx.counters.grad_samples += int(idx_f.numel() + idx_r.numel())
    return model.eval()
