"""``newton_damped`` (Damped Newton): one Newton step with a hand-set damping γ.

    w⁺ = w − (H + γI)⁻¹ g,   g = ∇L(w; D_r),  H = ∇²L(w; D_r)

The second naive baseline of Bui et al. 2024 (arXiv 2406.14507). Nothing keeps H + γI positive definite:
for γ below |λ_min| the step points uphill along negative curvature, and small |λᵢ + γ| blow it up;
the paper reports catastrophic forgetting (accuracy near chance). Cubic regularisation (``cure_newton``)
makes γ = (L/2)‖Δ‖ come out of the solve instead.
"""

from __future__ import annotations

from torch import nn

from benchmark.core.space import Float
from benchmark.curvature import damped_newton_step, load_flat_params_
from benchmark.unlearners._exact import ExactHessianUnlearner
from benchmark.unlearners.base import Context, Request, register_unlearner


@register_unlearner("newton_damped")
class NewtonDamped(ExactHessianUnlearner):
    space = {
        **ExactHessianUnlearner.space,
        # searched over the span of the built-in grid (the paper hand-sets γ; it has no rule for it)
        "gamma": Float(low=0.0, search=(1e-4, 1.0), log=True, doc="damping γ of (H + γI)⁻¹"),
    }
    params = {**ExactHessianUnlearner.params, "gamma": [1e-4, 1e-2, 1.0]}
    test_params = {"gamma": 1e-2}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        c = self.curvature(model, request, ctx)
        step = damped_newton_step(c.eigvals, c.eigvecs, c.g, gamma=self.hparams["gamma"])
        ctx.info["step_norm"] = float(step.norm())
        return load_flat_params_(model, (c.w + step).to(next(model.parameters()).dtype))
