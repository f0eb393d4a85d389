"""``cure_newton_krylov``: cubic-regularized Newton unlearning with a Lanczos (Krylov) subproblem solver.

The matrix-free counterpart of ``cure_newton`` (CuReNU; Bui, Lu, Sim, Ng, Low, "On Newton's Method to
Unlearn Neural Networks", arXiv 2406.14507). Starting from the current model w, each iteration forms
g = ∇L(w; D_r) (mean cross-entropy + the training L2 term, eval mode) and minimises the cubic model

    m(Δ) = gᵀΔ + ½ ΔᵀHΔ + (L/6)‖Δ‖³,      H = ∇²L(w; D_r),

over the Krylov space K_k(H, g) = span{g, Hg, …, H^{k−1}g}: k steps of Lanczos with full
re-orthogonalisation from q₁ = g/‖g‖ give Q (d × k, orthonormal) and T = QᵀHQ (tridiagonal), and with
Δ = Q y the model becomes ‖g‖e₁ᵀy + ½yᵀTy + (L/6)‖y‖³, solved exactly and globally from eigh(T) (the
secular equation of ``benchmark.curvature.cubic``). This is the Lanczos ARC subproblem solver of Cartis,
Gould & Toint 2011 ("Adaptive cubic regularisation methods for unconstrained optimization", Part I, §3);
Carmon & Duchi 2018 ("Analysis of Krylov subspace solutions of regularized nonconvex quadratic problems")
bound the model gap by exp(−k/√κ) in the easy case. H is never formed: k Hessian-vector products
(reverse-over-reverse, one backward pass each through the gradient graph built once per iteration) and
memory O(d·k). For k ≥ d it coincides with ``cure_newton`` (easy case); in the hard case (g ⊥ the
eigenspace of λ_min < 0) the Krylov space cannot see the negative curvature — ``perturb`` > 0 adds a
seeded random component of that relative size to the Lanczos starting vector
(``benchmark.curvature.lanczos``).

Modes (the ARC loop is ``benchmark.curvature.arc.arc_step``, shared with ``cure_newton``):
* ``fixed``: the paper's rule, a set L, every step accepted.
* ``adaptive``: ARC: ρ = (f(w) − f(w+Δ)) / (m(0) − m(Δ)); accept when ρ ≥ 0.1, halve L when ρ ≥ 0.9,
  double L and re-solve from the same Krylov basis when ρ < 0.1 (no new HVP). L persists across the
  K requests of a cell (``ctx.state["L"]``).

Precision: gradient, losses, Lanczos basis and the reduced problem in float64; Hessian-vector products in
the model's dtype (float32 for the suite's models), cast to float64.
Work per iteration: one gradient over D_r and k' ≤ k HVPs over D_r (fewer on a Lanczos breakdown).

Defaults (k = 10, iters = 4; measured on digits-mlp and mnist5k-mlp, seed 0, 5 requests): the same 40 HVPs
per request as k = 20, iters = 2, better spent. The ARC shift (L/2)‖Δ‖ keeps the reduced problem well
conditioned, so k = 10 already gives the exact cubic step to < 0.1 % (ToW identical to k = 20, 40 and to
the exact ``cure_newton`` at iters = 2), while more outer iterations move much further on class deletion
(mean ToW 0.29 → 0.76 on digits-mlp, 0.08 → 0.51 on mnist5k-mlp; random deletion unchanged within ±0.003).
iters = 8 raises class deletion further (0.96 / 0.84) at twice the cost. For a like-for-like comparison
with ``cure_newton`` use iters = 2.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.curvature import flat_params, gradient, load_flat_params_, make_hvp, make_loss_fn
from benchmark.curvature.arc import arc_step, check_mode
from benchmark.curvature.lanczos import krylov_subproblem
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner


@register_unlearner("cure_newton_krylov")
class CubicNewtonKrylov(Unlearner):
    params = {
        "L": [1.0],
        "iters": [4],
        "k": [10],
        "mode": ["adaptive"],
        "perturb": [0.0],
    }
    test_params = {"iters": 1, "k": 5}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        hp = self.hparams
        mode = check_mode(hp["mode"], "cure_newton_krylov")
        k, iters, perturb = int(hp["k"]), int(hp["iters"]), float(hp["perturb"])
        if k < 1 or iters < 0 or perturb < 0 or not float(hp["L"]) > 0:
            raise ValueError(f"cure_newton_krylov: invalid parameters {hp}")
        L = float(ctx.state.get("L", hp["L"])) if mode == "adaptive" else float(hp["L"])
        pdtype = next(model.parameters()).dtype
        model.eval()
        loss_fn = make_loss_fn(model, request.retain.x, request.retain.y, ctx.recipe.weight_decay)
        w0 = flat_params(model).to(torch.float64)
        w = w0.clone()
        info: dict[str, float | int | bool] = {}
        tries = 0
        for it in range(iters):
            ctx.check_budget()
            g = gradient(loss_fn, w, ctx.counters)
            hvp = make_hvp(loss_fn, w.to(pdtype), mode="rev_rev", counter=ctx.counters)
            gen = ctx.generator(request.step * 1000 + it) if perturb > 0 else None
            sub = krylov_subproblem(hvp, g, k, perturb=perturb, generator=gen)
            del hvp  # frees the gradient graph before the ARC loop evaluates losses
            w, L, arc = arc_step(loss_fn, w, sub.solve, L, mode)
            tries += arc.tries
            ritz = sub.ritz_values
            info = dict(
                shift=arc.step.shift,
                rho=arc.rho,
                accepted=arc.accepted,
                hard_case=arc.step.hard_case,
                grad_norm=float(g.norm()),
                krylov_dim=sub.dim,
                ritz_min=float(ritz[0]) if sub.dim else float("nan"),
                ritz_max=float(ritz[-1]) if sub.dim else float("nan"),
                lanczos_residual=sub.lanczos.residual if sub.lanczos is not None else 0.0,
            )
        if mode == "adaptive":
            ctx.state["L"] = L
        ctx.info.update(info)
        ctx.info.update(L=L, arc_tries=tries, step_norm=float((w - w0).norm()))
        return load_flat_params_(model, w.to(pdtype))
