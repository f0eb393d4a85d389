"""The NeurIPS 2023 machine-unlearning competition score, ported from the organisers' released code.

Reference: E. Triantafillou, P. Kairouz, F. Pedregosa, J. Hayes, M. Kurmanji, K. Zhao, V. Dumoulin,
J. Jacques Junior, I. Mitliagkas, J. Wan, L. Sun Hosoya, S. Escalera, G. K. Dziugaite, P. Triantafillou,
I. Guyon, "Are we making progress in unlearning? Findings from the first NeurIPS unlearning
competition", arXiv:2406.09073 (2024). Code: github.com/google-deepmind/unlearning_evaluation,
``metric.py`` (``compute_logit_scaled_confidence``, ``_get_single_threshold_rates``,
``_get_double_threshold_rates``, ``_get_epsilons``, ``compute_forget_score_from_confs``) and ``main.py``
(the final score), commit ffae0fff.

**Algorithm.** Inputs are the logit-scaled confidences (:func:`logit_scaled_confidence`,
``φ = ln(p_y + 1e-45) − ln(Σ_{c≠y} p_c + 1e-45)``) of the N forget examples under M unlearned and M
retrained models, two arrays of shape (M, N) (the reference's ``[num models, num examples]``; the
same M on both sides, as the reference's ``np.where`` requires). Per example x:

1. *Orientation.* The "positive" sample is whichever of the two (retrained, unlearned) has the larger
   median (retrained only if strictly larger); the other is "negative".
2. *Peakiness.* With ``d±`` the ranges (max − min) of the two samples, if
   ``min(d±) / max(d±) < 0.01`` (one sample nearly constant, the other not) then ε_x = 50 (the cap).
3. *Attacks.* Each attack labels every model's output "positive" or not, giving per attack
   TPR/FNR/FPR/TNR as fractions of the M models of each sample. Two families:

   * threshold: "positive iff φ ≥ t", t on ``linspace(min, max, ceil(100·(max − min)))`` of the
     pooled 2M outputs;
   * interval: "peakier sample iff l ≤ φ ≤ r", where the peakier sample is the one with the smaller
     range w (the original negative on a tie); r on ``linspace(P_min + w − 2, P_max + 2,
     ceil(100·(P_max + 2 − (P_min + w − 2))))`` (P = the peakier sample) and, for each r, l on
     ``linspace(r − w − 2, r − w + 2, 400)``.
4. *ε of an attack* (δ = 1e-5): ∞ if FPR = FNR = 0; discarded if exactly one of them is 0 ("a sign of
   insufficient samples"); else ``max(0, nanmax{ln(1 − δ − FPR) − ln FNR, ln(1 − δ − FNR) − ln FPR})``,
   discarded if both terms are undefined (NaN).
5. ε_x = max over the surviving attacks, clipped to [0, 50].
6. *Points.* With ``E = ceil(ln(M − 1))``, the buckets [0, 0.5), [0.5, 1), …, [E − 0.5, E) earn
   1, 1/2, 1/4, … points; ε_x ≥ E earns 0. ``F = Σ_x points(ε_x) / N``.
7. *Final score* (``main.py``): ``F · (RA_U / RA_R) · (TA_U / TA_R)``, the plain ratios of the mean
   retain (RA) and test (TA) accuracies of the unlearned (U) and retrained (R) models.

**Where this port deviates, and why.**

* Vectorised. Per example, the reference tiles (models × thresholds) 0/1 matrices on a GPU and
  averages them. Here every attack is reduced to the integer pair (a, b) = (number of positive models
  it calls positive, number of negative models it calls positive), counted with one ``searchsorted``
  on the merged sorted outputs of the example (``#{l ≤ φ ≤ r} = #{φ ≤ r} − #{φ < l}``; an empty
  interval, l > r, gives (0, 0)), and its ε is read from a
  precomputed (M+1)×(M+1) table (:func:`epsilon_table`). The thresholds are the reference's own
  grids, computed with the same float64 operations in the same order, so every attack sees exactly
  the same comparisons.
* float64 rates and ε. The reference averages float32 0/1 values (``torch.mean``) and evaluates the
  logs in float32; here the rates are the exact fractions b/M, (M − a)/M in float64. ε then differs by
  float32 rounding (~1e-6), which changes the score only if some ε falls within that distance of a
  bucket edge (a multiple of 0.5); ``tests/unit/test_neurips.py`` checks, for the model counts it
  uses, that no entry of the ε table changes bucket between the two precisions.
* Threshold grid of the one-threshold family: the reference calls ``torch.linspace``; here its
  formula (``start + i·step`` for the first half, ``end − (n − 1 − i)·step`` for the second;
  ``torch``'s CPU kernel can differ by an ulp inside vector blocks). An ulp of threshold matters only
  for an output exactly on a grid point.
* Undefined examples. If every attack of an example is discarded (e.g. all 2M outputs identical:
  the threshold grid is empty and every interval gives FPR or FNR = 0), the reference stops at an
  ``assert``; here ε_x = NaN and the example earns 0 points (what the reference's bucket loop gives a
  NaN), still counted in N. (That ``assert`` is applied to a numpy array, which raises for more than
  one surviving attack unless asserts are disabled; it is read here as "some attack survives".)
* Inputs are taken as float64 (the reference's confidences are float64). Differing model counts on
  the two sides are refused (the reference would fail to broadcast).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "BUCKET_SIZE",
    "BUFFER",
    "DELTA",
    "EPSILON_CAP",
    "NUM_THRESHOLDS_PER_UNIT",
    "PEAKY_RATIO",
    "bucket_points",
    "epsilon_table",
    "example_epsilons",
    "forgetting_quality",
    "logit_scaled_confidence",
    "logit_scaled_confidence_from_probs",
    "max_epsilon",
    "neurips_score",
]

DELTA = 1e-5  # the reference's δ
EPSILON_CAP = 50.0  # ε of a peaky example, and the clip of every ε
NUM_THRESHOLDS_PER_UNIT = 100  # grid density, thresholds per unit of logit-scaled confidence
BUFFER = 2.0  # interval attacks: margin of the right-end grid and half-width of the left-end grid
PEAKY_RATIO = 0.01  # range ratio below which an example is "peaky" (ε = EPSILON_CAP)
BUCKET_SIZE = 0.5  # width of an ε bucket
_EPS_LOG = 1e-45  # added to both probabilities before the logs (reference)


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


# ------------------------------------------------------------------------------------------- inputs
def logit_scaled_confidence(logits, targets) -> np.ndarray:
    """Logit-scaled confidence of each row of ``logits`` (N, C) for its label, as the reference does.

    .. math:: \\varphi = \\ln(p_y + 10^{-45}) - \\ln\\Big(\\sum_{c \\ne y} p_c + 10^{-45}\\Big),
              \\quad p = \\mathrm{softmax}(z - \\max_c z_c)

    with the exponentials taken in the logits' dtype and normalised in float64, and ``Σ_{c≠y} p_c``
    summed (not ``1 − p_y``). Unlike the reference, the input is not modified in place and only φ
    (not ``p_y``) is returned. float64 (N,).
    """
    z = np.array(_numpy(logits))  # a copy: the reference subtracts the max in place
    y = _numpy(targets).astype(np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[0] != y.shape[0]:
        raise ValueError(f"logits (N, C) and targets (N,) do not match: {z.shape}, {y.shape}")
    z -= np.max(z, axis=1, keepdims=True)
    probs = np.array(np.exp(z), dtype=np.float64)
    probs /= np.sum(probs, axis=1, keepdims=True)
    return _conf_from_normalised(probs, y)


def logit_scaled_confidence_from_probs(probs, targets) -> np.ndarray:
    """:func:`logit_scaled_confidence` from probabilities (N, C) instead of logits.

    The rows are renormalised in float64 (``p / Σ p``, the reference's softmax of ``ln p``); equal to
    the logits version up to the rounding of the stored probabilities. float64 (N,).
    """
    p = np.array(_numpy(probs), dtype=np.float64)
    y = _numpy(targets).astype(np.int64).reshape(-1)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs (N, C) and targets (N,) do not match: {p.shape}, {y.shape}")
    p /= np.sum(p, axis=1, keepdims=True)
    return _conf_from_normalised(p, y)


def _conf_from_normalised(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(probs.shape[0])
    prob_correct = probs[rows, y].copy()
    probs[rows, y] = 0.0
    prob_wrong = np.sum(probs, axis=1)
    return np.log(prob_correct + _EPS_LOG) - np.log(prob_wrong + _EPS_LOG)


# ---------------------------------------------------------------------------------------- ε of attacks
@functools.lru_cache(maxsize=32)
def _epsilon_table_cached(num_models: int, delta: float) -> np.ndarray:
    m = num_models
    a = np.arange(m + 1, dtype=np.float64)[:, None]  # positive models called positive
    b = np.arange(m + 1, dtype=np.float64)[None, :]  # negative models called positive
    fnr = (m - a) / m
    fpr = b / m
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(1 - delta - fpr) - np.log(fnr)
        e2 = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.clip(np.fmax(e1, e2), 0.0, None)  # fmax = nanmax of the two; NaN if both NaN
    eps = np.where((fpr == 0) | (fnr == 0), np.nan, eps)  # exactly one zero: discarded
    eps = np.where((fpr == 0) & (fnr == 0), np.inf, eps)  # perfect separation
    eps.setflags(write=False)
    return eps


def epsilon_table(num_models: int, delta: float = DELTA) -> np.ndarray:
    """ε of an attack that calls ``a`` of the M positive and ``b`` of the M negative models positive.

    ``table[a, b]`` with FNR = (M − a)/M, FPR = b/M: ∞ if both are 0, NaN (discarded) if exactly one is
    0, else ``max(0, nanmax{ln(1 − δ − FPR) − ln FNR, ln(1 − δ − FNR) − ln FPR})`` (NaN if both terms
    are). Read-only float64 (M+1, M+1).
    """
    if num_models < 1:
        raise ValueError(f"num_models must be >= 1, got {num_models}")
    return _epsilon_table_cached(int(num_models), float(delta))


def _torch_linspace(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float64 by its (CUDA) formula."""
    if steps <= 0:
        return np.empty(0)
    if steps == 1:
        return np.array([start], dtype=np.float64)
    step = (end - start) / (steps - 1)
    i = np.arange(steps)
    half = steps // 2
    return np.where(i < half, start + step * i, end - step * (steps - i - 1))


class _Merged:
    """The sorted outputs of one example's two samples, for counting both with one ``searchsorted``."""

    def __init__(self, ps: np.ndarray, ns: np.ndarray, stride: int) -> None:
        self.ps, self.ns, self.stride = ps, ns, stride
        self.values = np.concatenate([ps, ns])
        order = np.argsort(self.values, kind="stable")
        self.values = self.values[order]
        is_p = order < ps.size
        zero = np.zeros(1, dtype=np.int64)
        cum_p = np.concatenate([zero, np.cumsum(is_p)])  # cum_p[k]: outputs of ps among the k smallest
        cum_n = np.concatenate([zero, np.cumsum(~is_p)])
        self.code_pn = cum_p * stride + cum_n  # pair code with ps counted first
        self.code_np = cum_n * stride + cum_p  # ... with ns counted first

    def single(self) -> np.ndarray:
        """Codes a·stride + b of the attacks "positive iff φ ≥ t" (a on ps, b on ns)."""
        lo, hi = self.values[0], self.values[-1]
        t = _torch_linspace(lo, hi, int(np.ceil((hi - lo) * NUM_THRESHOLDS_PER_UNIT)))
        total = self.code_pn[-1]
        return total - self.code_pn[np.searchsorted(self.values, t, "left")]

    def double(self) -> np.ndarray:
        """Codes a·stride + b of the attacks "peakier iff l ≤ φ ≤ r" (a on the peakier sample)."""
        ps, ns = self.ps, self.ns
        pos_diff = ps[-1] - ps[0]
        neg_diff = ns[-1] - ns[0]
        width = neg_diff if pos_diff > neg_diff else pos_diff
        code = self.code_pn
        if pos_diff >= neg_diff:  # the reference's "positive" becomes the peakier sample
            ps, code = ns, self.code_np
        min_ = ps[0] + width - BUFFER
        max_ = ps[-1] + BUFFER
        right = np.linspace(min_, max_, num=int(np.ceil((max_ - min_) * NUM_THRESHOLDS_PER_UNIT)))
        num_left = int(np.ceil(2 * BUFFER * NUM_THRESHOLDS_PER_UNIT))
        left = np.linspace(right - width - BUFFER, right - width + BUFFER, num=num_left, axis=1)  # (R, L)
        # #{l <= φ <= r} = #{φ <= r} - #{φ < l} on each sample; an empty interval (l > r) is (0, 0)
        upper = code[np.searchsorted(self.values, right, "right")][:, None]
        inside = upper - code[np.searchsorted(self.values, left, "left")]
        return np.where(left <= right[:, None], inside, 0).ravel()


def _example_epsilon(pos: np.ndarray, neg: np.ndarray, table: np.ndarray) -> float:
    pos_diff = np.max(pos) - np.min(pos)
    neg_diff = np.max(neg) - np.min(neg)
    largest = pos_diff if pos_diff > neg_diff else neg_diff
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    with np.errstate(divide="ignore", invalid="ignore"):
        if smallest / largest < PEAKY_RATIO:  # NaN (both constant) is not peaky, as in the reference
            return EPSILON_CAP
    merged = _Merged(np.sort(pos), np.sort(neg), table.shape[1])
    seen = np.zeros(table.size, dtype=bool)
    seen[merged.double()] = True
    seen[merged.single()] = True
    vals = table.ravel()[seen]
    vals = vals[~np.isnan(vals)]
    if vals.size == 0:
        return math.nan  # every attack discarded (the reference fails its assert here)
    return float(np.clip(vals.max(), 0.0, EPSILON_CAP))


def _check_pair(unlearned, retrained) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(_numpy(unlearned), dtype=np.float64)
    r = np.asarray(_numpy(retrained), dtype=np.float64)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(
            f"expected unlearned and retrained outputs of the same shape (M models, N examples), "
            f"got {u.shape} and {r.shape}"
        )
    if u.shape[0] < 1:
        raise ValueError("need at least one model per side")
    return u, r


def example_epsilons(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> np.ndarray:
    """Per-example ε of the competition metric (steps 1–5 of the module docstring).

    ``unlearned``, ``retrained``: (M, N) outputs — the logit-scaled confidences
    (:func:`logit_scaled_confidence`) of N forget examples under M unlearned and M retrained models.
    Returns float64 (N,) in [0, 50] (50 = peaky or perfectly separated), NaN where every attack was
    discarded.
    """
    u, r = _check_pair(unlearned, retrained)
    retrain_is_positive = np.median(r, axis=0) > np.median(u, axis=0)
    pos = np.where(retrain_is_positive, r, u)
    neg = np.where(retrain_is_positive, u, r)
    table = epsilon_table(u.shape[0], delta)
    return np.array([_example_epsilon(pos[:, i], neg[:, i], table) for i in range(u.shape[1])])


# ---------------------------------------------------------------------------------------------- score
def max_epsilon(num_models: int) -> float:
    """``ceil(ln(M − 1))``: the ε from which an example earns no points (reference's sample-size bound)."""
    if num_models < 1:
        raise ValueError(f"num_models must be >= 1, got {num_models}")
    with np.errstate(divide="ignore"):
        return float(np.ceil(np.log(num_models - 1)))


def _buckets(num_models: int) -> list[tuple[float, float]]:
    """(start, points) of the buckets, built by the reference's loop."""
    top = max_epsilon(num_models)
    out, start, points = [], 0.0, 1.0
    while start + BUCKET_SIZE <= top:
        out.append((start, points))
        points /= 2
        start += BUCKET_SIZE
    return out


def bucket_points(epsilons, num_models: int) -> np.ndarray:
    """Points of each ε: ``2^{-j}`` for ε in the bucket [j/2, (j+1)/2) below :func:`max_epsilon`, else 0.

    ``num_models`` is the M that the ε were estimated from. NaN earns 0. float64, the shape of
    ``epsilons``.
    """
    e = np.asarray(epsilons, dtype=np.float64)
    pts = np.zeros(e.shape)
    done = np.zeros(e.shape, dtype=bool)
    for start, points in _buckets(num_models):  # the first bucket with e < its end
        hit = ~done & (e < start + BUCKET_SIZE)
        pts[hit] = points
        done |= hit
    return pts


def forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """The forget score F = mean over the N examples of :func:`bucket_points` of :func:`example_epsilons`.

    ``unlearned``, ``retrained``: (M, N) logit-scaled confidences. F ∈ [0, 1], 1 = every example
    indistinguishable at the finest bucket. NaN for N = 0.
    """
    u, r = _check_pair(unlearned, retrained)
    if u.shape[1] == 0:
        return math.nan
    return float(bucket_points(example_epsilons(u, r, delta), u.shape[0]).sum() / u.shape[1])


def neurips_score(
    forget_quality: float,
    retain_acc_u: float | Sequence[float] | np.ndarray,
    retain_acc_r: float | Sequence[float] | np.ndarray,
    test_acc_u: float | Sequence[float] | np.ndarray,
    test_acc_r: float | Sequence[float] | np.ndarray,
) -> float:
    """The final competition score (``main.py``): ``F · (RA_U / RA_R) · (TA_U / TA_R)``.

    Each accuracy is a float or the per-model accuracies (averaged, as ``main.py`` does). The ratios are
    not capped: an unlearned model more accurate than the retrained ones scores above F. NaN if a
    retrained mean accuracy is 0 (the reference would divide by zero).
    """
    ra_u, ra_r, ta_u, ta_r = (float(np.mean(x)) for x in (retain_acc_u, retain_acc_r, test_acc_u, test_acc_r))
    if ra_r == 0 or ta_r == 0:
        return math.nan
    return float(forget_quality) * (ra_u / ra_r) * (ta_u / ta_r)
