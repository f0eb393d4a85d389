"""Sequential deletion protocols: K disjoint forget sets, fixed by a seed and written to disk.

* ``random``: request k deletes ``round(fraction * N)`` samples drawn uniformly from what is still there.
* ``class``: request k deletes every sample of ``classes_per_request`` classes (distinct across requests).
* ``memorized``: request k deletes ``round(fraction * N)`` samples drawn uniformly, without replacement, from
  a pool of ``round(pool * N)`` highly memorised training samples (Feldman & Zhang 2020 scores, estimated by
  :mod:`benchmark.runner.memorization`). A random 1 % of a model that generalises is "forgotten" by doing
  nothing; the most memorised examples are where doing nothing is far from retraining (Zhao et al. 2024,
  "What makes unlearning hard and what to do about it"). With ``tuning_reserve`` (the default) the pool is
  the even ranks 0, 2, 4, ... of the top ``2 · pool · N`` of the ranking, and the odd ranks are left to the
  tuning forget sets (:mod:`benchmark.runner.tuning_data`), which therefore are as memorised as the
  evaluation's: with the top ``pool`` for the evaluation, tuning could only draw from the next tier down
  (on digits-mlp 31 training examples of that tier scored above 0.5), and methods were tuned on examples
  far easier to forget than those they were judged on. Without it the pool is the top ``pool · N``.
* ``mislabeled`` (corrective unlearning, Goel et al. 2024, "Corrective Machine Unlearning"): a seeded
  ``corrupt_fraction`` of the training labels is flipped to a uniformly drawn *other* class before the
  original is trained; the K requests delete ``identified`` of those samples (all of them by default), in
  K near-equal parts. The gold model of step k is trained without them; the evaluation also reports
  accuracy on the deleted samples' true labels.

Request k is applied to the output of request k-1 and judged against the gold model retrained on
D minus requests 1..k.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.config import ProtocolConfig


class ProtocolError(ValueError):
    """A protocol that cannot be built on the given data (e.g. more classes requested than exist)."""


def corrupt_labels(
    config: ProtocolConfig, labels: np.ndarray, seed: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``mislabeled``: the flipped samples (sorted int64 indices) and their new labels (≠ the true ones)."""
    if config.corrupt_fraction is None:
        raise ProtocolError(f"protocols.{config.name}: kind {config.kind!r} flips no labels")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([seed, _stable_id(config.name), 1])
    n_bad = max(config.requests, round(config.corrupt_fraction * len(labels)))
    idx = np.sort(rng.choice(len(labels), size=n_bad, replace=False)).astype(np.int64)
    new = (labels[idx] + rng.integers(1, num_classes, size=n_bad)) % num_classes
    return idx, new.astype(np.int64)


def make_requests(
    config: ProtocolConfig,
    labels: np.ndarray,
    seed: int,
    *,
    memorization: np.ndarray | None = None,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """Return K disjoint, sorted int64 index arrays into the training set.

    ``memorization`` (one score per training sample) is required by ``memorized``; ``num_classes`` by
    ``mislabeled`` (default: ``labels.max() + 1``).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, _stable_id(config.name)])
    if config.kind == "memorized":
        if memorization is None or len(memorization) != len(labels):
            raise ProtocolError(f"protocols.{config.name}: needs a memorisation score per training sample")
        assert config.fraction is not None and config.pool is not None
        size = max(1, round(config.fraction * len(labels)))
        pool_n = max(size * config.requests, round(config.pool * len(labels)))
        ranked = np.argsort(-np.asarray(memorization, dtype=float), kind="stable")
        ranked = ranked[: 2 * pool_n : 2] if config.tuning_reserve else ranked[:pool_n]
        if len(ranked) < size * config.requests:
            raise ProtocolError(f"protocols.{config.name}: a pool of {len(ranked)} samples cannot supply "
                                f"{config.requests} requests of {size}")  # fmt: skip
        chosen = rng.permutation(ranked)[: size * config.requests]
        return [np.sort(chosen[k * size : (k + 1) * size]).astype(np.int64) for k in range(config.requests)]
    if config.kind == "mislabeled":
        n_classes = int(num_classes if num_classes is not None else labels.max() + 1)
        bad, _ = corrupt_labels(config, labels, seed, n_classes)
        n_id = max(config.requests, round(config.identified * len(bad)))
        deleted = rng.permutation(bad)[:n_id]
        return [np.sort(part).astype(np.int64) for part in np.array_split(deleted, config.requests)]
    if config.kind == "random":
        assert config.fraction is not None
        size = max(1, round(config.fraction * len(labels)))
        order = rng.permutation(len(labels))
        return [np.sort(order[k * size : (k + 1) * size]).astype(np.int64) for k in range(config.requests)]
    classes = np.unique(labels)
    needed = config.requests * config.classes_per_request
    if needed >= len(classes):
        raise ProtocolError(
            f"protocols.{config.name}: {config.requests} requests x {config.classes_per_request} classes "
            f"would delete {needed} of the {len(classes)} classes; at least one must remain"
        )
    chosen = rng.permutation(classes)[:needed].reshape(config.requests, config.classes_per_request)
    return [np.flatnonzero(np.isin(labels, row)).astype(np.int64) for row in chosen]


def _stable_id(name: str) -> int:
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little")


def cumulative(requests: list[np.ndarray], step: int) -> np.ndarray:
    """Union of requests 1..step (1-based)."""
    return np.sort(np.concatenate(requests[:step]))


def retain_indices(n: int, requests: list[np.ndarray], step: int) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[cumulative(requests, step)] = False
    return np.flatnonzero(mask).astype(np.int64)


def protocol_path(out_dir: Path, protocol: str, seed: int | str) -> Path:
    """The forget sets of model seed ``seed`` (an int), or of the population (``"pop"``)."""
    name = f"{protocol}_seed{seed}.json" if isinstance(seed, int) else f"{protocol}_{seed}.json"
    return Path(out_dir) / name


def save_requests(
    path: Path,
    requests: list[np.ndarray],
    config: ProtocolConfig,
    seed: int,
    labels: np.ndarray,
    *,
    corrupted: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write the forget sets (and the classes they cover; the flipped labels of ``mislabeled``) as JSON."""
    payload: dict = {
        "protocol": config.name,
        "kind": config.kind,
        "forget_seed": seed,
        "n_train": len(labels),
        "requests": [
            {"step": k + 1, "indices": r.tolist(), "classes": sorted({int(c) for c in labels[r]})}
            if config.kind == "class"
            else {"step": k + 1, "indices": r.tolist()}
            for k, r in enumerate(requests)
        ],
    }
    if corrupted is not None:
        payload["corrupted"] = {"indices": corrupted[0].tolist(), "labels": corrupted[1].tolist()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def load_requests(path: Path) -> list[np.ndarray]:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: forget sets missing; run `unlearn-bench protocols` first")
    payload = json.loads(Path(path).read_text())
    return [np.asarray(r["indices"], dtype=np.int64) for r in payload["requests"]]


def load_corruption(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The flipped samples and their training labels of a ``mislabeled`` protocol file, else None."""
    payload = json.loads(Path(path).read_text())
    bad = payload.get("corrupted")
    if bad is None:
        return None
    return np.asarray(bad["indices"], dtype=np.int64), np.asarray(bad["labels"], dtype=np.int64)
