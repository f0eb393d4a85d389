"""Divergences between predictive distributions (rows of class probabilities), in nats."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LN2", "js_divergence", "kl_divergence", "mean_js", "mean_kl"]

LN2 = math.log(2.0)


def _as_pair(p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    p = torch.as_tensor(p, dtype=torch.float64)
    q = torch.as_tensor(q, dtype=torch.float64, device=p.device)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    if p.ndim not in (1, 2):
        raise ValueError(f"expected a distribution (C,) or rows of distributions (N, C), got {p.ndim} dims")
    return p, q


def kl_divergence(p: Tensor, q: Tensor, eps: float = 1e-12) -> Tensor:
    """Per-row Kullback–Leibler divergence ``KL(p‖q) = Σ_c p_c (ln p_c − ln q_c)`` in nats.

    ``p`` and ``q`` are ``(N, C)`` (one distribution per row; returns ``(N,)``) or ``(C,)`` (returns
    a 0-dim tensor). Computed in float64. Terms with ``p_c = 0`` contribute 0 (``0 ln 0 = 0``);
    ``q`` is clamped below at ``eps`` so ``q_c = 0 < p_c`` gives a large finite value
    (about ``p_c ln(p_c / eps)``) instead of ``inf``.

    Reference: S. Kullback, R. A. Leibler, "On information and sufficiency", Ann. Math. Stat. 1951.
    """
    p, q = _as_pair(p, q)
    terms = p * (torch.log(p.clamp_min(eps)) - torch.log(q.clamp_min(eps)))
    terms = torch.where(p > 0, terms, torch.zeros_like(terms))
    return terms.sum(dim=-1).clamp_min(0.0)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Per-row Jensen–Shannon divergence in nats.

    .. math:: \\mathrm{JS}(p, q) = \\tfrac12 \\mathrm{KL}(p \\| m) + \\tfrac12 \\mathrm{KL}(q \\| m),
              \\quad m = (p + q) / 2

    Symmetric, finite and bounded: ``0 ≤ JS ≤ ln 2`` (0 iff ``p = q``; ``ln 2`` for disjoint
    supports). Shapes as in :func:`kl_divergence`.

    Reference: J. Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 1991.
    """
    p, q = _as_pair(p, q)
    m = 0.5 * (p + q)  # m_c > 0 wherever p_c > 0 or q_c > 0, so no clamping is needed
    js = 0.5 * kl_divergence(p, m, eps=0.0) + 0.5 * kl_divergence(q, m, eps=0.0)
    return js.clamp(0.0, LN2)


def mean_kl(p: Tensor, q: Tensor, eps: float = 1e-12) -> float:
    """Mean over rows of :func:`kl_divergence`; ``nan`` for zero rows."""
    d = kl_divergence(p, q, eps=eps)
    return float(d.mean()) if d.numel() else math.nan


def mean_js(p: Tensor, q: Tensor) -> float:
    """Mean over rows of :func:`js_divergence`; ``nan`` for zero rows."""
    d = js_divergence(p, q)
    return float(d.mean()) if d.numel() else math.nan
