"""KLoM (Georgiev et al. 2024) against a loop transcription of the reference code and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from benchmark.metrics.klom import KLOM_EPS, klom, klom_noise_floor, klom_summary, margins

CAP = math.log((1.0 + KLOM_EPS) / KLOM_EPS)  # all unlearned mass in one bin the retrains never reach


def reference_binned_kl(p_arr, q_arr, bin_count=20, eps=1e-5, min_val=-100, max_val=100):
    """Loop transcription of ``compute_binned_KL_div`` in RoyRin/data-unlearning-bench
    ``unlearning_bench/eval.py`` (D_KL(p || q) of shared-range histograms)."""
    p_arr = np.clip(p_arr, min_val, max_val)
    q_arr = np.clip(q_arr, min_val, max_val)
    start, end = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if start >= end:
        end = start + 1
    edges = np.linspace(start, end, bin_count + 1)
    pi, qi = np.digitize(p_arr, edges), np.digitize(q_arr, edges)
    pc = np.array([np.sum(pi == i) for i in range(1, bin_count + 1)])
    qc = np.array([np.sum(qi == i) for i in range(1, bin_count + 1)])
    pp = pc / pc.sum() if pc.sum() > 0 else np.zeros(bin_count)
    qq = qc / qc.sum() if qc.sum() > 0 else np.zeros(bin_count)
    qs = np.where(pp > 0, np.maximum(qq, eps), qq)
    return stats.entropy(pk=pp, qk=qs)


def closed_binned_kl(p_arr, q_arr, bins=20, eps=1e-5, clip=100.0):
    """Same, with np.histogram's closed last bin (``reference_digitize=False``)."""
    p_arr, q_arr = np.clip(p_arr, -clip, clip), np.clip(q_arr, -clip, clip)
    lo, hi = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if lo >= hi:
        hi = lo + 1
    pc, _ = np.histogram(p_arr, bins=bins, range=(lo, hi))
    qc, _ = np.histogram(q_arr, bins=bins, range=(lo, hi))
    pp, qq = pc / pc.sum(), qc / qc.sum()
    kl = 0.0
    qs = [max(qq[b], eps) if pp[b] > 0 else qq[b] for b in range(bins)]
    z = sum(qs)
    for b in range(bins):
        if pp[b] > 0:
            kl += pp[b] * math.log(pp[b] / (qs[b] / z))
    return kl


def _populations(rng, m_u, m_r, n, shift=0.0, rho=0.0):
    """Margins of ``m_u`` 'unlearned' and ``m_r`` 'retrained' models: per-example centres, a per-model
    offset shared by all examples (correlation ``rho``), unit total variance; unlearned shifted."""
    mu = rng.normal(0.0, 3.0, n)

    def pop(m, s):
        common = rng.normal(0.0, 1.0, (m, 1)) * math.sqrt(rho)
        return mu + s + common + rng.normal(0.0, 1.0, (m, n)) * math.sqrt(1.0 - rho)

    return pop(m_u, shift), pop(m_r, 0.0)


# -------------------------------------------------------------------------------------------------- margins
def test_margin_by_hand():
    z = np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [5.0, 5.0, 5.0]])
    y = np.array([0, 2, 1])
    expected = [
        2.0 - math.log(math.e + 1.0),
        1.0 - math.log(1.0 + math.e**3),
        5.0 - math.log(2 * math.e**5),
    ]
    assert margins(z, y).tolist() == pytest.approx(expected, abs=1e-12)
    # logsumexp of the others, not the max other logit: these two differ
    assert margins(z, y)[0] != pytest.approx(2.0 - 1.0)
    # two classes: the logit difference
    assert margins(np.array([[1.5, -0.5]]), [0]).tolist() == pytest.approx([2.0], abs=1e-12)


def test_margin_log_probs_equal_logits_torch_and_stacks():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 7, 5, generator=gen, dtype=torch.float64) * 4
    y = torch.randint(0, 5, (7,), generator=gen)
    m = margins(z, y)
    assert m.shape == (3, 7) and m.dtype == np.float64
    np.testing.assert_allclose(margins(torch.log_softmax(z, -1), y), m, rtol=0, atol=1e-12)
    np.testing.assert_allclose(margins(z.numpy() + 17.0, y.numpy()), m, rtol=0, atol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(margins(z[k], y), m[k], rtol=0, atol=0)
    # a probability that underflowed to 0: log p = -inf is fine; KLoM clips the resulting -inf
    lp = torch.log(torch.tensor([[0.0, 0.3, 0.7], [0.5, 0.5, 0.0]], dtype=torch.float64))
    assert margins(lp, [0, 0]).tolist() == [-np.inf, 0.0]


def test_margin_validation():
    with pytest.raises(ValueError, match="pass their log"):
        margins(np.array([[0.2, 0.8], [0.6, 0.4]]), [0, 1])
    with pytest.raises(ValueError, match="labels must be integers"):
        margins(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match=r"margins expects logits \(n, C\)"):
        margins(np.zeros((2, 3)), [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        margins(np.array([[np.nan, 1.0]]), [0])


# ------------------------------------------------------------------------------------- against the reference
def test_matches_reference_transcription():
    rng = np.random.default_rng(0)
    for m_u, m_r, n, scale in [(13, 17, 60, 1.0), (50, 50, 40, 3.0), (5, 9, 40, 150.0)]:
        u = rng.normal(0.4, scale, (m_u, n))
        r = rng.normal(0.0, scale, (m_r, n))
        u[:, :15] = np.round(u[:, :15] * 2) / 2  # ties, values on interior edges, repeated maxima
        r[:, :15] = np.round(r[:, :15] * 2) / 2
        r[:, 20] = u[0, 20]  # identical values across populations
        got = klom(u, r)
        want = np.array([reference_binned_kl(u[:, j], r[:, j]) for j in range(n)])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        closed = klom(u, r, reference_digitize=False)
        want_closed = np.array([closed_binned_kl(u[:, j], r[:, j]) for j in range(n)])
        np.testing.assert_allclose(closed, want_closed, rtol=1e-12, atol=1e-12)


def test_direction_is_unlearned_given_retrained():
    rng = np.random.default_rng(1)
    u, r = rng.normal(0, 0.3, (30, 8)), rng.normal(0, 2.0, (30, 8))
    # a narrow sample inside a wide one: KL(narrow || wide) is small, KL(wide || narrow) large
    want = np.array([reference_binned_kl(u[:, j], r[:, j]) for j in range(8)])
    np.testing.assert_allclose(klom(u, r), want, rtol=1e-12)
    assert klom(u, r).mean() < klom(r, u).mean()


# ---------------------------------------------------------------------------------------------- known answers
def test_identical_and_constant_populations_score_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 30))
    np.testing.assert_allclose(klom(a, a), 0.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(klom(np.full((5, 3), 2.0), np.full((7, 3), 2.0)), 0.0, rtol=0, atol=1e-15)
    assert (klom(a, a[::-1]) >= 0).all()


def test_disjoint_populations_hit_the_cap():
    rng = np.random.default_rng(3)
    q = rng.uniform(0.0, 1.0, (25, 4))
    # a constant unlearned sample below, or above (on the last edge: counted, not dropped), the retrains
    assert klom(np.full((10, 4), -5.0), q) == pytest.approx(np.full(4, CAP), rel=1e-12)
    assert klom(np.full((10, 4), 7.0), q) == pytest.approx(np.full(4, CAP), rel=1e-12)
    # margins beyond the clip: all unlearned at +100 after clipping
    assert klom(np.full((10, 4), 1e6), q) == pytest.approx(np.full(4, CAP), rel=1e-12)
    # a spread unlearned sample on disjoint support: log(1/eps) - H(p) + log(1 + k eps), below the cap
    p = rng.uniform(10.0, 11.0, (25, 4))
    got = klom(p, q)
    for j in range(4):
        lo, hi = q[:, j].min(), p[:, j].max()
        edges = np.linspace(lo, hi, 21)
        counts = np.array([np.sum(np.digitize(p[:, j], edges) == i) for i in range(1, 21)])
        pp = counts[counts > 0] / counts.sum()
        want = math.log(1 / KLOM_EPS) + float(np.sum(pp * np.log(pp))) + math.log(1 + len(pp) * KLOM_EPS)
        assert got[j] == pytest.approx(want, rel=1e-12)
        assert got[j] <= CAP


def test_klom_grows_monotonically_with_the_shift():
    rng = np.random.default_rng(4)
    n, m = 200, 50
    base = rng.normal(size=(m, n))
    r = rng.normal(size=(m, n))
    means = [klom(base + s, r).mean() for s in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 30.0)]
    assert all(b > a for a, b in zip(means, means[1:], strict=False)), means
    # far apart: disjoint supports, log(1/eps) - H(p) + ..., between CAP - log(bins) and CAP
    assert CAP - math.log(20) < means[-1] <= CAP


def test_same_distribution_scores_near_the_floor():
    rng = np.random.default_rng(5)
    n, m = 300, 40
    u, retrains = _populations(rng, m, 3 * m, n)
    r, r2 = retrains[:m], retrains[m:]  # r2: 2M other retrains, whose halves hold M models each
    score = klom(u, r).mean()
    floor = klom_noise_floor(r2, seed=0).mean()
    assert score > 0.1  # the finite-population floor is far from 0 ...
    assert score == pytest.approx(floor, rel=0.15)  # ... and what another retrain population scores
    # a shifted population stands clear of it
    assert klom(u + 2.0, r).mean() > 3 * floor


def test_noise_floor_brute_force():
    rng = np.random.default_rng(6)
    r = rng.normal(size=(11, 25))
    got = klom_noise_floor(r, seed=3, n_splits=4)
    g = np.random.default_rng(3)
    perms = [g.permutation(11) for _ in range(4)]
    want = np.mean(
        [[reference_binned_kl(r[pm[:5], j], r[pm[5:10], j]) for j in range(25)] for pm in perms], axis=0
    )
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.array_equal(got, klom_noise_floor(r, seed=3, n_splits=4))


# ------------------------------------------------------------------------------------------------- summary
def test_summary_point_values_and_determinism():
    rng = np.random.default_rng(7)
    u, r = _populations(rng, 20, 24, 80, shift=1.0)
    per = klom(u, r)
    s = klom_summary(u, r, n_boot=50, seed=1, quantiles=(0.5, 0.95))
    assert s["mean"] == pytest.approx(per.mean(), rel=1e-12)
    assert s["q0.95"] == pytest.approx(np.quantile(per, 0.95), rel=1e-12)
    assert s["q0.5"] == pytest.approx(np.median(per), rel=1e-12)
    assert s["mean_ci_low"] < s["mean"] < s["mean_ci_high"]
    assert s["mean_ci_half_width"] == pytest.approx(stats.norm.ppf(0.975) * s["mean_se"], rel=1e-12)
    assert (s["n_examples"], s["n_unlearned"], s["n_retrained"], s["n_boot"]) == (80, 20, 24, 50)
    assert s == klom_summary(u, r, n_boot=50, seed=1, quantiles=(0.5, 0.95))
    assert s["mean_se"] != klom_summary(u, r, n_boot=50, seed=2, quantiles=(0.5, 0.95))["mean_se"]
    wide = klom_summary(u, r, n_boot=50, seed=1, quantiles=(), resample_examples=True)
    assert wide["mean"] == s["mean"] and wide["mean_se"] > 0


def test_ci_covers_the_expected_klom_in_simulation():
    """Truth = the expected mean KLoM at these population sizes (Monte Carlo). Correlated model noise
    (a per-model offset shared by all examples), as in real networks."""
    rng = np.random.default_rng(8)
    n, m, shift, rho = 40, 20, 1.0, 0.5
    mu = rng.normal(0.0, 3.0, n)

    def draw():
        def pop(s):
            common = rng.normal(0.0, 1.0, (m, 1)) * math.sqrt(rho)
            return mu + s + common + rng.normal(0.0, 1.0, (m, n)) * math.sqrt(1.0 - rho)

        return pop(shift), pop(0.0)

    truth_draws = np.array([klom(*draw()).mean() for _ in range(400)])
    truth, true_sd = truth_draws.mean(), truth_draws.std(ddof=1)
    hits = {"half": 0, "bootstrap": 0}
    ses = {"half": [], "bootstrap": []}
    trials = 40
    for t in range(trials):
        u, r = draw()
        for method in hits:
            s = klom_summary(u, r, n_boot=100, seed=t, quantiles=(), method=method)
            hits[method] += s["mean_ci_low"] <= truth <= s["mean_ci_high"]
            ses[method].append(s["mean_se"])
    assert hits["half"] / trials >= 0.85, hits
    assert hits["bootstrap"] / trials >= 0.85, hits
    # half-sampling estimates the true spread; the with-replacement bootstrap overstates it
    assert 0.6 < np.mean(ses["half"]) / true_sd < 2.0, (np.mean(ses["half"]), true_sd)
    assert np.mean(ses["bootstrap"]) > np.mean(ses["half"])


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "u_shape, r_shape",
    [((10, 5), (10, 6)), ((10,), (10,)), ((1, 5), (10, 5)), ((10, 5, 2), (10, 5, 2))],
)
def test_shape_errors(u_shape, r_shape):
    with pytest.raises(ValueError, match=r"KLoM expects margins of shape \(models, examples\)"):
        klom(np.zeros(u_shape), np.zeros(r_shape))
    with pytest.raises(ValueError, match=r"KLoM expects margins of shape \(models, examples\)"):
        klom_summary(np.zeros(u_shape), np.zeros(r_shape), n_boot=5)


def test_value_errors():
    good = np.zeros((6, 3))
    bad = good.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="must not contain NaN"):
        klom(bad, good)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        klom(good, good, bins=0)
    with pytest.raises(ValueError, match="method must be"):
        klom_summary(good, good, method="jackknife")
    with pytest.raises(ValueError, match="needs >= 4 models"):
        klom_summary(good[:3], good, n_boot=5)
    with pytest.raises(ValueError, match=">= 4 models"):
        klom_noise_floor(good[:3])
    assert np.isfinite(klom(np.full((6, 3), np.inf), np.full((6, 3), -np.inf))).all()
