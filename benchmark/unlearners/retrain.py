"""``retrain``: retrain from scratch on D minus requests 1..k, with an independent seed.

The gold model of the same seed would score a perfect ToW by construction; an independent seed
gives the honest reference: "as close to the gold model as another retrain would be".
"""

from __future__ import annotations

from torch import nn

from benchmark.models.training import train_model
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner

SEED_OFFSET = 10_000


@register_unlearner("retrain")
class Retrain(Unlearner):
    """w⁺ = argmin_w L(w; D_r(k)) by the originals' recipe, from a fresh initialisation (seed + 10⁴ + k)."""

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        seed = ctx.seed + SEED_OFFSET + request.step
        fresh = ctx.make_model(seed)
        return train_model(fresh, request.retain.x, request.retain.y, ctx.recipe, seed, counters=ctx.counters)
