"""``gradient_ascent`` (GA / NegGrad): ascend the loss on the deleted samples.

w⁺ = w + η Σ ∇L(w; B), B minibatches of the request's forget set D_e(k)
(Thudi et al. 2022, "Unrolling SGD"; Golatkar et al. 2020 NegGrad). Known to over-forget.
"""

from __future__ import annotations

from torch import nn

from benchmark.core.space import Float, Int
from benchmark.models.training import train_model
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


@register_unlearner("gradient_ascent")
class GradientAscent(Unlearner):
    # searched: epochs and learning rate, the two settings the released scripts of Jia et al. 2023 /
    # Fan et al. 2024 give the GA baseline
    space = {
        "epochs": Int(low=1, search=(1, 10), doc="ascent passes over D_e(k)"),
        "lr_scale": Float(low=0.0, low_open=True, search=(0.01, 1.0), log=True, doc="lr = recipe.lr x this"),
    }
    params = {"epochs": [5], "lr_scale": [0.1]}
    test_params = {"epochs": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        return train_model(
            model,
            request.forget.x,
            request.forget.y,
            ctx.recipe,
            ctx.seed * 137 + request.step,
            epochs=self.hparams["epochs"],
            lr=ctx.recipe.lr * self.hparams["lr_scale"],
            counters=ctx.counters,
            ascent=True,
        )
