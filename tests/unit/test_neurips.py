"""The NeurIPS 2023 competition score (benchmark.metrics.neurips) against a loop-based transcription.

``_ref_*`` below transcribe the logic of google-deepmind/unlearning_evaluation ``metric.py`` (commit
ffae0fff) example by example and right threshold by right threshold, with the attack rates as float32
means over the models and the per-attack ε in float32 (as the reference computes them) and the
one-threshold grid from ``torch.linspace`` itself. The port is vectorised and float64; the tests check
that both give the same points per example, hence the same F.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from benchmark.metrics.neurips import (
    DELTA,
    bucket_points,
    epsilon_table,
    example_epsilons,
    forgetting_quality,
    logit_scaled_confidence,
    logit_scaled_confidence_from_probs,
    max_epsilon,
    neurips_score,
)


# ------------------------------------------------------------------------------ reference transcription
def _ref_attack_eps(tpr, fnr, fpr, tnr, delta: float) -> np.ndarray:
    """ε of each attack from its float32 rates (float32 arithmetic); NaN = discarded."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of nanmax
        e1 = np.log(1 - delta - fpr) - np.log(fnr)
        e2 = np.log(1 - delta - fnr) - np.log(fpr)
        eps = np.clip(np.nanmax(np.stack([e1, e2]), axis=0), 0, None)  # NaN where both are NaN
    eps = np.where(fpr * fnr == 0, np.float32(np.nan), eps)  # FPR or FNR is 0: discarded ...
    return np.where((fpr + fnr == 0) & (tpr + tnr == 2), np.float32(np.inf), eps)  # ... unless both: ∞


def _ref_rates(pos_in: np.ndarray, neg_in: np.ndarray) -> tuple[np.ndarray, ...]:
    """(tpr, fnr, fpr, tnr): float32 means over the models (axis 0) of the 0/1 'called positive'."""
    p = torch.from_numpy(pos_in.astype(np.float32))
    n = torch.from_numpy(neg_in.astype(np.float32))
    return (p.mean(0).numpy(), (1 - p).mean(0).numpy(), n.mean(0).numpy(), (1 - n).mean(0).numpy())


def _ref_example_eps(pos: np.ndarray, neg: np.ndarray, delta: float) -> float:
    pos_diff = np.max(pos) - np.min(pos)
    neg_diff = np.max(neg) - np.min(neg)
    largest = max(pos_diff, neg_diff)
    smallest = min(pos_diff, neg_diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(smallest) / np.float64(largest)
    if ratio < 0.01:
        return 50.0
    eps_all = []
    # interval attacks: the peakier sample (the original negative on a tie) is called positive inside
    peak, other = (neg, pos) if pos_diff >= neg_diff else (pos, neg)
    width = smallest
    lo_r = peak.min() + width - 2.0
    hi_r = peak.max() + 2.0
    for r in np.linspace(lo_r, hi_r, num=int(np.ceil((hi_r - lo_r) * 100))):
        lefts = np.linspace(r - width - 2.0, r - width + 2.0, num=400)
        in_peak = (lefts[None, :] <= peak[:, None]) & (peak[:, None] <= r)
        in_other = (lefts[None, :] <= other[:, None]) & (other[:, None] <= r)
        eps_all.append(_ref_attack_eps(*_ref_rates(in_peak, in_other), delta))
    # one-threshold attacks: called positive iff output >= t
    both = np.concatenate([pos, neg])
    lo, hi = both.min(), both.max()
    steps = int(math.ceil((hi - lo) * 100))
    thresholds = torch.linspace(float(lo), float(hi), steps, dtype=torch.float64).numpy()
    if steps:
        called_p = pos[:, None] >= thresholds[None, :]
        called_n = neg[:, None] >= thresholds[None, :]
        eps_all.append(_ref_attack_eps(*_ref_rates(called_p, called_n), delta))
    eps = np.concatenate(eps_all)
    kept = eps[~np.isnan(eps)]
    if kept.size == 0:
        return math.nan
    return float(min(max(float(kept.max()), 0.0), 50.0))


def _ref_forget_score(unlearned: np.ndarray, retrained: np.ndarray, delta: float = 1e-5):
    """(F, per-example ε, per-example points), by loops."""
    m, n = retrained.shape
    eps = []
    for i in range(n):
        u, r = unlearned[:, i], retrained[:, i]
        pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
        eps.append(_ref_example_eps(pos, neg, delta))
    top = math.ceil(math.log(m - 1)) if m > 2 else (0 if m == 2 else -math.inf)
    buckets = {}
    start, pts = 0.0, 1.0
    while start + 0.5 <= top:
        buckets[start] = pts
        pts /= 2
        start += 0.5
    points = []
    for e in eps:
        got = 0.0
        for s, p in buckets.items():
            if e < s + 0.5:
                got = p
                break
        points.append(got)
    return sum(points) / n, np.array(eps), np.array(points)


# ---------------------------------------------------------------------------------------- synthetic data
def _case(name: str, m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(unlearned, retrained) logit-scaled confidences, (M, N), retrains ~ N(0, 1) per example."""
    rng = np.random.default_rng(seed)
    retrained = rng.normal(size=(m, n))
    noise = rng.normal(size=(m, n))
    unlearned = {
        "identical": noise,
        "more_confident": noise + 1.0,
        "less_confident": noise - 1.0,
        "separated": noise + 12.0,
        "peaky": 2.0 + 1e-4 * noise,
    }[name]
    return unlearned, retrained


CASES = ["identical", "more_confident", "less_confident", "separated", "peaky"]


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize(("m", "n"), [(8, 40), (512, 6)])
def test_port_agrees_with_reference_transcription(name, m, n):
    u, r = _case(name, m, n, seed=m + CASES.index(name))
    f_ref, eps_ref, pts_ref = _ref_forget_score(u, r)
    eps = example_epsilons(u, r)
    np.testing.assert_allclose(eps, eps_ref, rtol=1e-5, atol=1e-5)  # float64 vs the reference's float32
    np.testing.assert_array_equal(bucket_points(eps, m), pts_ref)  # same points per example
    f = forgetting_quality(u, r)
    assert f == pytest.approx(f_ref, abs=1e-12)


def test_known_answers_large_population():
    m, n = 512, 60
    f = {name: forgetting_quality(*_case(name, m, n, seed=7)) for name in CASES}
    # the issue's case: unlearned outputs one s.d. more confident than the retrains' -> F ~ 0.02
    assert 0.01 <= f["more_confident"] <= 0.03
    assert 0.01 <= f["less_confident"] <= 0.03  # the attacks run both ways: less confident is as bad
    # indistinguishable populations score best, but not 1: with 512 models per side the max over
    # ~160k interval attacks finds tail fluctuations of ε ~ 1.5 (points 1/8 .. 1/4)
    assert 0.12 <= f["identical"] <= 0.3
    assert f["identical"] > 5 * max(f["more_confident"], f["less_confident"])
    # separated (ε = ∞) and peaky (ε = 50) examples are above ceil(ln 511) = 7: no points
    assert f["separated"] == 0.0 and f["peaky"] == 0.0
    assert (example_epsilons(*_case("peaky", m, 5, seed=1)) == 50.0).all()
    assert (example_epsilons(*_case("separated", m, 5, seed=1)) == 50.0).all()


def test_orientation_does_not_depend_on_which_side_is_unlearned():
    u, r = _case("more_confident", 64, 20, seed=3)
    np.testing.assert_array_equal(example_epsilons(u, r), example_epsilons(r, u))


# ------------------------------------------------------------------------------------------ pieces
@pytest.mark.parametrize("m", [3, 8, 64, 100, 512])
def test_float32_reference_and_float64_port_give_the_same_bucket_for_every_attack(m):
    """Every (a, b) cell of the ε table: float64 (port) and the reference's float32 rates/logs agree in
    bucket, so the port's points equal the reference's whatever the data."""
    table = epsilon_table(m)
    a = np.arange(m + 1)
    called = (np.arange(m)[:, None] < a[None, :]).astype(np.float32)  # column k: k models out of m
    rate = torch.from_numpy(called).mean(0).numpy()  # float32 k/m as torch.mean gives it
    tpr, fnr = rate[:, None], 1 - rate[:, None]
    fpr, tnr = rate[None, :], 1 - rate[None, :]
    tpr, fnr, fpr, tnr = (np.broadcast_to(x, (m + 1, m + 1)).ravel() for x in (tpr, fnr, fpr, tnr))
    ref = _ref_attack_eps(tpr, fnr, fpr, tnr, DELTA).reshape(m + 1, m + 1)
    np.testing.assert_array_equal(np.isnan(table), np.isnan(ref))
    np.testing.assert_allclose(table, ref, rtol=1e-5, atol=1e-5)
    ok = ~np.isnan(table)
    np.testing.assert_array_equal(bucket_points(table[ok], m), bucket_points(ref[ok].astype(np.float64), m))


def test_epsilon_table_by_hand():
    t = epsilon_table(4)
    # a = 3 of 4 positives and b = 1 of 4 negatives called positive: FPR = FNR = 1/4
    assert t[3, 1] == pytest.approx(math.log(1 - DELTA - 0.25) - math.log(0.25))
    assert t[4, 0] == math.inf  # perfect separation
    assert math.isnan(t[4, 1]) and math.isnan(t[2, 0])  # exactly one of FPR, FNR is 0: discarded
    # a = 3, b = 2: FNR = 1/4, FPR = 1/2 -> max(ln(1/2 - δ) - ln(1/4), ln(3/4 - δ) - ln(1/2))
    assert t[3, 2] == pytest.approx(math.log(0.5 - DELTA) - math.log(0.25))
    assert t[1, 3] == 0.0  # FPR = FNR = 3/4, worse than chance: clipped at 0
    assert t[2, 2] == 0.0  # chance: clipped at 0


def test_bucket_points_follow_the_sample_size_cut_off():
    assert max_epsilon(512) == 7.0 and max_epsilon(8) == 2.0 and max_epsilon(3) == 1.0
    np.testing.assert_array_equal(
        bucket_points([0.0, 0.49, 0.5, 1.2, 6.99, 7.0, 50.0, math.nan], 512),
        [1, 1, 0.5, 0.25, 2.0**-13, 0, 0, 0],
    )
    np.testing.assert_array_equal(bucket_points([0.3, 0.7, 1.9, 2.0], 8), [1, 0.5, 0.125, 0])
    np.testing.assert_array_equal(bucket_points([0.3, 0.7, 1.0], 3), [1, 0.5, 0])
    assert (bucket_points([0.0, 0.1], 2) == 0).all()  # ceil(ln 1) = 0: no bucket


def test_undefined_and_constant_examples():
    # all 2M outputs identical: no one-threshold attack, every interval has FPR or FNR = 0 -> NaN, 0 points
    same = np.full((8, 1), 3.0)
    assert np.isnan(example_epsilons(same, same)).all()
    assert forgetting_quality(same, same) == 0.0
    # both sides constant but different: an interval isolates one side -> perfect separation -> 50
    assert example_epsilons(np.full((8, 1), 3.0), np.full((8, 1), 1.0)).tolist() == [50.0]
    assert math.isnan(forgetting_quality(np.zeros((8, 0)), np.zeros((8, 0))))
    with pytest.raises(ValueError):
        example_epsilons(np.zeros((8, 3)), np.zeros((7, 3)))


def test_logit_scaled_confidence():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4)).astype(np.float32) * 5
    y = rng.integers(0, 4, size=6)
    z_before = z.copy()
    phi = logit_scaled_confidence(z, y)
    np.testing.assert_array_equal(z, z_before)  # not modified in place
    zz = z.astype(np.float64)
    log_p = zz - np.log(np.exp(zz).sum(axis=1, keepdims=True))
    p_y = np.exp(log_p[np.arange(6), y])
    np.testing.assert_allclose(phi, np.log(p_y) - np.log1p(-p_y), rtol=1e-5, atol=1e-5)
    probs = torch.softmax(torch.from_numpy(zz), dim=1)
    np.testing.assert_allclose(logit_scaled_confidence_from_probs(probs, torch.from_numpy(y)), phi, atol=1e-5)
    # saturated: p_wrong underflows to 0 -> ln(1 + 1e-45) - ln(1e-45)
    sat = logit_scaled_confidence(np.array([[0.0, -2000.0]]), np.array([0]))
    assert sat[0] == pytest.approx(-math.log(1e-45))


def test_neurips_score_uses_plain_ratios():
    assert neurips_score(0.5, 0.9, 1.0, 0.8, 0.8) == pytest.approx(0.45)
    assert neurips_score(0.5, 0.9, 1.0, 0.9, 0.6) == pytest.approx(0.675)  # not capped: above F
    assert neurips_score(0.5, [0.8, 1.0], [1.0, 1.0], [0.6], np.array([0.6, 0.6])) == pytest.approx(0.45)
    assert math.isnan(neurips_score(0.5, 0.9, 0.0, 0.8, 0.8))
