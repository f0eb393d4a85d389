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
* :func:`mean_pairwise_distance` — the mean L2 distance between the weights of several models;
* :func:`example_epsilon`, :func:`forgetting_quality`, :func:`neurips_score` — the NeurIPS 2023
  unlearning-competition score (Triantafillou et al. 2024).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmark.metrics.distances import js_divergence, kl_divergence

__all__ = [
    "NEURIPS_DELTA",
    "example_epsilon",
    "forgetting_quality",
    "mean_pairwise_distance",
    "neurips_score",
    "pairwise_divergence",
    "population_divergence",
    "reference_ratio",
    "utility_factor",
]

NEURIPS_DELTA = 0.01  # the competition's δ


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


# ------------------------------------------------------------------------------- NeurIPS 2023 score
def example_epsilon(out_unlearned, out_retrained, delta: float = NEURIPS_DELTA) -> np.ndarray:
    """Per-example ε of the NeurIPS 2023 unlearning competition, from a population of models.

    ``out_unlearned`` (A, N) and ``out_retrained`` (B, N) hold a scalar output (the benchmark uses
    the loss ``−ln p_y``) of A unlearned and B retrained models on N forget examples. For each
    example, every threshold attack "unlearned iff output > t" (t over the pooled outputs) gives a
    false-positive rate (retrained called unlearned) and a false-negative rate; by the hypothesis-
    testing view of (ε, δ)-DP (Kairouz et al. 2015):

    .. math:: \\varepsilon = \\max\\Big(0, \\max_t \\max\\big\\{
              \\ln(1-\\delta-\\mathrm{FPR}_t) - \\ln \\mathrm{FNR}_t,\\;
              \\ln(1-\\delta-\\mathrm{FNR}_t) - \\ln \\mathrm{FPR}_t\\big\\}\\Big)

    As in the competition code, an attack with FPR = FNR = 0 (perfect separation) gives ε = ∞,
    one with exactly one of them 0 is discarded, and one whose both logs are undefined gives ∞.
    A threshold attack only depends on the order of the outputs, so loss, confidence and
    logit-scaled confidence give the same ε. Returns float64 (N,).
    """
    u = np.asarray(out_unlearned, dtype=float)
    r = np.asarray(out_retrained, dtype=float)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"expected (A, N) and (B, N) outputs, got {u.shape} and {r.shape}")
    pooled = np.concatenate([r, u], axis=0)  # (T, N) thresholds
    fpr = (r[None, :, :] > pooled[:, None, :]).mean(axis=1)  # (T, N)
    fnr = (u[None, :, :] <= pooled[:, None, :]).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        e1 = np.log(1.0 - delta - fpr) - np.log(fnr)
        e2 = np.log(1.0 - delta - fnr) - np.log(fpr)
    both_nan = np.isnan(e1) & np.isnan(e2)
    eps = np.where(both_nan, np.inf, np.fmax(e1, e2))
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, eps)
    eps = np.where((fpr == 0) ^ (fnr == 0), -np.inf, eps)  # discarded
    return np.maximum(0.0, eps.max(axis=0))


def forgetting_quality(epsilons, bin_width: float = 0.5, n_bins: int = 13) -> float:
    """Forgetting quality ``F = mean_x h(ε_x)`` with ``h(ε) = 2 / 2^{n(ε)}``, ``n(ε)`` the ε bin index.

    Bins are ``[0, 0.5), [0.5, 1), …, [6, ∞)`` (``n = 1 … 13``), so ``h(ε) ≈ 2^{-2ε}`` rounded
    to the bin: 1 for ε < 0.5, ½ for ε ∈ [0.5, 1), …, 2⁻¹² for ε ≥ 6 (and ε = ∞). F = 1 is perfect
    forgetting. NaN for no examples.
    """
    eps = np.asarray(epsilons, dtype=float).ravel()
    if eps.size == 0:
        return math.nan
    n = np.digitize(eps, np.arange(n_bins) * bin_width)
    return float(np.mean(2.0 / 2.0**n))


def neurips_score(
    out_unlearned,
    out_retrained,
    acc_retain_u: float,
    acc_retain_r: float,
    acc_test_u: float,
    acc_test_r: float,
    delta: float = NEURIPS_DELTA,
    cap_utility: bool = True,
) -> tuple[float, float]:
    """``(score, F)``: the NeurIPS 2023 unlearning-competition score and its forgetting quality F.

    .. math:: \\text{score} = F \\cdot \\min\\Big(1, \\frac{RA^U}{RA^R}\\Big)
              \\cdot \\min\\Big(1, \\frac{TA^U}{TA^R}\\Big)

    with F = :func:`forgetting_quality` of :func:`example_epsilon`, and RA/TA the mean retain/test
    accuracies of the unlearned (U) and retrained (R) models. The competition multiplied the plain
    ratios; ``cap_utility`` (default) caps them at 1 so that a model that still classifies deleted
    classes is not rewarded for its extra test accuracy (the competition deleted random examples,
    where this cannot happen).

    **How many models.** ε is estimated from the outputs of many unlearned and retrained models *of
    the same forget example*: the competition used 512 of each. With a handful the FPR/FNR grid is
    coarse (3 + 3 models: ε ∈ {0, 0.68, ∞, …}, so h ∈ {1, ½, 2⁻¹²}) and F is a low-precision
    estimate; the benchmark computes it from ``min_models`` = 3 models per example (see the evaluate
    stage) and marks it as such.

    Reference: E. Triantafillou, P. Kairouz, F. Pedregosa, J. Hayes, M. Kurmanji, K. Zhao et al.,
    "Are we making progress in unlearning? Findings from the first NeurIPS unlearning competition",
    arXiv:2406.09073 (2024).
    """
    f = forgetting_quality(example_epsilon(out_unlearned, out_retrained, delta))
    return f * utility_factor(acc_retain_u, acc_retain_r, acc_test_u, acc_test_r, cap_utility), f


def utility_factor(
    acc_retain_u: float, acc_retain_r: float, acc_test_u: float, acc_test_r: float, cap: bool = True
) -> float:
    """``min(1, RA^U/RA^R) · min(1, TA^U/TA^R)`` (plain ratios if not ``cap``); NaN if RA^R or TA^R ≤ 0."""
    out = 1.0
    for u, r in ((acc_retain_u, acc_retain_r), (acc_test_u, acc_test_r)):
        if not r > 0:
            return math.nan
        out *= min(1.0, u / r) if cap else u / r
    return out
