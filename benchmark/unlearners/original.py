"""``original``: do nothing. The floor every method must beat: its gaps are the cost of not unlearning."""

from __future__ import annotations

from torch import nn

from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


@register_unlearner("original")
class Original(Unlearner):
    """w⁺ = w (the model trained on the full data, untouched)."""

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        return model
