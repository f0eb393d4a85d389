"""``newton_pinv`` (PINV-Newton): one Newton step with the pseudo-inverse of the retain-set Hessian.

    w⁺ = w − H⁺ g,   g = ∇L(w; D_r),  H = ∇²L(w; D_r),  ‖Δ‖² = Σ_{λᵢ≠0} (uᵢᵀg)² / λᵢ²

The naive baseline of Bui et al. 2024 (arXiv 2406.14507, "PINV-Newton"); with g ≈ −(|D_e|/|D_r|)·mean
gradient of D_e at the original optimum it is the influence / certified-removal step (Guo et al. 2020).
On a trained network the spectrum is spiked (a few large, many tiny or negative eigenvalues) and the
tiny ones blow the step up: the paper reports accuracy collapsing to chance.
Eigenvalues with |λ| ≤ rcond·max|λ| are treated as zero.
"""

from __future__ import annotations

from torch import nn

from benchmark.core.space import Float
from benchmark.curvature import load_flat_params_, newton_pinv_step
from benchmark.unlearners._exact import ExactHessianUnlearner
from benchmark.unlearners.base import Context, Request, register_unlearner


@register_unlearner("newton_pinv")
class NewtonPinv(ExactHessianUnlearner):
    space = {**ExactHessianUnlearner.space, "rcond": Float(low=0.0, doc="relative eigenvalue cut-off")}
    params = {**ExactHessianUnlearner.params, "rcond": [1e-6]}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        c = self.curvature(model, request, ctx)
        step = newton_pinv_step(c.eigvals, c.eigvecs, c.g, rcond=self.hparams["rcond"])
        ctx.info["step_norm"] = float(step.norm())
        return load_flat_params_(model, (c.w + step).to(next(model.parameters()).dtype))
