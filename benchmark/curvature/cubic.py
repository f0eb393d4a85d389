r"""Exact global solution of the cubic-regularised Newton subproblem.

Each iteration of cubic-regularised Newton unlearning (CuReNU, Bui et al. 2024, "On Newton's Method to
Unlearn Neural Networks", arXiv 2406.14507; after Nesterov & Polyak 2006, "Cubic regularization of
Newton method and its global performance", Math. Program. 108) solves

    min_Δ  m(Δ) = gᵀΔ + ½ ΔᵀHΔ + (L/6)‖Δ‖³ ,

with g, H the gradient and Hessian of the retain loss and L > 0 the cubic constant. A vector Δ is a
**global** minimiser iff (Nesterov & Polyak 2006, Thm. 10)

    (H + (L/2)·α·I) Δ = −g,      H + (L/2)·α·I ⪰ 0,      α = ‖Δ‖.

With H = U Λ Uᵀ, b = Uᵀg and the shift γ = L·α/2 this is the secular equation

    ψ(γ) = ‖Δ(γ)‖ − 2γ/L = 0,    ‖Δ(γ)‖² = Σ_i b_i² / (λ_i + γ)²,    γ ≥ γ_low = max(0, −λ_min),

ψ strictly decreasing on (γ_low, ∞) and → −∞. It is solved with :func:`scipy.optimize.brentq` on a
bracket [γ_low + δ, γ_hi] (γ_hi found by doubling; δ = tol·scale, shrunk towards the pole while
ψ(γ_low + δ) ≤ 0 and g has weight near E). The unknown is s = γ + λ_min, so that λ_i + γ = (λ_i − λ_min)
+ s is evaluated without cancellation and a root next to the pole is found to full relative precision.
The shift γ is the damping of the step Δ = −(H + γI)⁻¹g that "comes out of the solve".

Hard case (λ_min < 0, E its eigenspace, of any multiplicity): ψ(γ_low⁺) ≤ 0, i.e. g has (numerically)
no component on E and ‖(H + γ_low I)⁺g‖ ≤ 2γ_low/L. The root sits at γ = γ_low = −λ_min, where
H + γI is singular, and Δ = −(H + γ_low I)⁺g + τ·u with u a unit vector of E and τ ≥ 0 such that
‖Δ‖ = 2γ_low/L. ``hard_case`` is reported when ψ(γ_low + tol·scale) ≤ 0 (the root is within the
tolerance of the pole); the step is then computed from the secular root when g has any weight on E
(u ∝ −P_E g, the direction that also decreases gᵀΔ) and from the closed form above when it has none.
With g = 0: Δ = 0 if H ⪰ 0, otherwise the hard-case step of length 2(−λ_min)/L along E.

Everything is computed in float64 in the eigenbasis; steps are returned in g's dtype and device.
:func:`newton_pinv_step` (Δ = −H⁺g) and :func:`damped_newton_step` (Δ = −(H + γI)⁻¹g, no safeguard)
are the naive baselines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor

__all__ = [
    "CubicStep",
    "cubic_model",
    "damped_newton_step",
    "newton_pinv_step",
    "solve_cubic",
    "solve_cubic_eig",
]

_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class CubicStep:
    """The global minimiser of the cubic model and what the solve found out."""

    step: Tensor  # Δ, in g's dtype and device
    alpha: float  # ‖Δ‖
    shift: float  # γ = L·α/2, the damping of Δ = −(H + γI)⁻¹g
    hard_case: bool  # γ = −λ_min and Δ has a component τ·u_min added
    model_decrease: float  # m(0) − m(Δ) = −(gᵀΔ + ½ΔᵀHΔ + L/6‖Δ‖³) ≥ 0


def _check_L(L: float) -> float:
    L = float(L)
    if not (L > 0 and math.isfinite(L)):
        raise ValueError(f"the cubic constant L must be positive and finite, got {L}")
    return L


def _eig64(eigvals: Tensor, eigvecs: Tensor, g: Tensor) -> tuple[np.ndarray, Tensor, np.ndarray]:
    lam = eigvals.detach().to(torch.float64).reshape(-1)
    U = eigvecs.detach().to(torch.float64)
    g64 = g.detach().to(torch.float64).reshape(-1)
    d = lam.numel()
    if U.shape != (d, d) or g64.numel() != d:
        raise ValueError(
            f"shapes do not match: eigvals {tuple(eigvals.shape)}, eigvecs "
            f"{tuple(eigvecs.shape)}, g {tuple(g.shape)}"
        )
    U = U.to(g64.device)
    b = (U.T @ g64).cpu().numpy()
    return lam.cpu().numpy(), U, b


def _to_step(U: Tensor, coeffs: np.ndarray, g: Tensor) -> Tensor:
    c = torch.from_numpy(np.ascontiguousarray(coeffs)).to(U.device)
    return (U @ c).to(dtype=g.dtype, device=g.device).reshape(g.shape)


def solve_cubic_eig(eigvals: Tensor, eigvecs: Tensor, g: Tensor, L: float, tol: float = 1e-10) -> CubicStep:
    """Global minimiser of gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³ given H = U diag(λ) Uᵀ (``eigvals``, ``eigvecs``).

    ``tol`` is the relative tolerance (w.r.t. max(|λ|_max, √(L‖g‖/2))) below which eigenvalues count
    as equal to λ_min (its eigenspace E) and within which a root of the secular equation next to
    γ_low = −λ_min is resolved as the hard case. The secular root itself is found to machine precision.
    """
    L = _check_L(L)
    lam, U, b = _eig64(eigvals, eigvecs, g)
    d = lam.size
    if d == 0:
        return CubicStep(g.detach().clone(), 0.0, 0.0, False, 0.0)
    if not (np.all(np.isfinite(lam)) and np.all(np.isfinite(b))):
        raise ValueError("non-finite eigenvalues or gradient")

    lam_min = float(lam.min())
    gnorm = float(np.linalg.norm(b))
    scale = max(float(np.abs(lam).max()), math.sqrt(L * gnorm / 2.0))
    if scale == 0.0:  # H = 0 and g = 0
        return CubicStep(torch.zeros_like(g), 0.0, 0.0, False, 0.0)
    eig_tol = tol * scale
    gamma_low = max(0.0, -lam_min)
    # Parametrise by s = γ + λ_min (so λ_i + γ = μ_i + s with μ_i = λ_i − λ_min ≥ 0, computed exactly
    # for clustered eigenvalues): the pole γ = −λ_min is s = 0 and is resolved to full relative precision.
    mu = lam - lam_min
    in_E = mu <= eig_tol  # the (numerical) eigenspace E of λ_min
    nz = b != 0.0

    def coeffs_at(s: float) -> np.ndarray:
        c = np.zeros(d)
        c[nz] = -b[nz] / (mu[nz] + s)
        return c

    def psi(s: float) -> float:  # ‖Δ‖ − 2γ/L, strictly decreasing in s
        return float(np.linalg.norm(coeffs_at(s))) - 2.0 * (s - lam_min) / L

    def hard_case_coeffs() -> np.ndarray:
        # γ = −λ_min: Δ = −(H + γI)⁺g off E, plus τ·u (u ∈ E) to reach ‖Δ‖ = 2γ/L
        c = np.zeros(d)
        rest = ~in_E
        c[rest] = -b[rest] / mu[rest]
        tau = math.sqrt(max(0.0, (2.0 * gamma_low / L) ** 2 - float(c @ c)))
        bE = b[in_E]
        nE = float(np.linalg.norm(bE))
        if nE > 0.0:
            uE = -bE / nE  # the unit vector of E that also decreases gᵀΔ
        else:
            uE = np.zeros(bE.size)
            uE[0] = 1.0
        c[in_E] = tau * uE
        return c

    if gnorm == 0.0:
        if lam_min >= 0.0:
            return CubicStep(torch.zeros_like(g), 0.0, 0.0, False, 0.0)
        coeffs, hard = hard_case_coeffs(), True
    else:
        hard = False
        root_bracketed = True
        if lam_min > 0.0:
            lo = lam_min  # γ = 0: ψ = ‖H⁻¹g‖ > 0
        else:
            # ψ(γ_low⁺) ≤ 0 (to the relative tolerance): the root is at the pole, the hard case
            hard = lam_min < 0.0 and psi(eig_tol) <= 0.0
            lo = eig_tol
            if psi(lo) <= 0.0:  # the root is in (0, eig_tol]: bracket it if g has any weight near E
                while lo > 1e-290 and psi(lo) <= 0.0:
                    lo *= 1e-4
                root_bracketed = psi(lo) > 0.0
        if root_bracketed:
            hi = lo + scale
            while psi(hi) > 0.0:
                hi = lo + 2.0 * (hi - lo)
            s_root = brentq(psi, lo, hi, xtol=1e-300, rtol=4 * _EPS, maxiter=500)
            coeffs = coeffs_at(s_root)
        else:
            coeffs = hard_case_coeffs()

    alpha = float(np.linalg.norm(coeffs))
    model = float(b @ coeffs + 0.5 * np.sum(lam * coeffs**2) + L / 6.0 * alpha**3)
    return CubicStep(
        step=_to_step(U, coeffs, g),
        alpha=alpha,
        shift=L * alpha / 2.0,
        hard_case=hard,
        model_decrease=max(0.0, -model),
    )


def solve_cubic(H: Tensor, g: Tensor, L: float) -> CubicStep:
    """Global minimiser of the cubic model for an explicit symmetric H (``eigh`` in float64)."""
    H64 = H.detach().to(torch.float64)
    H64 = 0.5 * (H64 + H64.T)
    eigvals, eigvecs = torch.linalg.eigh(H64)
    return solve_cubic_eig(eigvals, eigvecs, g, L)


def cubic_model(g: Tensor, H_or_hvp: Tensor | Callable[[Tensor], Tensor], step: Tensor, L: float) -> float:
    """m(Δ) = gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³ in float64; ``H_or_hvp`` is a matrix or a function v ↦ Hv."""
    s = step.detach().to(torch.float64).reshape(-1)
    g64 = g.detach().to(torch.float64).reshape(-1)
    if callable(H_or_hvp) and not isinstance(H_or_hvp, Tensor):
        Hs = H_or_hvp(step.detach()).detach().to(torch.float64).reshape(-1)
    else:
        Hs = H_or_hvp.detach().to(torch.float64) @ s
    alpha = float(torch.linalg.vector_norm(s))
    return float(g64 @ s) + 0.5 * float(s @ Hs) + float(L) / 6.0 * alpha**3


def newton_pinv_step(eigvals: Tensor, eigvecs: Tensor, g: Tensor, rcond: float = 1e-10) -> Tensor:
    """Δ = −H⁺g; eigenvalues with |λ| ≤ rcond·max|λ| are treated as 0 (undamped Newton baseline)."""
    lam, U, b = _eig64(eigvals, eigvecs, g)
    if lam.size == 0:
        return g.detach().clone()
    cutoff = rcond * float(np.abs(lam).max())
    keep = np.abs(lam) > cutoff
    coeffs = np.zeros_like(b)
    coeffs[keep] = -b[keep] / lam[keep]
    return _to_step(U, coeffs, g)


def damped_newton_step(eigvals: Tensor, eigvecs: Tensor, g: Tensor, gamma: float) -> Tensor:
    """Δ = −(H + γI)⁻¹g with a fixed damping γ and no safeguard (the naive damped-Newton baseline)."""
    lam, U, b = _eig64(eigvals, eigvecs, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        coeffs = -b / (lam + float(gamma))
    return _to_step(U, coeffs, g)
