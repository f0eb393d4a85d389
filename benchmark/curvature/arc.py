r"""The acceptance loop of adaptive cubic regularisation (ARC), shared by the cubic-Newton unlearners.

Cartis, Gould & Toint 2011, "Adaptive cubic regularisation methods for unconstrained optimization. Part I",
Math. Program. 127 (Algorithm 2.1, with σ = L/2 in their notation). Given the current point w, its loss
f(w) and a subproblem solver ``solve(L)`` returning the (approximate) minimiser Δ of

    m(Δ) = gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³

with its model decrease m(0) − m(Δ), one ARC iteration computes

    ρ = (f(w) − f(w + Δ)) / (m(0) − m(Δ))

and accepts the step when ρ ≥ η₁ = 0.1 (or when the model decrease is ≤ 1e-15: nothing left to gain),
halving L (floored at 1e-6) when ρ ≥ η₂ = 0.9 ("very successful"); when ρ < η₁ it doubles L and calls
``solve`` again — the curvature (eigendecomposition or Krylov basis) is reused, so a rejection costs one
subproblem solve and one loss evaluation, no gradient or Hessian-vector product. After ``MAX_RETRIES``
rejections w is left unchanged (L keeps its doubled value). ``mode="fixed"`` is the rule of Bui et al. 2024
(arXiv 2406.14507): L is fixed and every step is accepted (no loss evaluation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from benchmark.curvature.cubic import CubicStep

__all__ = ["ARC_MODES", "ARCInfo", "ETA_ACCEPT", "ETA_GOOD", "L_MIN", "MAX_RETRIES", "arc_step"]

ARC_MODES = ("fixed", "adaptive")
ETA_ACCEPT, ETA_GOOD = 0.1, 0.9
L_MIN = 1e-6
MAX_RETRIES = 30
TINY_DECREASE = 1e-15


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
) -> tuple[Tensor, float, ARCInfo]:
    """One ARC iteration from ``w``: returns (new w, new L, :class:`ARCInfo`).

    ``f`` is the loss of the flat parameters (evaluated in ``w``'s dtype), ``solve(L)`` the subproblem
    solver (its step must have ``w``'s shape), ``f_w`` an already known f(w).
    """
    check_mode(mode)
    L = float(L)
    if mode == "fixed":
        sol = solve(L)
        nan = float("nan")
        return w + sol.step.to(w.dtype), L, ARCInfo(sol, True, nan, 1, L, nan, nan)
    f_old = float(f(w)) if f_w is None else float(f_w)
    f_new = float("nan")
    sol = None
    for tries in range(1, MAX_RETRIES + 1):
        L_step = L
        sol = solve(L)
        w_new = w + sol.step.to(w.dtype)
        f_new = float(f(w_new))
        rho = (f_old - f_new) / max(sol.model_decrease, 1e-300)
        if rho >= ETA_ACCEPT or (sol.model_decrease <= TINY_DECREASE and math.isfinite(f_new)):
            if rho >= ETA_GOOD:
                L = max(L / 2, L_MIN)
            return w_new, L, ARCInfo(sol, True, rho, tries, L_step, f_old, f_new)
        L *= 2
    return w, L, ARCInfo(sol, False, float("nan"), MAX_RETRIES, L_step, f_old, f_new)
