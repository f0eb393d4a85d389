r"""Lanczos tridiagonalisation and the Krylov (Lanczos) solver of the cubic-regularised Newton subproblem.

**Lanczos** (:func:`lanczos`). From a unit vector q₁ ∝ v₀ and a symmetric operator H given only through
products v ↦ Hv, k steps build an orthonormal basis Q = [q₁ … q_k] of the Krylov space
K_k(H, v₀) = span{v₀, Hv₀, …, H^{k−1}v₀} and the tridiagonal T = QᵀHQ (diagonal α, off-diagonal β)::

    H Q = Q T + β_k q_{k+1} e_kᵀ .

Every new vector is re-orthogonalised against all previous ones (classical Gram–Schmidt, twice), so Q stays
orthonormal to working precision and no spurious copies of converged Ritz values appear. Memory is O(d·k)
(the basis; H is never formed) and the work is k products plus O(d·k²) flops. The eigenvalues of T
(Ritz values) interlace those of H, and the extreme ones converge first (Kaniel–Paige). When β_j ≈ 0 the
Krylov space is H-invariant ("lucky breakdown") and the iteration stops with k' < k vectors.

**Krylov cubic step** (:func:`krylov_cubic_step`, :func:`krylov_subproblem`). The cubic model of
cubic-regularised Newton (Nesterov & Polyak 2006; CuReNU, Bui et al. 2024, arXiv 2406.14507)

    m(Δ) = gᵀΔ + ½ ΔᵀHΔ + (L/6)‖Δ‖³

is minimised over the Krylov space from v₀ = g/‖g‖ (Cartis, Gould & Toint 2011, "Adaptive cubic
regularisation methods for unconstrained optimization", Part I, Math. Program. 127, §3 — the "GLRT"-like
Lanczos subproblem solver; also Manopt's ``arc_lanczos``). With Δ = Q y, Qᵀg = ‖g‖e₁ and ‖Q y‖ = ‖y‖, so

    m(Q y) = ‖g‖ e₁ᵀy + ½ yᵀ T y + (L/6)‖y‖³ ,

a k'-dimensional cubic problem, solved **exactly and globally** from eigh(T) with the secular-equation
solver :func:`benchmark.curvature.cubic.solve_cubic_eig` (float64). The Krylov spaces are nested, so the
model value of the Krylov step is non-increasing in k, and for k' = d (or an invariant space containing g)
it is the exact global minimiser of :func:`benchmark.curvature.cubic.solve_cubic` in the easy case.
Carmon & Duchi 2018 ("Analysis of Krylov subspace solutions of regularized nonconvex quadratic problems",
NeurIPS) show the excess model value decays like exp(−k/√κ) (easy case) and O(1/k²) in general.

**Hard case.** If g has no component on the eigenspace E of λ_min(H) < 0, neither has any Krylov vector
from g: the Krylov space lies in E^⊥, so the τ·u_min component of the exact hard-case step cannot be
represented, and the Krylov step is the minimiser of the model restricted to E^⊥ (still a descent step,
but it misses the negative curvature and its shift may be below −λ_min). In floating point, rounding
puts a ~1e-16 component on E that Lanczos amplifies, so for large k (≈ d) the direction may still be found;
this is not to be relied on. ``perturb > 0`` adds a random
component to the starting vector, v₀ ∝ g/‖g‖ + perturb·ζ/‖ζ‖ (ζ Gaussian; Carmon & Duchi's remedy):
the Krylov space then sees every eigendirection with probability 1, and the reduced problem uses
b = Qᵀg (g itself is no longer exactly in the space) instead of ‖g‖e₁.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.curvature.cubic import CubicStep, solve_cubic_eig

__all__ = ["KrylovCubic", "LanczosResult", "krylov_cubic_step", "krylov_subproblem", "lanczos"]

F64 = torch.float64


@dataclass(frozen=True)
class LanczosResult:
    """k' ≤ k Lanczos steps: T = tridiag(beta, alpha, beta) = QᵀHQ, Q (d × k') with orthonormal columns."""

    alpha: Tensor  # (k',) float64: diagonal of T
    beta: Tensor  # (k' − 1,) float64: off-diagonal of T
    Q: Tensor  # (d, k'), dtype of v0 (a transposed view of a contiguous k' × d buffer)
    residual: float  # β_{k'} = ‖H q_{k'} − Q T e_{k'}‖ (≈ 0 on breakdown: the space is invariant)
    breakdown: bool  # stopped before k steps because the Krylov space became invariant

    @property
    def k(self) -> int:
        return int(self.alpha.numel())

    def T(self) -> Tensor:
        """The k' × k' tridiagonal matrix (float64)."""
        T = torch.diag(self.alpha)
        if self.k > 1:
            T = T + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)
        return T

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values (ascending) and the eigenvectors of T (float64)."""
        return torch.linalg.eigh(self.T())


def lanczos(
    hvp: Callable[[Tensor], Tensor],
    v0: Tensor,
    k: int,
    reorthogonalize: bool = True,
    breakdown_tol: float = 1e-12,
) -> LanczosResult:
    """k steps of symmetric Lanczos on v ↦ Hv (``hvp``) from ``v0``, with full re-orthogonalisation.

    The basis is kept in ``v0``'s dtype (pass float64 for float64 algebra; the products may be computed
    in another dtype, their result is cast). ``k`` is capped at d. The iteration stops early (breakdown)
    when β_j ≤ ``breakdown_tol``·max(|α|, β seen so far). ``hvp`` is called exactly k' times.
    Memory O(d·k): H is never formed.
    """
    v = v0.detach().reshape(-1)
    d = v.numel()
    k = int(k)
    if k < 1:
        raise ValueError(f"lanczos: k must be ≥ 1, got {k}")
    if d == 0:
        raise ValueError("lanczos: empty starting vector")
    k = min(k, d)
    nrm = float(torch.linalg.vector_norm(v))
    if not (nrm > 0 and math.isfinite(nrm)):
        raise ValueError(f"lanczos: the starting vector must be non-zero and finite (norm {nrm})")
    V = torch.empty(k, d, dtype=v.dtype, device=v.device)  # rows q_1..q_k
    V[0] = v / nrm
    alphas: list[float] = []
    betas: list[float] = []
    scale = 0.0
    residual, breakdown = 0.0, False
    for j in range(k):
        q = V[j]
        r = hvp(q.clone()).detach().reshape(-1).to(dtype=v.dtype, device=v.device)
        a = float(q @ r)
        r = r - a * q
        if j > 0:
            r = r - betas[-1] * V[j - 1]
        if reorthogonalize:
            basis = V[: j + 1]
            for _ in range(2):  # CGS2: twice is enough (Giraud et al. 2005)
                r = r - basis.T @ (basis @ r)
        alphas.append(a)
        b = float(torch.linalg.vector_norm(r))
        if not (math.isfinite(a) and math.isfinite(b)):
            raise FloatingPointError(f"lanczos: non-finite Hessian-vector product at step {j + 1}")
        scale = max(scale, abs(a), b)
        residual = b
        if b <= breakdown_tol * scale:
            breakdown = j + 1 < k
            break
        if j + 1 == k:
            break
        betas.append(b)
        V[j + 1] = r / b
    kk = len(alphas)
    return LanczosResult(
        alpha=torch.tensor(alphas, dtype=F64),
        beta=torch.tensor(betas[: kk - 1], dtype=F64),
        Q=V[:kk].T,
        residual=residual,
        breakdown=breakdown,
    )


class KrylovCubic:
    """The cubic model restricted to a Krylov space, reduced once and solvable for any L.

    ``solve(L)`` costs O(k'³ + d·k') and no Hessian-vector product, so an ARC loop that rejects a step can
    re-solve with a larger L for free. Attributes: ``lanczos`` (:class:`LanczosResult`), ``ritz_values``
    (ascending, float64), ``b`` (Qᵀg, float64), ``dim`` (k').
    """

    def __init__(self, g: Tensor, result: LanczosResult | None, b: Tensor | None) -> None:
        self.g = g
        self.lanczos = result
        if result is None:  # g = 0 and no perturbation: the Krylov space is {0}
            self.ritz_values = torch.zeros(0, dtype=F64)
            self._S = torch.zeros(0, 0, dtype=F64)
            self.b = torch.zeros(0, dtype=F64)
        else:
            self.ritz_values, self._S = result.ritz()
            self.b = b

    @property
    def dim(self) -> int:
        return int(self.ritz_values.numel())

    def solve(self, L: float) -> CubicStep:
        """Global minimiser of m(Q y) = bᵀy + ½yᵀTy + (L/6)‖y‖³, returned as Δ = Q y (in g's dtype)."""
        if self.dim == 0:
            if not (float(L) > 0 and math.isfinite(float(L))):
                raise ValueError(f"the cubic constant L must be positive and finite, got {L}")
            return CubicStep(torch.zeros_like(self.g), 0.0, 0.0, False, 0.0)
        small = solve_cubic_eig(self.ritz_values, self._S, self.b, L)
        Q = self.lanczos.Q
        step = (Q @ small.step.to(dtype=Q.dtype, device=Q.device)).to(dtype=self.g.dtype)
        return CubicStep(
            step=step.reshape(self.g.shape),
            alpha=small.alpha,  # ‖Q y‖ = ‖y‖
            shift=small.shift,
            hard_case=small.hard_case,
            model_decrease=small.model_decrease,
        )


def krylov_subproblem(
    hvp: Callable[[Tensor], Tensor],
    g: Tensor,
    k: int,
    reorthogonalize: bool = True,
    perturb: float = 0.0,
    generator: torch.Generator | None = None,
) -> KrylovCubic:
    """Run k Lanczos steps from v₀ = g/‖g‖ (plus ``perturb``·ζ/‖ζ‖ if ``perturb`` > 0) and reduce the model.

    The basis and the reduced problem are in float64 whatever the dtype of g or of the products.
    With ``perturb`` = 0, Qᵀg = ‖g‖e₁ exactly; otherwise b = Qᵀg.
    """
    g64 = g.detach().reshape(-1).to(F64)
    gnorm = float(torch.linalg.vector_norm(g64))
    if not math.isfinite(gnorm):
        raise ValueError("krylov_subproblem: non-finite gradient")
    v0 = g64 / gnorm if gnorm > 0 else torch.zeros_like(g64)
    if perturb > 0:
        zeta = torch.randn(g64.shape, generator=generator, dtype=F64).to(g64.device)
        v0 = v0 + float(perturb) * zeta / torch.linalg.vector_norm(zeta)
    elif gnorm == 0.0:
        return KrylovCubic(g, None, None)
    result = lanczos(hvp, v0, k, reorthogonalize=reorthogonalize)
    if perturb > 0:
        b = result.Q.T @ g64
    else:
        b = torch.zeros(result.k, dtype=F64, device=g64.device)
        b[0] = gnorm
    return KrylovCubic(g, result, b.cpu())


def krylov_cubic_step(
    hvp: Callable[[Tensor], Tensor],
    g: Tensor,
    L: float,
    k: int,
    reorthogonalize: bool = True,
    perturb: float = 0.0,
    generator: torch.Generator | None = None,
) -> CubicStep:
    """Minimiser of gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³ over the k-dimensional Krylov space K_k(H, g) (module doc).

    ``hvp`` is v ↦ Hv and is called k' ≤ k times; memory O(d·k). The step has g's dtype and shape;
    ``alpha`` = ‖Δ‖, ``shift`` = L‖Δ‖/2, ``model_decrease`` = m(0) − m(Δ) ≥ 0.
    """
    return krylov_subproblem(hvp, g, k, reorthogonalize, perturb, generator).solve(L)
