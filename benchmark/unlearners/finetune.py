"""``finetune`` (FT): a few epochs of training on the retain set from the current model.

w⁺ = w − η Σ ∇L(w; B), B minibatches of D_r(k); relies on catastrophic forgetting of D_e
(Golatkar et al. 2020, "Eternal Sunshine of the Spotless Net", the FT baseline).
"""

from __future__ import annotations

from torch import nn

from benchmark.core.space import Float, Int
from benchmark.models.training import train_model
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


@register_unlearner("finetune")
class Finetune(Unlearner):
    # searched: epochs (up to twice the default) and learning rate, the two settings the released scripts
    # of Jia et al. 2023 / Fan et al. 2024 give the FT baseline per setting
    space = {
        "epochs": Int(low=1, search=(1, 6), doc="passes over D_r(k)"),
        "lr_scale": Float(low=0.0, low_open=True, search=(0.1, 3.0), log=True, doc="lr = recipe.lr x this"),
    }
    params = {"epochs": [3], "lr_scale": [1.0]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        return train_model(
            model,
            request.retain.x,
            request.retain.y,
            ctx.recipe,
            ctx.seed * 131 + request.step,
            epochs=self.hparams["epochs"],
            lr=ctx.recipe.lr * self.hparams["lr_scale"],
            counters=ctx.counters,
        )
