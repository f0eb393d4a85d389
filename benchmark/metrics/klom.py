"""KLoM — KL divergence of margins, a per-example distributional unlearning metric.

Paper: K. Georgiev, R. Rinberg, S. M. Park, S. Garg, A. Ilyas, A. Madry, S. Neel, "Attribute-to-Delete:
Machine Unlearning via Datamodel Matching", arXiv:2410.23232 (2024).

Reference code (read for this module; not vendored): ``RoyRin/data-unlearning-bench`` (Rinberg, an author),
file ``unlearning_bench/eval.py`` — functions ``get_margin`` / ``get_margins_from_multimodel_logits`` (the
margin), ``compute_binned_KL_div`` (the histogram KL) and ``kl_from_margins`` (its direction). Its first
commit also carries the Attribute-to-Delete-era copy ``unlearning/auditors/direct.py``, whose
``compute_binned_KL_div`` differs in details (see *Deviations*).

Definition
----------
For one model with logits ``z`` on an example ``x`` with label ``y`` the **margin** is

.. math:: \\phi(x) = z_y - \\log \\sum_{j \\ne y} e^{z_j}

(correct-class logit minus the log-sum-exp of the other logits, not minus the max other logit). It is
invariant to adding a constant to every logit, so log-probabilities ``log softmax(z)`` give the same
margin as the logits: pass ``log(p)`` when only probabilities are stored (see :func:`margins`).

Given margins of ``M_u`` unlearned models (one per seed) and ``M_r`` retrained models on the same
example, **KLoM** of that example is the KL divergence, *unlearned first*,

.. math:: \\mathrm{KLoM}(x) = D_{KL}\\big(\\hat P_u(x) \\,\\|\\, \\hat Q_r(x)\\big)
          = \\sum_b p_b \\log \\frac{p_b}{\\tilde q_b / Z}

between histograms built as in the reference code:

1. clip both margin samples to ``[-clip, clip]`` (``clip = 100``);
2. ``bins = 20`` equal-width bins spanning the *combined* range ``[min, max]`` of both clipped samples
   (``max := min + 1`` when all values are equal);
3. ``p_b``, ``q_b`` = the fraction of each sample in bin ``b``;
4. ``\\tilde q_b = max(q_b, eps)`` (``eps = 1e-5``) where ``p_b > 0``, else ``q_b``; ``Z = Σ_b \\tilde q_b``
   (``scipy.stats.entropy`` renormalises ``qk``; done here in closed form).

Bins where ``p_b = 0`` contribute nothing. When the two samples share no bin, the value is
``log(1/eps) − H(p) + log(1 + k·eps)`` (``k`` = bins holding p-mass), at most ``log((1+eps)/eps)``
(≈ 11.51 nats, all p-mass in one bin): this is the metric's cap.

Finite populations: two populations of retrains from the same distribution do not score 0 — histogram
noise gives a positive *floor* that shrinks as ``M`` grows. :func:`klom_noise_floor` measures it from a
retrain population (KLoM between two random halves). Compare methods at equal ``M`` and read their KLoM
against that floor.

Deviations from the reference code
----------------------------------
* **Values on the last edge.** The reference bins with ``np.digitize(x, edges)`` over ``bins + 1``
  edges and counts indices ``1..bins``, so a value equal to the last edge (the combined maximum of the
  two samples) falls outside every bin and is left out of its histogram. This is kept by default
  (``reference_digitize=True``) because the published numbers carry it and it moves KLoM noticeably
  (the lone maximum otherwise sits in a bin the other sample rarely reaches, where ``q = eps``).
  One deviation: when *every* value of a sample lies on that edge (e.g. all clipped to ``+clip``, or a
  constant sample above the other one), the reference's histogram is empty and its KL is NaN (empty
  ``p``) or small and meaningless (empty ``q``); here that sample is counted in the last bin, giving
  the disjoint-support value. ``reference_digitize=False`` closes the last bin (``np.histogram``'s
  rule) for every sample. The unit tests check the default against a transcription of the reference.
* **Older variant not followed.** The Attribute-to-Delete-era ``unlearning/auditors/direct.py`` used
  ``bins`` edges (``bins − 1`` bins, the first always empty), clipped only the unlearned sample, and
  floored ``q`` at ``eps`` in every bin; the maintained ``unlearning_bench/eval.py`` (followed here)
  replaced all three. Both drop values on the last edge.
* **Summary statistics and uncertainty** (:func:`klom_summary`, :func:`klom_noise_floor`) are this
  module's additions; the reference reports the per-example values and their mean / quantiles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import norm

__all__ = [
    "KLOM_BINS",
    "KLOM_CLIP",
    "KLOM_EPS",
    "klom",
    "klom_noise_floor",
    "klom_summary",
    "margins",
]

KLOM_BINS = 20  # reference ``bin_count``
KLOM_EPS = 1e-5  # reference ``eps``
KLOM_CLIP = 100.0  # reference ``min_val = -100``, ``max_val = 100``

_CHUNK_ELEMENTS = 4_000_000  # bootstrap: models × examples × replicates held at once


# ------------------------------------------------------------------------------------------------ margins
def margins(
    logits: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | Sequence[int]
) -> np.ndarray:
    """Per-example margin ``z_y − log Σ_{j≠y} exp(z_j)`` of one model (or a stack of models).

    ``logits`` is ``(n, C)`` (one model; returns ``(n,)``) or ``(M, n, C)`` (``M`` models; returns
    ``(M, n)``), ``labels`` is ``(n,)`` integers in ``[0, C)``. Computed in float64.

    Log-probabilities (``log_softmax`` of the logits, or ``log`` of stored probabilities) give the same
    margin as the logits, since the margin is shift-invariant; entries ``-inf`` (a probability that
    underflowed to 0) are allowed and give a margin of ``±inf``, which :func:`klom` clips to ``±100``.
    Probabilities themselves are *not* accepted: an input whose entries are all in ``[0, 1]`` with every
    row summing to 1 raises ``ValueError`` (pass ``log(p)``).
    """
    z = _to_float64(logits)
    y = np.asarray(labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    if z.ndim not in (2, 3) or z.shape[-1] < 2 or y.ndim != 1 or y.shape[0] != z.shape[-2]:
        raise ValueError(
            "margins expects logits (n, C) or (M, n, C) with C >= 2 and labels (n,); "
            f"got logits {tuple(z.shape)} and labels {tuple(y.shape)}"
        )
    if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= z.shape[-1])):
        raise ValueError(f"labels must be integers in [0, {z.shape[-1]}), got dtype {y.dtype}")
    if np.isnan(z).any() or np.isposinf(z).any():
        raise ValueError("logits must not contain NaN or +inf")
    if z.size and z.min() >= 0.0 and z.max() <= 1.0 and np.allclose(z.sum(-1), 1.0, atol=1e-4):
        raise ValueError("margins got probabilities (rows in [0, 1] summing to 1); pass their log instead")
    onehot = np.zeros(z.shape, dtype=bool)
    np.put_along_axis(onehot, np.broadcast_to(y[:, None], z.shape[:-1] + (1,)), True, axis=-1)
    correct = np.take_along_axis(z, np.broadcast_to(y[:, None], z.shape[:-1] + (1,)), axis=-1)[..., 0]
    others = np.where(onehot, -np.inf, z)
    top = others.max(axis=-1)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        lse_other = safe_top + np.log(np.exp(others - safe_top[..., None]).sum(axis=-1))
    with np.errstate(invalid="ignore"):
        out = correct - lse_other
    return np.where(np.isnan(out), -np.inf, out)  # -inf - (-inf): no class has mass; treat as wrong


def _to_float64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


# ------------------------------------------------------------------------------------------------- KLoM
def _check_pair(
    unlearned_margins: np.ndarray, retrained_margins: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    u = np.asarray(unlearned_margins, dtype=np.float64)
    r = np.asarray(retrained_margins, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1] or u.shape[0] < 2 or r.shape[0] < 2:
        raise ValueError(
            "KLoM expects margins of shape (models, examples) for both populations, with the same number "
            f"of examples and at least 2 models each; got unlearned {u.shape} and retrained {r.shape}"
        )
    if np.isnan(u).any() or np.isnan(r).any():
        raise ValueError("KLoM margins must not contain NaN")
    return u, r


def _klom_batched(
    p: np.ndarray, q: np.ndarray, bins: int, eps: float, reference_digitize: bool
) -> np.ndarray:
    """KLoM for a batch of *already clipped* margins: ``p`` (R, M_u, n), ``q`` (R, M_r, n) -> (R, n)."""
    start = np.minimum(p.min(axis=1), q.min(axis=1))  # (R, n)
    end = np.maximum(p.max(axis=1), q.max(axis=1))
    end = np.where(start >= end, start + 1.0, end)
    # np.linspace(start, end, bins + 1) computes edge k as k * step + start and sets the last to end;
    # the same arithmetic below gives the very same edges without materialising them.
    step = (end - start) / bins
    r_, n = start.shape
    slots = bins + 1  # slot ``bins``: values on the last edge (dropped by the reference)
    base = ((np.arange(r_, dtype=np.int64)[:, None] * n + np.arange(n)[None, :]) * slots)[:, None, :]

    def counts(x: np.ndarray) -> np.ndarray:
        # bin b with edge_b <= x < edge_{b+1}, i.e. np.digitize(x, edges) - 1. A floor guess is exact
        # except within rounding of an edge; those few values are checked against the exact edges.
        t = (x - start[:, None, :]) / step[:, None, :]
        b = np.minimum(t.astype(np.int64), bins)  # t >= 0: truncation is floor
        frac = t - b
        near = np.nonzero((frac < 1e-9) | (frac > 1.0 - 1e-9))
        if near[0].size:
            rr, jj = near[0], near[2]
            xs, bs, s0, st, e0 = x[near], b[near], start[rr, jj], step[rr, jj], end[rr, jj]
            lo = np.where(bs >= bins, e0, bs * st + s0)
            bs = np.where((xs < lo) & (bs > 0), bs - 1, bs)
            hi = np.where(bs + 1 >= bins, e0, (bs + 1) * st + s0)
            bs = np.where((xs >= hi) & (bs < bins), bs + 1, bs)
            b[near] = bs
        if not reference_digitize:
            b = np.minimum(b, bins - 1, out=b)  # last bin closed
        b += base
        c = np.bincount(b.ravel(), minlength=r_ * n * slots).reshape(r_, n, slots).astype(np.float64)
        kept = c[..., :bins]
        # a population lying wholly on the last edge would leave an empty histogram (NaN or a
        # meaningless KL in the reference); count it in the last bin instead
        kept[..., -1] += np.where(kept.sum(-1) == 0, c[..., bins], 0.0)
        return kept

    cp, cq = counts(p), counts(q)
    pp = cp / cp.sum(-1, keepdims=True)
    qq = cq / cq.sum(-1, keepdims=True)
    pos = pp > 0
    qs = np.where(pos, np.maximum(qq, eps), qq)
    z = qs.sum(-1)
    terms = np.where(pos, pp * (np.log(np.where(pos, pp, 1.0)) - np.log(np.where(pos, qs, 1.0))), 0.0)
    return np.maximum(terms.sum(-1) + np.log(z), 0.0)  # >= 0: rounding of log(Z) near 1


def _checked_params(bins: int, eps: float, clip: float) -> None:
    if bins < 1 or not eps > 0 or not clip > 0:
        raise ValueError(f"bins must be >= 1 and eps, clip > 0; got bins={bins}, eps={eps}, clip={clip}")


def klom(
    unlearned_margins: np.ndarray,
    retrained_margins: np.ndarray,
    *,
    bins: int = KLOM_BINS,
    eps: float = KLOM_EPS,
    clip: float = KLOM_CLIP,
    reference_digitize: bool = True,
) -> np.ndarray:
    """Per-example KLoM ``D_KL(unlearned ‖ retrained)`` of margin histograms (module docstring).

    ``unlearned_margins`` is ``(M_u, n)``, ``retrained_margins`` ``(M_r, n)`` (rows = models trained
    with different seeds, columns = examples); returns float64 ``(n,)`` in nats, ``>= 0``. ``±inf``
    margins are clipped to ``±clip``; NaN raises. ``reference_digitize`` (default, as the reference)
    leaves values equal to the combined maximum out of the histograms; ``False`` closes the last bin.
    """
    u, r = _check_pair(unlearned_margins, retrained_margins)
    _checked_params(bins, eps, clip)
    u, r = np.clip(u, -clip, clip), np.clip(r, -clip, clip)
    return _klom_batched(u[None], r[None], bins, eps, reference_digitize)[0]


def _replicates(
    u: np.ndarray,
    r: np.ndarray,
    n_rep: int,
    rng: np.random.Generator,
    method: str,
    bins: int,
    eps: float,
    reference_digitize: bool,
) -> tuple[np.ndarray, float]:
    """(n_rep, n) per-example KLoM of resampled model populations, and the variance scale factor.

    ``"bootstrap"``: both populations resampled with replacement at full size (factor 1).
    ``"half"``: each replicate keeps a random half of each population, without replacement; for a
    statistic of size ``M`` the spread of its values on subsamples of size ``m`` times ``m / (M − m)``
    estimates its variance (exact for means; ``m = M // 2`` makes the factor 1 for even ``M``).
    """
    mu, n = u.shape
    mr = r.shape[0]
    if method == "bootstrap":
        ku, kr, factor = mu, mr, 1.0
    else:
        ku, kr = mu // 2, mr // 2
        factor = 0.5 * (ku / (mu - ku) + kr / (mr - kr))
    chunk = max(1, _CHUNK_ELEMENTS // ((ku + kr) * n))
    out = np.empty((n_rep, n))
    for s in range(0, n_rep, chunk):
        k = min(chunk, n_rep - s)
        if method == "bootstrap":
            iu = rng.integers(0, mu, size=(k, mu))
            ir = rng.integers(0, mr, size=(k, mr))
        else:
            iu = np.argsort(rng.random((k, mu)), axis=1)[:, :ku]
            ir = np.argsort(rng.random((k, mr)), axis=1)[:, :kr]
        out[s : s + k] = _klom_batched(u[iu], r[ir], bins, eps, reference_digitize)
    return out, factor


def klom_summary(
    unlearned_margins: np.ndarray,
    retrained_margins: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    quantiles: Sequence[float] = (0.5, 0.95, 0.99),
    ci: float = 0.95,
    method: str = "half",
    resample_examples: bool = False,
    bins: int = KLOM_BINS,
    eps: float = KLOM_EPS,
    clip: float = KLOM_CLIP,
    reference_digitize: bool = True,
) -> dict[str, float]:
    """Mean and quantiles of per-example KLoM, with resampling confidence intervals.

    The paper reports the distribution of per-example KLoM over an evaluation set (forget / retain /
    validation), summarised by percentiles, the 95th above all. Returns a flat dict of floats:

    * ``mean``, ``mean_se``, ``mean_ci_low``, ``mean_ci_high``, ``mean_ci_half_width``;
    * for each ``q`` in ``quantiles``: ``f"q{q:g}"`` (e.g. ``q0.95``), ``_se``, ``_ci_low``, ``_ci_high``;
    * ``rep_shift`` (mean of the replicates' mean KLoM minus ``mean``), ``n_examples``, ``n_unlearned``,
      ``n_retrained``, ``n_boot``, ``ci``.

    Uncertainty: each of ``n_boot`` replicates resamples the *models* of both populations and recomputes
    every per-example KLoM, histogram range included (model-count noise is the dominant uncertainty and
    is shared by all examples, so resampling examples alone would understate it; ``resample_examples``
    adds example resampling on top). The interval is ``estimate ± z·se``; it targets the expected KLoM
    *at these population sizes*, floor included.

    * ``method="half"`` (default): half-sampling — each replicate keeps a random half of each population
      without replacement; ``se`` = replicate standard deviation × ``sqrt(m / (M − m))``.
    * ``method="bootstrap"``: the ordinary bootstrap, models drawn with replacement. Not the default: a
      bootstrap population repeats models, and the number of distinct models varies between replicates;
      KLoM's finite-sample floor falls steeply with the number of distinct models, so that variation
      shifts every example's KLoM together. Where model noise is mostly independent across examples
      the replicates' spread (and level, see ``rep_shift``) then far exceeds the true sampling spread
      of the estimate; half-samples always hold the same number of distinct models.
      ``tests/unit/test_klom.py`` checks the coverage of both; ``scripts/klom_ci_scaling.py`` compares
      both half-widths with the true one.

    Model noise shared by all examples (a model whose margins are all high) does not average out over
    examples, so the interval can stay wide at large ``n``; size ``M`` from this interval, not from ``n``.

    All draws come from ``numpy.random.default_rng(seed)``.
    """
    u, r = _check_pair(unlearned_margins, retrained_margins)
    _checked_params(bins, eps, clip)
    if method not in ("half", "bootstrap"):
        raise ValueError(f"method must be 'half' or 'bootstrap', got {method!r}")
    if n_boot < 2 or not 0.0 < ci < 1.0 or any(not 0.0 <= q <= 1.0 for q in quantiles):
        raise ValueError(
            f"need n_boot >= 2, 0 < ci < 1 and quantiles in [0, 1]; got {n_boot}, {ci}, {tuple(quantiles)}"
        )
    if method == "half" and (u.shape[0] < 4 or r.shape[0] < 4):
        raise ValueError(f"method='half' needs >= 4 models per population; got {u.shape[0]} and {r.shape[0]}")
    u, r = np.clip(u, -clip, clip), np.clip(r, -clip, clip)
    point = _klom_batched(u[None], r[None], bins, eps, reference_digitize)[0]
    rng = np.random.default_rng(seed)
    reps, factor = _replicates(u, r, n_boot, rng, method, bins, eps, reference_digitize)
    n = u.shape[1]
    if resample_examples:
        reps = np.take_along_axis(reps, rng.integers(0, n, size=(n_boot, n)), axis=1)
    z = float(norm.ppf(0.5 + ci / 2.0))
    out: dict[str, float] = {}

    def add(name: str, est: float, values: np.ndarray) -> None:
        se = float(np.std(values, ddof=1)) * math.sqrt(factor)
        out[name] = est
        out[f"{name}_se"] = se
        out[f"{name}_ci_low"] = est - z * se
        out[f"{name}_ci_high"] = est + z * se

    rep_means = reps.mean(axis=1)
    add("mean", float(point.mean()), rep_means)
    out["mean_ci_half_width"] = z * out["mean_se"]
    qs = list(quantiles)
    if qs:
        pq = np.quantile(point, qs)
        rq = np.quantile(reps, qs, axis=1)  # (len(qs), n_boot)
        for i, q in enumerate(qs):
            add(f"q{q:g}", float(pq[i]), rq[i])
    out.update(
        rep_shift=float(rep_means.mean() - point.mean()),
        n_examples=float(n),
        n_unlearned=float(u.shape[0]),
        n_retrained=float(r.shape[0]),
        n_boot=float(n_boot),
        ci=float(ci),
    )
    return out


def klom_noise_floor(
    retrained_margins: np.ndarray,
    *,
    seed: int = 0,
    n_splits: int = 10,
    bins: int = KLOM_BINS,
    eps: float = KLOM_EPS,
    clip: float = KLOM_CLIP,
    reference_digitize: bool = True,
) -> np.ndarray:
    """Per-example KLoM between two random halves of a retrain population: what "another retrain" scores.

    ``retrained_margins`` is ``(M_r, n)`` with ``M_r >= 4``; each of ``n_splits`` random permutations
    (``numpy.random.default_rng(seed)``) splits the models into halves of ``h = M_r // 2`` (one model
    left out when ``M_r`` is odd) and scores ``KLoM(first half ‖ second half)``; returns the mean over
    splits, float64 ``(n,)``. This is the floor of populations of ``h`` models on each side; the floor
    falls as ``M`` grows, so it overstates the floor of a comparison with ``M_r`` retrains and as many
    unlearned models (to read a method's KLoM at ``M`` per side against it, use ``2M`` retrains).
    """
    r = np.asarray(retrained_margins, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] < 4 or n_splits < 1:
        raise ValueError(
            "klom_noise_floor expects retrained margins (models, examples) with >= 4 models and "
            f"n_splits >= 1; got shape {r.shape}, n_splits={n_splits}"
        )
    _check_pair(r, r)
    _checked_params(bins, eps, clip)
    r = np.clip(r, -clip, clip)
    rng = np.random.default_rng(seed)
    h = r.shape[0] // 2
    perms = np.stack([rng.permutation(r.shape[0]) for _ in range(n_splits)])
    return _klom_batched(r[perms[:, :h]], r[perms[:, h : 2 * h]], bins, eps, reference_digitize).mean(axis=0)
