"""Sequential deletion protocols: K disjoint forget sets, fixed by a seed and written to disk.

* ``random``: request k deletes ``round(fraction * N)`` samples drawn uniformly from what is still there.
* ``class``: request k deletes every sample of ``classes_per_request`` classes (distinct across requests).

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


def make_requests(config: ProtocolConfig, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Return K disjoint, sorted int64 index arrays into the training set."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, _stable_id(config.name)])
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


def protocol_path(out_dir: Path, protocol: str, seed: int) -> Path:
    return Path(out_dir) / f"{protocol}_seed{seed}.json"


def save_requests(
    path: Path, requests: list[np.ndarray], config: ProtocolConfig, seed: int, labels: np.ndarray
) -> None:
    """Write the forget sets (and the classes they cover) as JSON, atomically."""
    payload = {
        "protocol": config.name,
        "kind": config.kind,
        "seed": seed,
        "n_train": len(labels),
        "requests": [
            {"step": k + 1, "indices": r.tolist(), "classes": sorted({int(c) for c in labels[r]})}
            if config.kind == "class"
            else {"step": k + 1, "indices": r.tolist()}
            for k, r in enumerate(requests)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(path)


def load_requests(path: Path) -> list[np.ndarray]:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: forget sets missing; run `unlearn-bench protocols` first")
    payload = json.loads(Path(path).read_text())
    return [np.asarray(r["indices"], dtype=np.int64) for r in payload["requests"]]
