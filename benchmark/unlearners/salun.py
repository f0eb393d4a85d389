"""``salun`` (SalUn): random-label unlearning restricted to the weights most salient for the forget loss.

Fan, Liu, Zhang, Wong, Wei & Liu, ICLR 2024, "SalUn: Empowering Machine Unlearning via Gradient-based
Weight Saliency in Both Image Classification and Generation". At the input model w_o of request k::

    g   = Σ_B ∇_w CE(w_o; B), B the forget minibatches of D_e(k) (true labels)
    m   = 1[ |g| ≥ γ ],  γ = the s-quantile from the top of |g| over *all* weights (global threshold)
    w⁺  = w − η · m ⊙ ∇L_RL(w)                     (every optimiser step sees the masked gradient)

with L_RL the random-label loop of ``random_label`` (a forget pass with uniform random labels, then a retain
pass, per epoch; the recipe's coupled L2 gradient is masked too, so unmasked weights never move, as the
released ``_restore_masked_params`` keeps them at their initial value).
``sparsity`` s is the fraction of weights kept trainable; the paper's default mask keeps the top 50%
(``mask/with_0.5.pt``). g is accumulated as in the released ``generate_mask.py``: the sum over forget
minibatches of the batch-mean gradient (the release's −CE sign does not change |g|).
Deviations: the originals' optimiser, learning rate (× ``lr_scale``) and batch size instead of SGD lr 0.013
(CIFAR ResNets). Epochs: the release's 10 (grid 10, 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.space import Float, Int
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
    """Σ_B ∇_w CE(w; B) over the request's forget minibatches B (in order, the recipe's batch size, eval
    mode; each term the batch-mean gradient), as the released ``save_gradient_ratio`` accumulates them."""
    forget = request.forget
    params = [p for p in model.parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for p in params]
    model.eval()
    n, bs = len(forget), ctx.recipe.batch_size
    for s in range(0, n, bs):
        loss = F.cross_entropy(model(forget.x[s : s + bs]), forget.y[s : s + bs])
        for acc, g in zip(total, torch.autograd.grad(loss, params), strict=True):
            acc.add_(g)
        ctx.counters.grad_samples += int(forget.y[s : s + bs].numel())
    return total


@register_unlearner("salun")
class SalUn(Unlearner):
    # searched: the saliency fraction (the release's default mask keeps 50 %, the grid also has 20 %),
    # epochs (up to twice the default) and learning rate, which the release's scripts set per setting
    space = {
        "sparsity": Float(low=0.0, high=1.0, search=(0.1, 0.9), doc="fraction of weights kept trainable"),
        "epochs": Int(low=1, search=(1, 20), doc="forget + retain passes"),
        "lr_scale": Float(low=0.0, low_open=True, search=(0.1, 3.0), log=True, doc="lr = recipe.lr x this"),
    }
    params = {"sparsity": [0.5, 0.2], "epochs": [10, 5], "lr_scale": [1.0]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        if len(request.forget) == 0:
            return model.eval()
        masks = salun_mask(forget_gradient(model, request, ctx), self.hparams["sparsity"])
        kept = sum(int(m.sum()) for m in masks)
        ctx.info["salun_kept_fraction"] = kept / max(1, sum(m.numel() for m in masks))
        return relabel_finetune(
            model,
            request,
            ctx,
            "salun",
            epochs=self.hparams["epochs"],
            lr_scale=self.hparams["lr_scale"],
            masks=masks,
        )
