"""On-disk cache of the gold references: an ``evaluate`` judging a few new cells loads only what they need.

What :class:`~benchmark.runner.gold_reference.GoldReference` computes from gold models alone — per (protocol,
seed, step) the gold model's predictions, accuracies and membership-inference numbers, and at the final
request its relearn time — is the same for every cell judged against it. Each value is stored, on first
use, in ``runs/<suite>/evaluated/_reference/<kind>/<protocol>/seed<s>_step<k>.pt`` as ``{"key": ...,
"value": ...}`` and read back by later runs whose key matches. The key (:meth:`ReferenceCache.key`) is the
hash of what the value is computed from: the gold model's sidecar JSON (its key covers the data, the model,
the recipe, the seed, the labels and the forget set), for relearn also the original's sidecar, plus the
evaluation code (:func:`~benchmark.runner.eval_code.metric_code_hash`), the
:class:`~benchmark.runner.scoring.EvalConfig` and the suite's identity.

Values round-trip exactly: tensors and numpy arrays are stored as tensors (same dtype and bits), Python
floats, ints, bools and strings as themselves, so rows judged from cached references are byte-identical to
rows judged from freshly computed ones. A missing, unreadable or mismatched file is a miss: the value is
computed and the file rewritten (atomically: temp file + rename). Files are loaded with
``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from benchmark.runner.artifacts import stable_hash
from benchmark.runner.eval_code import metric_code_hash
from benchmark.runner.suite import SuiteRun

__all__ = ["ReferenceCache"]

T = TypeVar("T")
_NDARRAY = "__ndarray__"


def _encode(v: Any) -> Any:
    """``v`` as ``torch.load(weights_only=True)`` reads it back: numpy arrays as tagged tensors."""
    if isinstance(v, np.ndarray):
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(v))}
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_encode(x) for x in v)
    if v is None or isinstance(v, bool | int | float | str | torch.Tensor):
        return v
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"reference cache: cannot store {type(v).__name__} value {v!r}")


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {_NDARRAY}:
            return v[_NDARRAY].numpy()
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return type(v)(_decode(x) for x in v)
    return v


class ReferenceCache:
    """Keyed gold-reference values of one suite on disk; ``hits`` / ``misses`` count this run's look-ups."""

    def __init__(self, run: SuiteRun, config: Any) -> None:
        self.run = run
        self.root = run.layout.reference_cache_dir(run.suite.name)
        s = run.suite
        self._common = {
            "code": metric_code_hash(),
            "config": dataclasses.asdict(config),
            "suite": [s.name, s.dataset, s.model, list(s.seeds)],
        }
        self.hits = 0
        self.misses = 0

    def key(self, **inputs: Any) -> str:
        """The key of a value computed from ``inputs`` (JSON-able) with the current code and config."""
        return stable_hash({**self._common, **inputs})

    def path(self, kind: str, protocol: str, seed: int, step: int) -> Path:
        return self.root / kind / protocol / f"seed{seed}_step{step}.pt"

    def _load(self, path: Path, key: str) -> tuple[bool, Any]:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001  (missing, truncated or foreign: a miss)
            return False, None
        if not isinstance(data, dict) or data.get("key") != key or "value" not in data:
            return False, None
        return True, _decode(data["value"])

    def _store(self, path: Path, key: str, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()  # through a buffer: the archive's inner name does not depend on the temp name
        torch.save({"key": key, "value": _encode(value)}, buf)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    def get(self, kind: str, protocol: str, seed: int, step: int, key: str, compute: Callable[[], T]) -> T:
        """The stored value of (kind, protocol, seed, step) if its key is ``key``, else ``compute()``, stored
        and returned as a later run reads it back."""
        path = self.path(kind, protocol, seed, step)
        found, value = self._load(path, key)
        if found:
            self.hits += 1
            return value
        self.misses += 1
        fresh = compute()
        self._store(path, key, fresh)
        found, value = self._load(path, key)
        if not found:
            raise OSError(f"{path}: reference cache written but not readable")
        return value
