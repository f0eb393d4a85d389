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

__all__ = [
    "KrylovCubic",
    "LanczosProcess",
    "LanczosResult",
    "krylov_cubic_step",
    "krylov_subproblem",
    "lanczos",
]

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


class LanczosProcess:
    """Symmetric Lanczos on v ↦ Hv from ``v0``, with full re-orthogonalisation, extended one step at a time.

    :meth:`extend` adds basis vectors (one product each) up to ``k_max`` (capped at d) or until breakdown
    (β_j ≤ ``breakdown_tol``·max(|α|, β seen so far): the Krylov space is H-invariant). The basis is kept
    in ``v0``'s dtype; :meth:`result` is the :class:`LanczosResult` of the steps done so far, and
    ``next_q``/``residual`` give q_{k'+1} and β_{k'} of the relation H Q = Q T + β_{k'} q_{k'+1} e_{k'}ᵀ.
    """

    def __init__(
        self,
        hvp: Callable[[Tensor], Tensor],
        v0: Tensor,
        k_max: int,
        reorthogonalize: bool = True,
        breakdown_tol: float = 1e-12,
    ) -> None:
        v = v0.detach().reshape(-1)
        d = v.numel()
        if int(k_max) < 1:
            raise ValueError(f"lanczos: k must be ≥ 1, got {k_max}")
        if d == 0:
            raise ValueError("lanczos: empty starting vector")
        nrm = float(torch.linalg.vector_norm(v))
        if not (nrm > 0 and math.isfinite(nrm)):
            raise ValueError(f"lanczos: the starting vector must be non-zero and finite (norm {nrm})")
        self.hvp, self.reorth, self.tol = hvp, reorthogonalize, breakdown_tol
        self.k_max = min(int(k_max), d)
        self.V = torch.empty(self.k_max + 1, d, dtype=v.dtype, device=v.device)  # rows q_1..q_{k+1}
        self.V[0] = v / nrm
        self.alphas: list[float] = []
        self.betas: list[float] = []  # β_1..β_{k'}: the last one is the residual
        self.scale = 0.0
        self.breakdown = False

    @property
    def k(self) -> int:
        return len(self.alphas)

    @property
    def exhausted(self) -> bool:
        """No further step is possible: breakdown or k_max reached."""
        return self.breakdown or self.k >= self.k_max

    @property
    def residual(self) -> float:
        return self.betas[-1] if self.betas else 0.0

    @property
    def next_q(self) -> Tensor:
        """q_{k'+1} (meaningful when ``residual`` > 0)."""
        return self.V[self.k]

    def extend(self, steps: int = 1) -> int:
        """Up to ``steps`` more Lanczos steps; returns how many products were made."""
        done = 0
        while done < steps and not self.exhausted:
            j = self.k
            q = self.V[j]
            r = self.hvp(q.clone()).detach().reshape(-1).to(dtype=q.dtype, device=q.device)
            done += 1
            a = float(q @ r)
            r = r - a * q
            if j > 0:
                r = r - self.betas[-1] * self.V[j - 1]
            if self.reorth:
                basis = self.V[: j + 1]
                for _ in range(2):  # CGS2: twice is enough (Giraud et al. 2005)
                    r = r - basis.T @ (basis @ r)
            b = float(torch.linalg.vector_norm(r))
            if not (math.isfinite(a) and math.isfinite(b)):
                raise FloatingPointError(f"lanczos: non-finite Hessian-vector product at step {j + 1}")
            self.alphas.append(a)
            self.scale = max(self.scale, abs(a), b)
            self.betas.append(b)
            if b <= self.tol * self.scale:
                self.breakdown = j + 1 < self.k_max
                self.betas[-1] = b
                self.V[j + 1] = 0.0
                break
            self.V[j + 1] = r / b
        return done

    def result(self) -> LanczosResult:
        kk = self.k
        return LanczosResult(
            alpha=torch.tensor(self.alphas, dtype=F64),
            beta=torch.tensor(self.betas[: kk - 1], dtype=F64),
            Q=self.V[:kk].T,
            residual=self.residual,
            breakdown=self.breakdown,
        )


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
    proc = LanczosProcess(hvp, v0, k, reorthogonalize, breakdown_tol)
    proc.extend(proc.k_max)
    return proc.result()


class KrylovCubic:
    """The cubic model restricted to a Krylov space, solvable for any L, grown on demand.

    ``solve(L)`` minimises m(Q y) = bᵀy + ½yᵀTy + (L/6)‖y‖³ exactly over the current space (O(k'³ + d·k'),
    no product). With ``tol`` = θ > 0 it then checks the subproblem residual — the gradient of the
    full model at Δ = Q y,

        ∇m(Δ) = (I − QQᵀ)g + β_{k'} y_{k'} q_{k'+1}          (the reduced model is stationary at y),

    i.e. β_{k'}|y_{k'}| when the space starts from g — against the ARC termination test TC.s (Cartis,
    Gould & Toint 2011, Part I, (3.28)): ‖∇m(Δ)‖ ≤ θ·min(1, ‖Δ‖)·‖g‖, and adds Lanczos vectors (one
    product each) until it holds, the space is invariant, or the cap k is reached. TC.s keeps ARC's
    local quadratic convergence, so the Krylov step tracks the exact one at whatever L ARC reaches.
    With ``tol`` = 0 the space is built to k at once (fixed dimension). An ARC rejection re-solves with a
    larger L from the same basis (larger L is better conditioned: usually no new product).
    Attributes: ``lanczos`` (:class:`LanczosResult` of the current space), ``ritz_values`` (ascending,
    float64), ``b`` (Qᵀg, float64), ``dim`` (k').
    """

    def __init__(
        self, g: Tensor, process: LanczosProcess | None, perturbed: bool = False, tol: float = 0.0
    ) -> None:
        self.g = g
        self.g64 = g.detach().reshape(-1).to(F64)
        self.gnorm = float(torch.linalg.vector_norm(self.g64))
        self.process, self.perturbed, self.tol = process, perturbed, float(tol)
        self.residual_norm = 0.0  # ‖∇m(Δ)‖ of the last solve
        self._k = -1
        self._refresh()

    def _refresh(self) -> None:
        proc = self.process
        k = 0 if proc is None else proc.k
        if k == self._k:
            return
        self._k = k
        if proc is None or k == 0:  # g = 0 and no perturbation: the Krylov space is {0}
            self.lanczos = None
            self.ritz_values = torch.zeros(0, dtype=F64)
            self._S = torch.zeros(0, 0, dtype=F64)
            self.b = torch.zeros(0, dtype=F64)
            return
        self.lanczos = basis = proc.result()
        self.ritz_values, self._S = basis.ritz()
        if self.perturbed:
            self.b = (basis.Q.T.to(F64) @ self.g64.to(basis.Q.device)).cpu()
        else:
            self.b = torch.zeros(k, dtype=F64)
            self.b[0] = self.gnorm

    @property
    def dim(self) -> int:
        return int(self.ritz_values.numel())

    def _space(self) -> tuple[LanczosProcess, LanczosResult]:
        """The Lanczos process and its current basis (only once the space is not {0}, ``dim`` > 0)."""
        if self.process is None or self.lanczos is None:
            raise RuntimeError("the Krylov space is {0}: no Lanczos basis")
        return self.process, self.lanczos

    def _residual(self, y: Tensor) -> float:
        proc, basis = self._space()
        beta_y = proc.residual * float(y[-1])
        if not self.perturbed:
            return abs(beta_y)
        Q = basis.Q.to(F64)
        r = self.g64 - Q @ self.b.to(Q.device) + beta_y * proc.next_q.to(F64)
        return float(torch.linalg.vector_norm(r))

    def solve(self, L: float) -> CubicStep:
        """Global minimiser of the model over the Krylov space (grown to the TC.s test when ``tol`` > 0),
        returned as Δ = Q y in g's dtype."""
        if not (float(L) > 0 and math.isfinite(float(L))):
            raise ValueError(f"the cubic constant L must be positive and finite, got {L}")
        while True:
            self._refresh()
            if self.dim == 0:
                return CubicStep(torch.zeros_like(self.g), 0.0, 0.0, False, 0.0)
            small = solve_cubic_eig(self.ritz_values, self._S, self.b, L)
            self.residual_norm = self._residual(small.step)
            proc, basis = self._space()
            if self.tol <= 0 or proc.exhausted:
                break
            if self.residual_norm <= self.tol * min(1.0, small.alpha) * self.gnorm:
                break
            proc.extend(1)
        Q = basis.Q
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
    tol: float = 0.0,
) -> KrylovCubic:
    """Lanczos from v₀ = g/‖g‖ (plus ``perturb``·ζ/‖ζ‖ if ``perturb`` > 0) and the reduced model.

    ``tol`` = 0: k Lanczos steps now (fixed dimension). ``tol`` = θ > 0: one step now, more inside
    ``solve(L)`` until ‖∇m(Δ)‖ ≤ θ·min(1, ‖Δ‖)·‖g‖, with k the cap (:class:`KrylovCubic`).
    The basis and the reduced problem are in float64 whatever the dtype of g or of the products.
    With ``perturb`` = 0, Qᵀg = ‖g‖e₁ exactly; otherwise b = Qᵀg.
    """
    if tol < 0:
        raise ValueError(f"krylov_subproblem: tol must be ≥ 0, got {tol}")
    g64 = g.detach().reshape(-1).to(F64)
    gnorm = float(torch.linalg.vector_norm(g64))
    if not math.isfinite(gnorm):
        raise ValueError("krylov_subproblem: non-finite gradient")
    v0 = g64 / gnorm if gnorm > 0 else torch.zeros_like(g64)
    if perturb > 0:
        zeta = torch.randn(g64.shape, generator=generator, dtype=F64).to(g64.device)
        v0 = v0 + float(perturb) * zeta / torch.linalg.vector_norm(zeta)
    elif gnorm == 0.0:
        return KrylovCubic(g, None)
    proc = LanczosProcess(hvp, v0, k, reorthogonalize)
    proc.extend(1 if tol > 0 else proc.k_max)
    return KrylovCubic(g, proc, perturbed=perturb > 0, tol=tol)


def krylov_cubic_step(
    hvp: Callable[[Tensor], Tensor],
    g: Tensor,
    L: float,
    k: int,
    reorthogonalize: bool = True,
    perturb: float = 0.0,
    generator: torch.Generator | None = None,
    tol: float = 0.0,
) -> CubicStep:
    """Minimiser of gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³ over the k-dimensional Krylov space K_k(H, g) (module doc).

    ``hvp`` is v ↦ Hv and is called k' ≤ k times; memory O(d·k). The step has g's dtype and shape;
    ``alpha`` = ‖Δ‖, ``shift`` = L‖Δ‖/2, ``model_decrease`` = m(0) − m(Δ) ≥ 0.
    """
    return krylov_subproblem(hvp, g, k, reorthogonalize, perturb, generator, tol).solve(L)
