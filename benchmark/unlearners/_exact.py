"""Shared plumbing of the methods that form the full retain-loss Hessian (O(d²) memory, O(d³) time)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from benchmark.core.space import Choice, Int
from benchmark.curvature import flat_params, gradient, hessian, make_loss_fn
from benchmark.unlearners.base import Context, Request, Unlearner

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class ExactCurvature:
    """g = ∇L(w; D_r) and H = ∇²L(w; D_r) = U diag(λ) Uᵀ at the flat weights w (all float64)."""

    w: torch.Tensor
    g: torch.Tensor
    eigvals: torch.Tensor
    eigvecs: torch.Tensor


class ExactHessianUnlearner(Unlearner):
    """Base for methods needing the explicit Hessian: skipped (with the reason) beyond ``max_params``."""

    space = {
        "max_params": Int(low=1, doc="largest model (parameters) whose d x d Hessian is formed"),
        "hessian_dtype": Choice(options=tuple(DTYPES), doc="dtype the Hessian is formed in"),
    }
    params = {"max_params": [6000], "hessian_dtype": ["float32"]}

    def skip(self, n_params: int) -> str | None:
        limit = self.hparams["max_params"]
        if n_params > limit:
            gb = n_params**2 * 8 / 1e9
            return (
                f"exact Hessian of {n_params} parameters ({gb:.1f} GB in float64) exceeds max_params={limit}"
            )
        return None

    def curvature(self, model: nn.Module, request: Request, ctx: Context) -> ExactCurvature:
        """Gradient and eigendecomposition of the retain loss (training objective incl. L2), eval mode."""
        model.eval()
        loss_fn = make_loss_fn(model, request.retain.x, request.retain.y, ctx.recipe.weight_decay)
        w = flat_params(model).to(torch.float64)
        g = gradient(loss_fn, w, ctx.counters)
        H = hessian(loss_fn, w.to(DTYPES[self.hparams["hessian_dtype"]]), chunk_size=32, counter=ctx.counters)
        eigvals, eigvecs = torch.linalg.eigh(H.to(torch.float64))
        ctx.info.update(
            lambda_min=float(eigvals[0]),
            lambda_max=float(eigvals[-1]),
            n_negative=int((eigvals < 0).sum()),
            grad_norm=float(g.norm()),
        )
        return ExactCurvature(w, g, eigvals, eigvecs)
