"""``neggrad_plus`` (NegGrad+): descend on the retain loss while ascending on the forget loss.

Kurmanji, Triantafillou, Hayes & Triantafillou, NeurIPS 2023, "Towards Unbounded Machine Unlearning"
(the SCRUB paper), baseline NegGrad+. Per step, with a retain minibatch B_r ⊂ D_r(k) and a forget
minibatch B_f ⊂ D_e(k)::

    L(w) = α · CE(w; B_r) − (1 − α) · CE(w; B_f)   (+ (λ/2)‖w‖², the recipe's coupled L2)
    w⁺   = optimiser step on ∇L(w)

An epoch is one shuffled pass over D_r(k); forget minibatches come from an endless reshuffled stream
over D_e(k) (the authors' ``zip(retain_loader, cycle(forget_loader))``).

Defaults: α is tuned per setting in the paper; the authors' released small-scale notebook uses α = 0.95
(10 epochs, SGD lr 0.01). With our originals' Adam learning rate, α = 0.95 over-forgets (a digits MLP
lost ~4 points of retain accuracy on class deletion) while α = 0.999 matched the retrained model, so the
default is 0.999 and the grid keeps 0.95. 3 epochs at the originals' optimiser and learning rate
(``lr_scale`` = 1), like ``finetune``; the paper's epochs/learning rate do not transfer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.space import Float, Int
from benchmark.unlearners._distill import (
    batches,
    cycle_batches,
    make_step_optimizer,
    optimizer_step,
    request_generator,
)
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


def neggrad_plus_loss(
    logits_r: torch.Tensor, y_r: torch.Tensor, logits_f: torch.Tensor, y_f: torch.Tensor, alpha: float
) -> torch.Tensor:
    """α · CE(logits_r, y_r) − (1 − α) · CE(logits_f, y_f), both CE averaged over their batch."""
    return alpha * F.cross_entropy(logits_r, y_r) - (1.0 - alpha) * F.cross_entropy(logits_f, y_f)


@register_unlearner("neggrad_plus")
class NegGradPlus(Unlearner):
    # searched: α (tuned per setting in the paper), epochs and learning rate
    space = {
        "alpha": Float(low=0.0, high=1.0, search=(0.9, 0.9999), doc="weight α of the retain loss"),
        "epochs": Int(low=1, search=(1, 6), doc="passes over D_r(k)"),
        "lr_scale": Float(low=0.0, low_open=True, search=(0.1, 3.0), log=True, doc="lr = recipe.lr x this"),
    }
    params = {"alpha": [0.999, 0.95], "epochs": [3], "lr_scale": [1.0]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        forget, retain = request.forget, request.retain
        n_f, n_r = len(forget), len(retain)
        epochs, alpha = self.hparams["epochs"], self.hparams["alpha"]
        if n_f == 0 or n_r == 0:
            return model.eval()
        bs = ctx.recipe.batch_size
        gen = request_generator(ctx, "neggrad_plus", request)
        forget_stream = cycle_batches(n_f, min(bs, n_f), gen)
        opt = make_step_optimizer(model, ctx, self.hparams["lr_scale"])
        model.train()
        for _ in range(epochs):
            ctx.check_budget()
            for idx_r in batches(n_r, bs, gen):
                idx_f = next(forget_stream)
                loss = neggrad_plus_loss(
                    model(retain.x[idx_r]), retain.y[idx_r], model(forget.x[idx_f]), forget.y[idx_f], alpha
                )
                optimizer_step(opt, model, loss, ctx.recipe.weight_decay)
                ctx.counters.grad_samples += int(idx_r.numel() + idx_f.numel())
        return model.eval()
