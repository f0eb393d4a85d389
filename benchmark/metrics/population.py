"""Metrics over a *population* of models: the gold retrains of every seed, or unlearned models of every seed.

A suite's seeds give several retrained (gold) models per protocol and step. Each forget set is
drawn per seed, so a gold model of another seed may have trained on an example of this cell's forget
set (or kept a class this cell deleted). Every population metric therefore takes a boolean
``mask`` (M models × N examples) of the **admissible** models of each example — those that are a
valid "retrained without it" reference for it; the evaluate stage builds it (see
``benchmark.runner.evaluate``).

* :func:`population_divergence` — per example, the mean JS/KL from one model to the admissible models;
* :func:`pairwise_divergence` — per example, the mean JS/KL between two different admissible models
  (the gold-to-gold reference: how far apart two retrains are);
* :func:`reference_ratio` — method distance / gold-to-gold distance on the same examples
  (≈ 1: "as close as another retrain");
* :func:`mean_pairwise_distance` — the mean L2 distance between the weights of several models.

The NeurIPS 2023 unlearning-competition score over populations of unlearned and retrained models is
in :mod:`benchmark.metrics.neurips`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmark.metrics.distances import js_divergence, kl_divergence

__all__ = [
    "mean_pairwise_distance",
    "pairwise_divergence",
    "population_divergence",
    "reference_ratio",
]


def _divergence(kind: str):
    if kind == "js":
        return js_divergence
    if kind == "kl":
        return kl_divergence
    raise ValueError(f"kind must be 'js' or 'kl', got {kind!r}")


def _as3(p_pop) -> torch.Tensor:
    p = torch.as_tensor(p_pop, dtype=torch.float64)
    if p.ndim != 3:
        raise ValueError(f"population predictions must be (M, N, C), got shape {tuple(p.shape)}")
    return p


def _mask(mask, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask must be (M, N) = {shape}, got {m.shape}")
    return m


def population_divergence(p, p_pop, mask, kind: str = "js") -> np.ndarray:
    """Per-example mean divergence from ``p`` (N, C) to the admissible rows of ``p_pop`` (M, N, C).

    .. math:: D_u(j) = \\frac{1}{|A_j|} \\sum_{m \\in A_j} D\\big(p(j) \\,\\|\\, p_m(j)\\big)

    ``D`` is :func:`~benchmark.metrics.js_divergence` (``kind="js"``) or
    :func:`~benchmark.metrics.kl_divergence` (``"kl"``, direction KL(p‖p_m)); ``A_j`` are the models
    with ``mask[m, j]``. Returns float64 (N,), NaN where ``A_j`` is empty.
    """
    pop = _as3(p_pop)
    p = torch.as_tensor(p, dtype=torch.float64)
    m_, n, c = pop.shape
    if p.shape != (n, c):
        raise ValueError(f"p must be (N, C) = {(n, c)}, got {tuple(p.shape)}")
    mask = _mask(mask, (m_, n))
    d = _divergence(kind)(p.unsqueeze(0).expand(m_, n, c).reshape(-1, c), pop.reshape(-1, c))
    d = d.reshape(m_, n).numpy()
    cnt = mask.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(mask, d, 0.0).sum(axis=0) / cnt
    return np.where(cnt > 0, out, np.nan)


def pairwise_divergence(p_pop, mask, kind: str = "js") -> np.ndarray:
    """Per-example mean divergence between two *different* admissible models (gold-to-gold reference).

    .. math:: D_{gg}(j) = \\frac{1}{|A_j|(|A_j| - 1)}
              \\sum_{a \\ne b \\in A_j} D\\big(p_a(j) \\,\\|\\, p_b(j)\\big)

    over ordered pairs (KL is not symmetric; for JS this equals the mean over unordered pairs).
    Returns float64 (N,), NaN where fewer than two models are admissible.
    """
    pop = _as3(p_pop)
    m_, n, c = pop.shape
    mask = _mask(mask, (m_, n))
    total = np.zeros(n)
    pairs = np.zeros(n)
    div = _divergence(kind)
    for a in range(m_):
        for b in range(m_):
            if a == b:
                continue
            both = mask[a] & mask[b]
            if not both.any():
                continue
            d = div(pop[a], pop[b]).numpy()
            total += np.where(both, d, 0.0)
            pairs += both
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / pairs
    return np.where(pairs > 0, out, np.nan)


def reference_ratio(d_model, d_ref) -> float:
    """``Σ_j D_u(j) / Σ_j D_gg(j)`` over the examples where both are defined (finite).

    ≈ 1: the model is as far from the retrained models as they are from each other, i.e. "as close
    as another retrain"; ≫ 1: further; < 1: closer (e.g. a model sharing the gold model's
    initialisation). NaN if no example has both, or the reference sum is 0.
    """
    d_model, d_ref = np.asarray(d_model, dtype=float), np.asarray(d_ref, dtype=float)
    both = np.isfinite(d_model) & np.isfinite(d_ref)
    den = d_ref[both].sum()
    if not both.any() or den <= 0:
        return math.nan
    return float(d_model[both].sum() / den)


def mean_pairwise_distance(weights) -> float:
    """Mean L2 distance ``‖w_a − w_b‖`` over unordered pairs a < b of the rows of ``weights`` (M, P).

    NaN for fewer than two rows. Used as the gold-to-gold scale of ``‖w − w_gold‖``.
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.ndim != 2 or w.shape[0] < 2:
        return math.nan
    return float(torch.pdist(w).mean())
