"""``cure_newton`` (CuReNU): exact cubic-regularized Newton unlearning on the full Hessian.

Bui, Lu, Sim, Ng, Low, "On Newton's Method to Unlearn Neural Networks" (arXiv 2406.14507).
Starting from the current model w, each iteration forms g = ∇L(w; D_r) and H = ∇²L(w; D_r)
(mean cross-entropy + the training L2 term, curvature in eval mode), and takes the global minimiser of

    m(Δ) = gᵀΔ + ½ ΔᵀHΔ + (L/6)‖Δ‖³,

i.e. Δ = −(H + (L/2)‖Δ‖ I)⁻¹ g with H + (L/2)‖Δ‖I ⪰ 0 (Nesterov & Polyak 2006), solved exactly from the
eigendecomposition of H (secular equation, hard case included; see ``benchmark.curvature.cubic``).

Modes:
* ``fixed``: the paper's rule, a set L, every step accepted.
* ``adaptive``: ARC (Cartis, Gould, Toint 2011): ρ = (f(w) − f(w+Δ)) / (m(0) − m(Δ));
  accept when ρ ≥ 0.1, halve L when ρ ≥ 0.9, double L and re-solve (same eigendecomposition) when ρ < 0.1
  (the loop is :func:`benchmark.curvature.arc.arc_step`, shared with ``cure_newton_krylov``).

The Hessian is formed in ``hessian_dtype`` (float32 by default: 2.5× faster than float64 on the digits MLP)
and decomposed in float64; gradients, losses and the cubic solve are float64.
Cost O(d²) memory and O(d³) time: skipped above ``max_params`` parameters.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmark.curvature import (
    flat_params,
    hessian,
    load_flat_params_,
    make_loss_fn,
    solve_cubic_eig,
    value_and_gradient,
)
from benchmark.curvature.arc import arc_step, check_mode
from benchmark.unlearners._exact import DTYPES, ExactHessianUnlearner
from benchmark.unlearners.base import Context, Request, register_unlearner


@register_unlearner("cure_newton")
class CubicNewton(ExactHessianUnlearner):
    params = {**ExactHessianUnlearner.params, "L": [1.0], "iters": [2], "mode": ["adaptive"]}
    test_params = {"iters": 1}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        mode = check_mode(self.hparams["mode"], "cure_newton")
        L = float(ctx.state.get("L", self.hparams["L"])) if mode == "adaptive" else float(self.hparams["L"])
        hdtype = DTYPES[self.hparams["hessian_dtype"]]
        model.eval()
        x, y = request.retain.x, request.retain.y
        loss_fn = make_loss_fn(model, x, y, ctx.recipe.weight_decay)
        w0 = flat_params(model).to(torch.float64)
        w = w0.clone()
        shifts, rhos = [], []
        for _ in range(int(self.hparams["iters"])):
            ctx.check_budget()
            f_w, g = value_and_gradient(loss_fn, w, ctx.counters)
            H = hessian(loss_fn, w.to(hdtype), chunk_size=32, counter=ctx.counters)
            eigvals, eigvecs = torch.linalg.eigh(H.to(torch.float64))
            del H
            # a rejected step is re-solved with 2L from the same eigendecomposition
            solve = partial(solve_cubic_eig, eigvals, eigvecs, g)
            w, L, arc = arc_step(loss_fn, w, solve, L, mode, f_w=f_w, counter=ctx.counters)
            if mode == "adaptive" and arc.accepted:
                rhos.append(arc.rho)
            shifts.append(arc.step.shift)
        if mode == "adaptive":
            ctx.state["L"] = L
        ctx.info.update(
            L=L,
            shift=shifts[-1] if shifts else float("nan"),
            rho=rhos[-1] if rhos else float("nan"),
            lambda_min=float(eigvals[0]),
            lambda_max=float(eigvals[-1]),
            step_norm=float((w - w0).norm()),
        )
        return load_flat_params_(model, w.to(next(model.parameters()).dtype))
