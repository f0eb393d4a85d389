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
from typing import Any

import torch
from torch import Tensor

from benchmark.curvature.cubic import CubicStep
from benchmark.curvature.functional import loss_value, value_and_gradient

__all__ = [
    "ARC_MODES",
    "ARCInfo",
    "ETA_ACCEPT",
    "ETA_GOOD",
    "L_MIN",
    "MAX_RETRIES",
    "SubsampledRemainder",
    "arc_step",
]

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
    counter: Any = None,
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
    f_new = float("nan")
    sol = None
    for tries in range(1, MAX_RETRIES + 1):
        L_step = L
        sol = solve(L)
        w_new = w + sol.step.to(w.dtype)
        f_new = loss_value(f, w_new, counter, eval_dtype)
        rho = (f_old - f_new) / max(sol.model_decrease, 1e-300)
        if rho >= ETA_ACCEPT or (sol.model_decrease <= TINY_DECREASE and math.isfinite(f_new)):
            if rho >= ETA_GOOD:
                L = max(L / 2, L_MIN)
            return w_new, L, ARCInfo(sol, True, rho, tries, L_step, f_old, f_new)
        L *= 2
    return w, L, ARCInfo(sol, False, float("nan"), MAX_RETRIES, L_step, f_old, f_new)


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

    def __init__(self, f_sub: Any, w: Tensor, g: Tensor, f_w: float, counter: Any = None, dtype: Any = None):
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
