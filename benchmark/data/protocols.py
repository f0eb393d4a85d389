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
  ``level`` (RUM's memorisation levels, Zhao et al. 2024) chooses the ranking: ``high`` (the default, above),
  ``mid`` (closest to a score of 0.5 first), ``low`` (least memorised first) or ``mix`` (a third of every
  request from each): RUM found unlearning harder the more memorised the forget set.
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
        return _memorized_requests(config, np.asarray(memorization, dtype=float), rng)
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


def level_ranking(memorization: np.ndarray, level: str) -> np.ndarray:
    """Training indices in the order a ``memorized`` pool of ``level`` takes them (ties by index).

    ``high``: most memorised first; ``low``: least memorised first; ``mid``: closest to a score of 0.5 first
    (the three forget sets of Zhao et al. 2024, RUM, ``generate_mask.py``: top N, bottom N, and the N with
    the smallest ``|mem - 0.5|``).
    """
    mem = np.asarray(memorization, dtype=float)
    if level == "high":
        return np.argsort(-mem, kind="stable")
    if level == "low":
        return np.argsort(mem, kind="stable")
    if level == "mid":
        return np.argsort(np.abs(mem - 0.5), kind="stable")
    raise ProtocolError(f"unknown memorisation level {level!r}")


def _level_pool(ranked: np.ndarray, pool_n: int, reserve: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the pool the evaluation draws from, every rank it spans): the top ``pool_n`` of ``ranked``, or with
    the tuning reserve the even ranks of its top ``2 · pool_n`` (the odd ones are left to tuning)."""
    span = ranked[: 2 * pool_n] if reserve else ranked[:pool_n]
    return (span[::2] if reserve else span), span


def _memorized_requests(
    config: ProtocolConfig, mem: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """``memorized``: K requests of ``round(fraction · N)`` samples drawn from the pool of ``config.level``.

    ``mix`` (RUM's mixed forget set): every request takes ``size // 3`` samples from the ``high`` pool, as
    many from the ``mid`` pool and the rest from the ``low`` pool (RUM: ``N // 3`` highest, ``N // 3``
    closest to 0.5, the ``ceil(N / 3)`` lowest, which is N − 1 samples when N mod 3 = 2: here a request keeps
    its size and the low level gives the one more); the pool is shared out in the same proportions, and the
    three pools are disjoint: ``high`` claims its ranks first, then ``low``, then ``mid`` from what is left
    (on a small dataset the samples closest to 0.5 may be among the most memorised).
    """
    assert config.fraction is not None and config.pool is not None
    n, k_req = len(mem), config.requests
    size = max(1, round(config.fraction * n))
    pool_n = max(size * k_req, round(config.pool * n))
    if config.level != "mix":
        shares = {config.level: size}
    elif size < 3:
        raise ProtocolError(f"protocols.{config.name}: level 'mix' takes a third of each request from each "
                            f"level, so a request needs >= 3 samples, got {size}")  # fmt: skip
    else:
        shares = {"high": size // 3, "mid": size // 3, "low": size - 2 * (size // 3)}
    pools: dict[str, np.ndarray] = {}
    claimed = np.zeros(n, dtype=bool)
    for level in sorted(shares, key=("high", "low", "mid").index):  # the order the levels claim their ranks
        ranked = level_ranking(mem, level)
        ranked = ranked[~claimed[ranked]]
        part_n = max(shares[level] * k_req, round(pool_n * shares[level] / size))  # pool_n for one level
        pools[level], span = _level_pool(ranked, part_n, config.tuning_reserve)
        claimed[span] = True
        if len(pools[level]) < shares[level] * k_req:
            raise ProtocolError(f"protocols.{config.name}: the {level} pool of {len(pools[level])} samples "
                                f"cannot supply {k_req} requests of {shares[level]}")  # fmt: skip
    drawn = {lv: rng.permutation(pools[lv])[: shares[lv] * k_req] for lv in shares}  # high, mid, low
    parts = [[drawn[lv][k * shares[lv] : (k + 1) * shares[lv]] for lv in shares] for k in range(k_req)]
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


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
