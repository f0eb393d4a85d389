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

Krylov dimension (``k``, ``krylov_tol``): with ``krylov_tol`` = θ > 0 (default) the space grows one Lanczos
vector at a time until the subproblem residual passes the ARC test TC.s, ‖∇m(Δ)‖ ≤ θ·min(1, ‖Δ‖)·‖g‖
(Cartis, Gould & Toint 2011, Part I, (3.28); the residual is β_k|y_k|, free from the Lanczos relation), with
``k`` the cap; a fixed dimension would be exact at large L and off at the small L that ARC reaches, losing
its fast local convergence. ``krylov_tol`` = 0 builds exactly k vectors per iteration.

Modes (the ARC loop is ``benchmark.curvature.arc``, shared with ``cure_newton``):
* ``adaptive`` (default): ARC run to convergence on each request: ρ = (f(w) − f(w+Δ)) / (m(0) − m(Δ));
  accept when ρ ≥ 0.1, L ← max(0.1·L, 1e-6) when ρ ≥ 0.9, L ← 2L and re-solve from the same Krylov basis
  when ρ < 0.1. Stops at the first iterate with ‖g‖ ≤ max(gtol·‖g₀‖, gtol_abs) (g₀: the retain gradient
  at the start of the request), after ``iters`` iterations (a cap), or when no trial step is accepted.
  L persists across the K requests of a cell (``ctx.state["L"]``).
* ``fixed``: the paper's rule, a set L, every step accepted, exactly ``iters`` iterations.

Precision: Lanczos basis and the reduced problem in float64; Hessian-vector products in the model's dtype
(float32 for the suite's models), cast to float64; gradient and losses in float64 (``precision="float64"``,
the default: the ARC ratio compares loss differences that can be ~1e-7 of the loss) or in the model's dtype
(``precision="model"``: for large models, where a float64 forward pass is several times slower).

Work per iteration: one gradient over D_r (its loss value comes with it), k' ≤ k HVPs (fewer on a Lanczos
breakdown), and in adaptive mode one forward pass over D_r per trial step (counted in ``fwd_samples``).
``hvp_batch`` = b > 0 computes the HVPs on a uniform subsample of b retain samples, drawn per iteration from
the cell seed (subsampled-curvature cubic regularisation: Kohler & Lucchi 2017, "Sub-sampled Cubic
Regularization for Non-convex Optimization", ICML; Xu, Roosta & Mahoney 2020, "Newton-type methods for
non-convex optimization under inexact Hessian information", Math. Program.); the gradient stays exact on
D_r. The curvature then costs 2·k·b sample-gradients instead of 2·k·|D_r|. ``check_batch`` = c > 0
replaces the forward passes over D_r of the ARC ratio by f̂(w + Δ) = f(w) + gᵀΔ + [f_S(w + Δ) − f_S(w) −
∇f_S(w)ᵀΔ] on c retain samples S (exact first order, unbiased subsampled remainder:
``benchmark.curvature.arc.SubsampledRemainder``; ARC with inexact function values: Bellavia, Gurioli,
Morini & Toint 2019, "Adaptive regularization algorithms with inexact evaluations for nonconvex
optimization", SIAM J. Optim.); a plain f_S difference would be dominated by the sampling noise of f_S
after a small deletion. With both, an iteration costs little more than one gradient pass over D_r.
``chunk_size`` > 0 evaluates losses, gradients and HVPs in chunks of that many samples (bounded
activation memory; needed for CNNs on large D_r).

Budget preset (``params.yaml``'s second configuration: iters = 2, k = 10, krylov_tol = 0, hvp_batch = 32,
check_batch = 256, precision = "model"): its ToW and cost are the leaderboard rows with params_id
``cure_newton_krylov[check_batch=256,hvp_batch=32,iters=2,k=10,krylov_tol=0.0,precision=model]``
(``leaderboards/digits-mlp.csv``, ``leaderboards/mnist5k-mlp.csv``). Two iterations hardly move a network
that memorised its data at sample level (on the random protocol it scores about as the do-nothing
``original``); class deletion needs several exact-curvature iterations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark.core.space import Choice, Float, Int
from benchmark.curvature import (
    FlatLoss,
    flat_params,
    load_flat_params_,
    make_hvp,
    make_loss_fn,
    make_subsampled_loss_fn,
    value_and_gradient,
)
from benchmark.curvature.arc import ARC_MODES, StopRule, SubsampledRemainder, arc_step, request_diagnostics
from benchmark.curvature.lanczos import krylov_subproblem
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner

PRECISIONS = ("float64", "model")


@register_unlearner("cure_newton_krylov")
class CubicNewtonKrylov(Unlearner):
    space = {
        # searched as cure_newton's: the initial L and the stopping tolerance; the rest are the solver's
        # accuracy and cost settings (Krylov cap and tolerance, subsample sizes, chunks, precision)
        "L": Float(low=0.0, low_open=True, search=(0.01, 100.0), log=True, doc="(initial) cubic constant"),
        "iters": Int(low=0, doc="iteration cap (fixed mode: the iteration count)"),
        "k": Int(low=1, doc="Krylov dimension cap"),
        "krylov_tol": Float(low=0.0, doc="subproblem residual test θ (0: exactly k Lanczos vectors)"),
        "mode": Choice(options=ARC_MODES, doc="adaptive: ARC to convergence; fixed: the paper's rule"),
        "gtol": Float(low=0.0, search=(1e-4, 1e-2), log=True, doc="stop when ‖g‖ ≤ gtol·‖g₀‖"),
        "gtol_abs": Float(low=0.0, doc="stop when ‖g‖ ≤ gtol_abs"),
        "perturb": Float(low=0.0, doc="relative random component of the Lanczos start (hard case)"),
        "hvp_batch": Int(low=0, doc="retain samples of the HVPs (0: all of D_r)"),
        "check_batch": Int(low=0, doc="retain samples of the ARC ratio's remainder (0: all of D_r)"),
        "chunk_size": Int(low=0, doc="samples per chunk of a pass (0: one chunk)"),
        "precision": Choice(options=PRECISIONS, doc="gradient and loss evaluations: float64 or the model's"),
    }
    params = {
        "L": [1.0],
        "iters": [10],
        "k": [100],
        "krylov_tol": [0.01],
        "mode": ["adaptive"],
        "gtol": [1e-3],
        "gtol_abs": [0.0],
        "perturb": [0.0],
        "hvp_batch": [0],
        "check_batch": [0],
        "chunk_size": [0],
        "precision": ["float64"],
    }
    test_params = {"iters": 1, "k": 5}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        hp = self.hparams  # types and ranges checked at construction (``space``)
        mode, k, perturb, ktol = hp["mode"], hp["k"], hp["perturb"], hp["krylov_tol"]
        hvp_batch, check_batch, chunk = hp["hvp_batch"], hp["check_batch"], hp["chunk_size"]
        L = float(ctx.state.get("L", hp["L"])) if mode == "adaptive" else hp["L"]
        pdtype = next(model.parameters()).dtype
        cdtype = torch.float64 if hp["precision"] == "float64" else pdtype  # gradient and loss evaluations
        model.eval()
        retain, wd = request.retain, ctx.recipe.weight_decay
        loss_fn = make_loss_fn(model, retain.x, retain.y, wd, chunk_size=chunk or None)
        n_r = len(retain)

        def subsample(size: int, stream: int) -> FlatLoss:
            """The retain loss on ``size`` samples drawn uniformly (seeded), or on all of D_r (size 0)."""
            if not 0 < size < n_r:
                return loss_fn
            gen = ctx.generator(request.step * 1000 + stream)
            return make_subsampled_loss_fn(model, retain.x, retain.y, size, gen, wd, chunk or None)

        rule = StopRule(hp["iters"], hp["gtol"], hp["gtol_abs"], fixed=mode == "fixed")
        w0 = flat_params(model).to(torch.float64)
        w = w0.clone()
        info: dict[str, float | int | bool] = {}
        tries, gnorm = 0, float("nan")
        for it in range(rule.max_iters):
            ctx.check_budget()
            f_w, g = value_and_gradient(loss_fn, w.to(cdtype), ctx.counters)
            g = g.to(torch.float64)
            gnorm = float(g.norm())
            if rule.done(gnorm):
                break
            curv_fn = subsample(hvp_batch, 500 + it)  # subsampled curvature, a fresh draw each iteration
            hvp = make_hvp(curv_fn, w.to(pdtype), mode="rev_rev", counter=ctx.counters)
            gen = ctx.generator(request.step * 1000 + it) if perturb > 0 else None
            sub = krylov_subproblem(hvp, g, k, perturb=perturb, generator=gen, tol=ktol)
            check_fn: Any = loss_fn  # the ARC ratio: on D_r, or exact first order + subsampled remainder
            if mode == "adaptive" and 0 < check_batch < n_r:
                sample = subsample(check_batch, 700 + it)
                check_fn = SubsampledRemainder(sample, w, g, f_w, ctx.counters, cdtype)
            w, L, arc = arc_step(
                check_fn, w, sub.solve, L, mode, f_w=f_w, counter=ctx.counters, eval_dtype=cdtype
            )
            tries += arc.tries
            ritz = sub.ritz_values
            info = dict(
                shift=arc.step.shift,
                rho=arc.rho,
                accepted=arc.accepted,
                hard_case=arc.step.hard_case,
                krylov_dim=sub.dim,
                krylov_residual=sub.residual_norm,
                ritz_min=float(ritz[0]) if sub.dim else float("nan"),
                ritz_max=float(ritz[-1]) if sub.dim else float("nan"),
                lanczos_residual=sub.lanczos.residual if sub.lanczos is not None else 0.0,
            )
            del sub, hvp  # frees the gradient graph of the HVPs
            if rule.after(arc):
                break
        if mode == "adaptive":
            ctx.state["L"] = L
        step_norm = float((w - w0).norm())
        ctx.info.update(
            request_diagnostics(info, L=L, rule=rule, tries=tries, grad_norm=gnorm, step_norm=step_norm)
        )
        return load_flat_params_(model, w.to(pdtype))
