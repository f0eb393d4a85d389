"""Shared plumbing of the first-order baselines (NegGrad+, RL, SalUn, ℓ1-sparse, SCRUB, Bad Teacher).

* seeded minibatch streams (a generator per request, derived from the cell seed and ``request.step``);
* the temperature-scaled distillation KL, KL(p_t ‖ p_s) with p = softmax(z / T), averaged over the batch;
* one optimiser step with the recipe's coupled L2 (the gradient of (λ/2)‖w‖² is added *before* an optional
  gradient mask, so masked-out weights stay exactly where they are, whatever the optimiser);
* the random-label fine-tuning loop shared by ``random_label`` and ``salun`` (forget pass, then retain pass).
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
    """Labels drawn uniformly from all classes, y' ~ U{0, …, C−1} (may equal y), as the released RL code's
    ``torch.randint(0, num_classes, target.shape)``."""
    if num_classes < 2:
        raise ValueError("random relabelling needs at least two classes")
    return torch.randint(0, num_classes, y.shape, generator=gen).to(y.device)


def random_label_loss(logits: torch.Tensor, y_random: torch.Tensor) -> torch.Tensor:
    """CE(f(x_f), y'): the loss of one forget minibatch with random labels (mean over the batch)."""
    return F.cross_entropy(logits, y_random)


def relabel_finetune(
    model: nn.Module,
    request: Request,
    ctx: Context,
    method: str,
    epochs: int,
    lr_scale: float,
    masks: Sequence[torch.Tensor] | None = None,
) -> nn.Module:
    """Random-label fine-tuning as in the released RL/SalUn loop (``Classification/unlearn/RL.py``, the
    CIFAR-10/SVHN branch): each epoch is one shuffled pass over D_e(k) in minibatches, every minibatch
    with fresh uniform random labels (:func:`random_relabel`), one optimiser step per minibatch on
    CE(f(x_f), y'); then one shuffled pass over D_r(k) with the true labels, one step per minibatch.
    One optimiser for all epochs; ``masks`` multiply every gradient (weights outside the mask never
    move). Returns the model in eval mode."""
    forget, retain = request.forget, request.retain
    n_f, n_r = len(forget), len(retain)
    if n_f == 0 or epochs == 0:
        return model.eval()
    bs = ctx.recipe.batch_size
    gen = request_generator(ctx, method, request)
    opt = make_step_optimizer(model, ctx, lr_scale)
    wd = ctx.recipe.weight_decay
    model.train()
    for _ in range(epochs):
        ctx.check_budget()
        for idx in batches(n_f, bs, gen):
            y_random = random_relabel(forget.y[idx], request.num_classes, gen)
            optimizer_step(opt, model, random_label_loss(model(forget.x[idx]), y_random), wd, masks)
            ctx.counters.grad_samples += int(idx.numel())
        for idx in batches(n_r, bs, gen):
            optimizer_step(opt, model, F.cross_entropy(model(retain.x[idx]), retain.y[idx]), wd, masks)
            ctx.counters.grad_samples += int(idx.numel())
    return model.eval()
