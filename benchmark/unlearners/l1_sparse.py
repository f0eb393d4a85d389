"""``l1_sparse`` (ℓ1-sparse MU): fine-tune on the retain set with a decaying ℓ1 penalty.

Jia, Liu, Ram, Yao, Liu, Liu, Sharma & Liu, NeurIPS 2023, "Model Sparsity Can Simplify Machine
Unlearning" (Eq. 5). In epoch e = 0, …, E−1, on retain minibatches B_r ⊂ D_r(k)::

    L_e(w) = CE(w; B_r) + γ_e ‖w‖₁            (+ (λ/2)‖w‖², the recipe's coupled L2)
    γ_e    = γ · (1 − e / E)                   (linear decay to 0, constant within an epoch)

‖w‖₁ sums over all parameters (biases included), as in the released code (``l1_regularization``);
its schedule is the released ``FT_l1`` one with ``no_l1_epochs = 0``. Paper defaults: γ = 5e-4,
10 epochs, SGD lr 0.01 on CIFAR-10; here 5 epochs at the originals' optimiser and learning rate.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.space import Float, Int
from benchmark.unlearners._distill import batches, make_step_optimizer, optimizer_step, request_generator
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


def l1_penalty_schedule(l1: float, epochs: int) -> list[float]:
    """γ_e = l1 · (1 − e / epochs) for e = 0, …, epochs − 1."""
    return [l1 * (1.0 - e / epochs) for e in range(epochs)]


def l1_norm(model: nn.Module) -> torch.Tensor:
    return cast(torch.Tensor, sum(p.abs().sum() for p in model.parameters() if p.requires_grad))


@register_unlearner("l1_sparse")
class L1Sparse(Unlearner):
    # searched: γ on a log scale around the paper's 5e-4 and the grid's 1e-4, epochs and learning rate
    space = {
        "l1": Float(low=0.0, search=(1e-5, 1e-3), log=True, doc="initial ℓ1 coefficient γ"),
        "epochs": Int(low=1, search=(1, 10), doc="passes over D_r(k) (γ decays to 0 over them)"),
        "lr_scale": Float(low=0.0, low_open=True, search=(0.1, 3.0), log=True, doc="lr = recipe.lr x this"),
    }
    params = {"l1": [5e-4, 1e-4], "epochs": [5], "lr_scale": [1.0]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        retain = request.retain
        n_r, epochs = len(retain), self.hparams["epochs"]
        if n_r == 0:
            return model.eval()
        gen = request_generator(ctx, "l1_sparse", request)
        opt = make_step_optimizer(model, ctx, self.hparams["lr_scale"])
        model.train()
        for gamma in l1_penalty_schedule(self.hparams["l1"], epochs):
            ctx.check_budget()
            for idx in batches(n_r, ctx.recipe.batch_size, gen):
                loss = F.cross_entropy(model(retain.x[idx]), retain.y[idx]) + gamma * l1_norm(model)
                optimizer_step(opt, model, loss, ctx.recipe.weight_decay)
                ctx.counters.grad_samples += int(idx.numel())
        return model.eval()
