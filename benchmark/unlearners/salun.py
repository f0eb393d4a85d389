"""``salun`` (SalUn): random-label unlearning restricted to the weights most salient for the forget loss.

Fan, Liu, Zhang, Wong, Wei & Liu, ICLR 2024, "SalUn: Empowering Machine Unlearning via Gradient-based
Weight Saliency in Both Image Classification and Generation". At the input model w_o of request k::

    g   = ∇_w CE(w_o; D_e(k))                      (mean over the request's forget set, true labels)
    m   = 1[ |g| ≥ γ ],  γ = the s-quantile from the top of |g| over *all* weights (global threshold)
    w⁺  = w − η · m ⊙ ∇L_RL(w)                     (every optimiser step sees the masked gradient)

with L_RL the random-label objective of ``random_label`` (CE on D_e(k) with random wrong labels + CE on
D_r(k), + the recipe's coupled L2, whose gradient is masked too, so unmasked weights never move).
``sparsity`` s is the fraction of weights kept trainable; the paper's default mask keeps the top 50%
(``mask/with_0.5.pt``). The released code sums −CE gradients over forget minibatches; the sign and the
scale do not change |g|'s ranking. Paper training defaults (10 epochs, SGD lr 0.013, CIFAR-10) do not
transfer; here 1 epoch at the originals' optimiser and learning rate, as ``random_label``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.unlearners._distill import relabel_finetune
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


def salun_mask(grads: Sequence[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Masks m = 1[|g| ≥ γ] (float 0/1, shaped like each gradient), γ the k-th largest |g| over all
    entries, k = round(sparsity · #entries) (ties at γ are all kept). sparsity 1 keeps all, 0 none."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must lie in [0, 1], got {sparsity}")
    flat = torch.cat([g.detach().abs().reshape(-1) for g in grads])
    k = round(sparsity * flat.numel())
    if k == 0:
        return [torch.zeros_like(g) for g in grads]
    gamma = torch.topk(flat, k, sorted=True).values[-1]
    return [(g.detach().abs() >= gamma).to(g.dtype) for g in grads]


def forget_gradient(model: nn.Module, request: Request, ctx: Context) -> list[torch.Tensor]:
    """∇_w of the mean cross-entropy over the request's forget set (eval mode, minibatched)."""
    forget = request.forget
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    model.eval()
    n, bs = len(forget), ctx.recipe.batch_size
    for s in range(0, n, bs):
        loss = F.cross_entropy(model(forget.x[s : s + bs]), forget.y[s : s + bs], reduction="sum") / n
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g)
        ctx.counters.grad_samples += int(forget.y[s : s + bs].numel())
    return total


@register_unlearner("salun")
class SalUn(Unlearner):
    params = {"sparsity": [0.5, 0.2], "epochs": [1], "lr_scale": [1.0]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        if len(request.forget) == 0:
            return model.eval()
        masks = salun_mask(forget_gradient(model, request, ctx), float(self.hparams["sparsity"]))
        kept = sum(int(m.sum()) for m in masks)
        ctx.info["salun_kept_fraction"] = kept / max(1, sum(m.numel() for m in masks))
        return relabel_finetune(
            model,
            request,
            ctx,
            "salun",
            epochs=int(self.hparams["epochs"]),
            lr_scale=float(self.hparams["lr_scale"]),
            masks=masks,
        )
