r"""Adaptive cubic regularisation (ARC): the acceptance loop and the outer stopping rule, shared by the
cubic-Newton unlearners (``cure_newton``, ``cure_newton_krylov``).

Cartis, Gould & Toint 2011, "Adaptive cubic regularisation methods for unconstrained optimization. Part I",
Math. Program. 127 (Algorithm 2.1, with σ = L/2 in their notation). Given the current point w, its loss
f(w) and a subproblem solver ``solve(L)`` returning the (approximate) minimiser Δ of

    m(Δ) = gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³

with its model decrease m(0) − m(Δ), one ARC iteration (:func:`arc_step`) computes

    ρ = (f(w) − f(w + Δ) + δ) / (m(0) − m(Δ) + δ),      δ = 1e3·ε_mach·max(1, |f(w)|)

and accepts the step when ρ ≥ η₁ = 0.1; when ρ ≥ η₂ = 0.9 ("very successful") L shrinks to
max(γ₁·L, L_min) with γ₁ = 0.1; when ρ < η₁ it grows to γ₂·L with γ₂ = 2 and ``solve`` is called again — the
curvature (eigendecomposition or Krylov basis) is reused, so a rejection costs one subproblem solve and one
loss evaluation, no gradient. These are the constants of Manopt's ARC (``arc.m``; Manopt.jl
``adaptive_regularization_with_cubics``: η₁ = 0.1, η₂ = 0.9, γ₁ = 0.1, γ₂ = 2), and δ is Manopt's ρ
regularisation (``rho_regularization`` = 1e3): near convergence both differences are at rounding level and
δ lets ρ → 1 instead of being noise. After ``MAX_RETRIES`` rejections w is left unchanged (L keeps its
grown value). ``mode="fixed"`` is the rule of Bui et al. 2024 (arXiv 2406.14507): L is fixed and every step
is accepted (no loss evaluation).

The outer loop stops (:class:`StopRule`) at the first iterate whose gradient satisfies the ARC first-order
test ‖g‖ ≤ max(gtol·‖g₀‖, gtol_abs), g₀ the gradient at the start of the request (a relative test: the
retain gradient after a deletion ranges over orders of magnitude between a random and a class request), or
after ``max_iters`` curvature evaluations, or when an iteration makes no progress (all trial steps rejected,
or an accepted step with zero model decrease). In fixed mode the paper's iteration count is run as is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark.core.types import WorkCounter
from benchmark.curvature.cubic import CubicStep
from benchmark.curvature.functional import loss_value, value_and_gradient

__all__ = [
    "ARC_MODES",
    "ARCInfo",
    "ETA_ACCEPT",
    "ETA_GOOD",
    "L_MIN",
    "GAMMA_GROW",
    "GAMMA_SHRINK",
    "MAX_RETRIES",
    "RHO_REG",
    "StopRule",
    "SubsampledRemainder",
    "arc_step",
    "request_diagnostics",
]

ARC_MODES = ("fixed", "adaptive")
ETA_ACCEPT, ETA_GOOD = 0.1, 0.9
GAMMA_SHRINK, GAMMA_GROW = 0.1, 2.0
L_MIN = 1e-6
MAX_RETRIES = 40  # from L_MIN, 2^40 reaches 1e6
RHO_REG = 1e3
_EPS = 2.220446049250313e-16


@dataclass(frozen=True)
class ARCInfo:
    """What one ARC iteration did."""

    step: CubicStep  # the last subproblem solution (the accepted one when ``accepted``)
    accepted: bool
    rho: float  # ratio of the accepted step (nan in fixed mode or when no step was accepted)
    tries: int  # subproblem solves
    L_step: float  # the L the last solve used
    f_old: float  # f(w) (nan in fixed mode)
    f_new: float  # f(w + Δ) of the last trial (nan in fixed mode)


def check_mode(mode: str, who: str = "arc") -> str:
    if mode not in ARC_MODES:
        raise ValueError(f"{who}.mode: expected 'fixed' or 'adaptive', got {mode!r}")
    return mode


def arc_step(
    f: Callable[[Tensor], Tensor],
    w: Tensor,
    solve: Callable[[float], CubicStep],
    L: float,
    mode: str = "adaptive",
    f_w: float | None = None,
    counter: WorkCounter | None = None,
    eval_dtype: Any = None,
) -> tuple[Tensor, float, ARCInfo]:
    """One ARC iteration from ``w``: returns (new w, new L, :class:`ARCInfo`).

    ``f`` is the loss of the flat parameters (evaluated in ``w``'s dtype), ``solve(L)`` the subproblem
    solver (its step must have ``w``'s shape), ``f_w`` an already known f(w) (e.g. from
    ``value_and_gradient``). Each loss evaluation is a forward pass over ``f.n_samples`` samples, added to
    ``counter.fwd_samples``, at w cast to ``eval_dtype`` when given (e.g. float32 for a large model).
    """
    check_mode(mode)
    L = float(L)
    if mode == "fixed":
        sol = solve(L)
        nan = float("nan")
        return w + sol.step.to(w.dtype), L, ARCInfo(sol, True, nan, 1, L, nan, nan)
    f_old = loss_value(f, w, counter, eval_dtype) if f_w is None else float(f_w)
    delta = RHO_REG * _EPS * max(1.0, abs(f_old))
    f_new = float("nan")
    for tries in range(1, MAX_RETRIES + 1):
        L_step = L
        sol = solve(L)
        w_new = w + sol.step.to(w.dtype)
        f_new = loss_value(f, w_new, counter, eval_dtype)
        rho = (f_old - f_new + delta) / (max(sol.model_decrease, 0.0) + delta)
        if math.isfinite(f_new) and rho >= ETA_ACCEPT:
            if rho >= ETA_GOOD:
                L = max(GAMMA_SHRINK * L, L_MIN)
            return w_new, L, ARCInfo(sol, True, rho, tries, L_step, f_old, f_new)
        L *= GAMMA_GROW
    return w, L, ARCInfo(sol, False, float("nan"), MAX_RETRIES, L_step, f_old, f_new)


@dataclass
class StopRule:
    """The outer ARC termination test of one request: ‖g‖ ≤ max(gtol·‖g₀‖, gtol_abs), or ``max_iters``.

    Use as ``for _ in range(rule.max_iters): g = …; if rule.done(‖g‖): break; …; if rule.after(info):
    break`` and call :meth:`finish` after the loop. ``done`` sees the gradient norm at the start of every
    iteration (the first call sets ‖g₀‖), so no curvature is formed at a point that already passes the
    test. ``reason`` says why the loop stopped: ``"gtol"``, ``"no_progress"`` (all trial steps rejected, or
    a zero step), ``"max_iters"``, or ``"fixed"`` (fixed mode: ``max_iters`` iterations, no test).
    """

    max_iters: int
    gtol: float = 1e-3
    gtol_abs: float = 0.0
    fixed: bool = False
    iters: int = 0  # iterations started (curvature evaluations)
    g0: float = float("nan")
    reason: str = ""

    def __post_init__(self) -> None:
        if self.max_iters < 0 or not self.gtol >= 0 or not self.gtol_abs >= 0:
            raise ValueError(f"invalid ARC stopping rule {self}")

    def threshold(self) -> float:
        return max(self.gtol * self.g0, self.gtol_abs)

    def done(self, gnorm: float) -> bool:
        """True when the loop must stop at a point with gradient norm ``gnorm`` (before its curvature)."""
        if self.iters == 0:
            self.g0 = float(gnorm)
        if not self.fixed and (gnorm <= self.threshold() or gnorm == 0.0):
            self.reason = "gtol"
            return True
        self.iters += 1
        return False

    def after(self, info: ARCInfo) -> bool:
        """True when the iteration just done made no progress (adaptive mode): the next would repeat it."""
        if not self.fixed and (not info.accepted or info.step.alpha == 0.0):
            self.reason = "no_progress"
            return True
        return False

    def finish(self) -> str:
        if not self.reason:
            self.reason = "fixed" if self.fixed else "max_iters"
        return self.reason


def request_diagnostics(
    last: dict[str, Any], *, L: float, rule: StopRule, tries: int, grad_norm: float, step_norm: float
) -> dict[str, Any]:
    """The per-request diagnostics of an ARC unlearner (``ctx.info``), shared by ``cure_newton`` and
    ``cure_newton_krylov``: the entries ``last`` of the last iteration (its shift, ρ, spectrum estimates),
    then the final ``L``, the iterations started (``iters``), the subproblem solves (``arc_tries``), why
    the loop stopped (``stop``: :meth:`StopRule.finish`), ‖g₀‖ (``grad_norm0``), the norm of the last
    gradient formed (``grad_norm``: the final point unless stopped by the cap) and ‖w − w₀‖
    (``step_norm``)."""
    return {
        **last,
        "L": L,
        "iters": rule.iters,
        "arc_tries": tries,
        "stop": rule.finish(),
        "grad_norm0": rule.g0,
        "grad_norm": grad_norm,
        "step_norm": step_norm,
    }


class SubsampledRemainder:
    r"""A cheap stand-in for f in the ARC ratio: exact first order, subsampled remainder.

    For the step Δ = w' − w from the current point w (with known f(w) and g = ∇f(w) over all of D_r)::

        f̂(w') = f(w) + gᵀΔ + [f_S(w') − f_S(w) − ∇f_S(w)ᵀΔ]

    where f_S is the loss on a subsample S. The bracket is an unbiased estimate of the remainder
    f(w') − f(w) − gᵀΔ = ½ΔᵀHΔ + O(‖Δ‖³) (S uniform), and the first-order term is exact, so
    ρ = (f(w) − f̂(w + Δ)) / (m(0) − m(Δ)) is not swamped by the sampling noise of f_S itself — which,
    after a small deletion, is larger than the decrease to be measured (the subsample's own gradient
    ∇f_S(w) − g is a control variate). Costs one gradient on S (at construction, counted in
    ``grad_samples``) and one forward pass on S per evaluation (counted by ``arc_step`` in
    ``fwd_samples`` through ``n_samples``).
    """

    def __init__(
        self,
        f_sub: Any,
        w: Tensor,
        g: Tensor,
        f_w: float,
        counter: WorkCounter | None = None,
        dtype: Any = None,
    ):
        self.f_sub, self.dtype = f_sub, dtype or w.dtype
        self.n_samples = int(getattr(f_sub, "n_samples", 0))
        self.w, self.f_w = w.detach(), float(f_w)
        fs_w, gs = value_and_gradient(f_sub, self.w.to(self.dtype), counter)
        self.fs_w = fs_w
        self.dg = g.detach().to(w.dtype) - gs.to(w.dtype)  # g − ∇f_S(w)

    def __call__(self, w_new: Tensor) -> Tensor:
        fs_new = loss_value(self.f_sub, w_new, None, self.dtype)
        step = w_new.detach().to(self.w.dtype) - self.w
        return torch.tensor(self.f_w + float(self.dg @ step) + fs_new - self.fs_w, dtype=self.w.dtype)
