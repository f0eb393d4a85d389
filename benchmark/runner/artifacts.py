"""Atomic writes, content hashes and the repository layout shared by every stage."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.core.hashing import file_digest


def stable_hash(obj: Any) -> str:
    """sha256 (16 hex digits) of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_hash(path: Path) -> str:
    """The first 16 hex digits of the file's sha256 (the cache keys' file fingerprint)."""
    return file_digest(path)[:16]


def write_json(path: Path, obj: Any, sort_keys: bool = True) -> None:
    """Write JSON atomically (temp file + rename), so an interrupted run never leaves half a file.
    ``sort_keys=False`` keeps the mappings' order (a record read back must equal the one written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_state(path: Path, model: torch.nn.Module) -> None:
    """Write the state dict atomically. Serialised through a buffer: ``torch.save`` to a path names the
    zip archive inside after that file (here a temp name holding the pid), so equal weights would give
    different bytes, hence different downstream cache keys, from one process to the next. Tensors on another
    device are copied to the CPU first (same keys, same ``_metadata``), so every artefact loads anywhere;
    a CPU model's state dict is written untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    buf = io.BytesIO()
    torch.save(_on_cpu(model.state_dict()), buf)
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


def _on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if all(v.device.type == "cpu" for v in state.values()):
        return state
    out = type(state)((k, v.detach().cpu()) for k, v in state.items())
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        out._metadata = meta  # type: ignore[attr-defined]
    return out


def finite_state(model: torch.nn.Module) -> bool:
    """Every floating-point entry of the model's state is finite: parameters *and* buffers (BatchNorm's
    running mean and variance, which a method's train-mode forward passes update: non-finite statistics make
    every eval-mode output NaN although each weight is finite)."""
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def load_state(path: Path, model: torch.nn.Module) -> torch.nn.Module:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: model missing; run the stage that produces it first")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")


@dataclass(frozen=True)
class Layout:
    """Where each stage writes: ``datasets/``, ``runs/<suite>/...``, ``results/``, ``leaderboards/``."""

    root: Path = Path(".")

    def dataset_dir(self, name: str) -> Path:
        return self.root / "datasets" / name

    def suite_dir(self, suite: str) -> Path:
        return self.root / "runs" / suite

    def method_code_path(self, suite: str) -> Path:
        """The code hashes of the methods a suite runs (the ``method_code`` stage)."""
        return self.root / "runs" / "method_code" / f"{suite}.json"

    def protocols_dir(self, suite: str) -> Path:
        return self.suite_dir(suite) / "protocols"

    def original_path(self, suite: str, seed: int, variant: str | None = None) -> Path:
        """``variant``: a label-corrupting protocol whose originals train on its flipped labels."""
        base = self.suite_dir(suite) / "originals"
        return (base / variant if variant else base) / f"seed{seed}.pt"

    def memorization_path(self, suite: str) -> Path:
        return self.suite_dir(suite) / "memorization" / "scores.json"

    def population_dir(self, suite: str) -> Path:
        return self.suite_dir(suite) / "population"

    def population_results_path(self, suite: str) -> Path:
        return self.root / "results" / f"{suite}_population.csv"

    def population_examples_path(self, suite: str) -> Path:
        return self.root / "results" / f"{suite}_population_examples.csv"

    def gold_path(self, suite: str, protocol: str, seed: int, step: int) -> Path:
        return self.suite_dir(suite) / "gold" / protocol / f"seed{seed}" / f"step{step}.pt"

    def cell_dir(self, suite: str, protocol: str, params_id: str, seed: int) -> Path:
        return self.suite_dir(suite) / "cells" / protocol / slug(params_id) / f"seed{seed}"

    def evaluated_path(self, suite: str, protocol: str, params_id: str, seed: int) -> Path:
        """The evaluation cache of one cell (its judged rows and their key)."""
        return self.suite_dir(suite) / "evaluated" / protocol / slug(params_id) / f"seed{seed}.json"

    def tuning_dir(self, suite: str) -> Path:
        """Heavy tuning artifacts: tuning originals, gold models, forget sets and cached trials."""
        return self.suite_dir(suite) / "tuning"

    def tuning_path(self, suite: str) -> Path:
        """The selected configurations of a suite (small, human-readable, committed to git)."""
        return self.root / "tuning" / f"{suite}.yaml"

    def population_plan_path(self, suite: str) -> Path:
        """The population's plan (its members' cache keys, by group), written by the tune stage next to the
        selections and committed with them: the ``population`` stage's DVC input
        (:func:`benchmark.runner.population.write_population_plan`)."""
        return self.root / "tuning" / f"{suite}_population.json"

    def reference_cache_dir(self, suite: str) -> Path:
        """The on-disk cache of the gold references (:mod:`benchmark.runner.reference_cache`)."""
        return self.suite_dir(suite) / "evaluated" / "_reference"

    def results_path(self, suite: str) -> Path:
        return self.root / "results" / f"{suite}.csv"

    @property
    def leaderboard_dir(self) -> Path:
        return self.root / "leaderboards"


class StaleCellError(RuntimeError):
    """A cell's result was produced by other code or inputs than the current ones."""


class StaleArtifactError(StaleCellError):
    """An original or gold model on disk was made from other inputs (params, data) than the current ones."""


def check_artifact(model_path: Path, key: str, command: str) -> dict[str, Any]:
    """The sidecar JSON of ``model_path`` if it exists and holds ``key``; otherwise a one-line
    :class:`StaleArtifactError` naming the artifact and the command that rebuilds it."""
    meta_path = model_path.with_suffix(".json")
    if not model_path.exists() or not meta_path.exists():
        raise StaleArtifactError(f"{model_path}: missing; build it with `{command}` (or `dvc repro`)")
    meta = read_json(meta_path)
    if meta.get("key") != key:
        raise StaleArtifactError(
            f"{model_path}: stale (made from other params or data than the current ones); "
            f"rebuild it with `{command}` (or `dvc repro`)"
        )
    return meta
