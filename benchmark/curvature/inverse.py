"""Inverse curvature-vector products in O(d) memory: conjugate gradients with HVPs, and Woodbury on an
empirical Fisher of a sample of per-sample gradients (WoodFisher).

* :func:`conjugate_gradient` solves ``(A + λI) x = b`` for a symmetric ``A`` given as ``v ↦ Av``
  (Hestenes & Stiefel 1952; Nocedal & Wright, *Numerical Optimization*, Alg. 5.2), from ``x₀ = 0``:
  ``r₀ = p₀ = b``; ``α = rᵀr / pᵀ(A+λI)p``; ``x += αp``; ``r −= α(A+λI)p``; ``β = r₊ᵀr₊ / rᵀr``;
  ``p = r₊ + βp``. It stops when ``‖r‖ ≤ rtol·‖b‖``, after ``max_iters`` products, or when a search
  direction has non-positive curvature ``pᵀ(A+λI)p ≤ 0`` (``A + λI`` not positive definite, e.g. the
  Hessian of a network away from a minimum with too little damping): the iterate reached so far is
  returned (truncated CG, as in Steihaug's method) and ``negative_curvature`` is set.
* :func:`inverse_hvp` is CG with the exact HVPs of :func:`benchmark.curvature.make_hvp` (the curvature
  of a :func:`~benchmark.curvature.make_loss_fn` loss; counted in ``counter.hvps``/``hvp_samples``).
* :func:`woodbury_solve` computes ``(λI + (1/m) GᵀG)⁻¹ v`` for ``m`` gradients ``G`` (m × d) by the
  Woodbury identity ``(1/λ)[v − Gᵀ(mλ I_m + GGᵀ)⁻¹ G v]``: an m × m solve, memory O(m·d) — the
  WoodFisher inverse (Singh & Alistarh 2020, "WoodFisher: Efficient Second-Order Approximation for
  Neural Network Compression", NeurIPS), here in closed form rather than by their rank-one recursion
  (same result in exact arithmetic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark.core.types import WorkCounter
from benchmark.curvature.functional import make_hvp

__all__ = ["CGResult", "conjugate_gradient", "inverse_hvp", "woodbury_solve"]


@dataclass(frozen=True)
class CGResult:
    """Solution ``x`` of ``(A + λI)x = b``, with the products used and the final relative residual."""

    x: Tensor
    iters: int  # products with A
    rel_residual: float  # ‖b − (A + λI)x‖ / ‖b‖ (the recursive residual)
    converged: bool
    negative_curvature: bool


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    damping: float = 0.0,
    max_iters: int = 100,
    rtol: float = 1e-10,
) -> CGResult:
    """Solve ``(A + damping·I) x = b`` by conjugate gradients from ``x = 0`` (``A v = matvec(v)``)."""
    if max_iters < 0:
        raise ValueError("max_iters must be non-negative")
    b = b.detach()
    x = torch.zeros_like(b)
    b_norm = float(torch.linalg.vector_norm(b))
    if b_norm == 0.0:
        return CGResult(x, 0, 0.0, True, False)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    iters = 0
    negative = False
    while iters < max_iters and rr**0.5 > rtol * b_norm:
        Ap = matvec(p).to(b.dtype) + damping * p
        iters += 1
        pAp = float(p @ Ap)
        if not pAp > 0.0:  # also catches NaN
            negative = True
            break
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    rel = rr**0.5 / b_norm
    return CGResult(x, iters, rel, rel <= rtol, negative)


def inverse_hvp(
    loss_fn: Any,
    w: Tensor,
    v: Tensor,
    damping: float = 0.0,
    max_iters: int = 100,
    rtol: float = 1e-10,
    counter: WorkCounter | None = None,
    mode: str = "rev_rev",
) -> CGResult:
    """``(∇²f(w) + damping·I)⁻¹ v`` by :func:`conjugate_gradient` with exact HVPs of ``loss_fn`` at ``w``.

    ``loss_fn`` is typically :func:`~benchmark.curvature.make_loss_fn`'s loss (mean CE + (wd/2)‖w‖²,
    so the Hessian includes ``wd·I``). Each CG iteration is one HVP, counted in ``counter``.
    """
    hvp_fn = make_hvp(loss_fn, w, mode=mode, counter=counter)
    return conjugate_gradient(hvp_fn, v.to(w.dtype), damping=damping, max_iters=max_iters, rtol=rtol)


def woodbury_solve(G: Tensor, v: Tensor, damping: float) -> Tensor:
    """``(damping·I + (1/m) GᵀG)⁻¹ v`` for the ``m`` rows of ``G`` (m × d), by the Woodbury identity.

    Needs ``damping > 0``. The m × m system ``(m·damping·I + GGᵀ) z = Gv`` is solved by Cholesky in the
    dtype of ``G`` (float64 advisable for tiny damping).
    """
    if damping <= 0:
        raise ValueError("woodbury_solve needs damping > 0")
    v = v.to(G.dtype)
    m = G.shape[0]
    if m == 0:
        return v / damping
    K = G @ G.T
    K.diagonal().add_(m * damping)
    z = torch.cholesky_solve((G @ v).unsqueeze(1), torch.linalg.cholesky(K)).squeeze(1)
    return (v - G.T @ z) / damping
