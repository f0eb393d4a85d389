"""The data hyperparameter tuning sees: a validation split, tuning forget sets, tuning originals and golds.

Nothing here reads the test split, and nothing an evaluation cell is judged on is reused:

* **Validation split.** ``validation_fraction`` of the training set, stratified by class and seeded by
  ``validation_seed`` (scikit-learn's ``train_test_split``), is held out; T = train − validation is the
  tuning training set. Accuracy that the evaluation measures on the test set is measured on it instead.
* **Tuning forget sets** are drawn by the same protocol code (:func:`benchmark.data.protocols.make_requests`)
  with the tuning seeds, from T, and share no example with any evaluation forget set E of the suite and
  protocol (the union over its seeds, and the population's):

  - ``random``: drawn from T − E, the per-request share rescaled so a request removes
    ``round(fraction · |T|)`` samples;
  - ``memorized``: the most memorised examples of T − E (the pool share rescaled the same way): with the
    protocol's ``tuning_reserve``, the odd ranks of the memorisation ranking's top that the evaluation
    never draws, so the tuning forget sets are as memorised as the evaluation's;
  - ``mislabeled``: the tuning corruption flips only labels of T − C (C: every evaluation corrupted set),
    so the tuning requests delete none of the evaluation's;
  - ``class``: a request deletes whole classes, so classes may coincide with the evaluation's; the
    models (tuning seeds, trained on T), the seeds and the splits differ.
* **Tuning originals** (one per tuning seed; one per seed and label-corrupting protocol) train on T with the
  suite's recipe; **tuning golds** per step on T minus requests 1..k.

:class:`TrainOnlySnapshot` is the only snapshot the tuning code path holds: its ``x_test`` / ``y_test``
raise :class:`~benchmark.plugins.guard.TestDataAccessError`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.config import ProtocolConfig, TuningConfig
from benchmark.data.protocols import corrupt_labels, cumulative, make_requests, save_requests
from benchmark.data.snapshot import Snapshot
from benchmark.metrics.accuracy import accuracy_from_probs, predict_proba
from benchmark.models.training import train_model
from benchmark.models.zoo import build_model
from benchmark.plugins.guard import TestDataAccessError
from benchmark.runner.artifacts import load_state, read_json, save_state, stable_hash, write_json
from benchmark.runner.executor import Unit
from benchmark.runner.suite import POP, SuiteRun
from benchmark.unlearners.base import DataView, Request

Corruption = tuple[np.ndarray, np.ndarray]  # flipped sample indices, their training labels


class TrainOnlySnapshot:
    """A view of a :class:`Snapshot` without its test split: reading ``x_test`` / ``y_test`` raises."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.name = snapshot.name
        self.x_train = snapshot.x_train
        self.y_train = snapshot.y_train
        self.num_classes = int(snapshot.num_classes)
        self.input_shape = snapshot.input_shape
        self.manifest = snapshot.manifest

    @property
    def x_test(self) -> torch.Tensor:
        raise TestDataAccessError("TrainOnlySnapshot.x_test: hyperparameter tuning must never read test data")

    @property
    def y_test(self) -> torch.Tensor:
        raise TestDataAccessError("TrainOnlySnapshot.y_test: hyperparameter tuning must never read test data")


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tuning train indices T, validation indices V): a stratified, seeded split of the training set."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    n_val, n_classes = int(np.ceil(fraction * len(labels))), len(np.unique(labels))
    if n_val < n_classes:
        raise ValueError(
            f"tuning.validation_fraction: {fraction:g} of {len(labels)} training samples is {n_val} "
            f"validation samples, fewer than the {n_classes} classes a stratified split needs; raise it"
        )
    t, v = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(t).astype(np.int64), np.sort(v).astype(np.int64)


def _rescaled(cfg: ProtocolConfig, n_tune: int, n_pool: int) -> ProtocolConfig:
    """``cfg`` with its shares of D rescaled from T to a pool of ``n_pool`` samples of T, so the sizes in
    samples match those a draw from all of T would have."""
    r = n_tune / n_pool
    return dataclasses.replace(
        cfg,
        fraction=None if cfg.fraction is None else cfg.fraction * r,
        pool=None if cfg.pool is None else min(0.99, cfg.pool * r),
        corrupt_fraction=None if cfg.corrupt_fraction is None else min(0.99, cfg.corrupt_fraction * r),
        tuning_reserve=False,  # the top of T − E: the ranks the evaluation left to tuning (protocols.py)
    )


class TuningData:
    """Split, forget sets, labels, models and cache keys of a suite's tuning (see the module docstring)."""

    def __init__(self, run: SuiteRun, cfg: TuningConfig) -> None:
        self.run, self.cfg = run, cfg
        self.snapshot = TrainOnlySnapshot(run.snapshot)
        y = self.snapshot.y_train.numpy()
        self.labels = y
        self.train_idx, self.val_idx = validation_split(y, cfg.validation_fraction, cfg.validation_seed)
        self.dir = run.layout.tuning_dir(run.suite.name)

    # --- keys ----------------------------------------------------------------------------------------------
    @functools.cached_property
    def split_key(self) -> str:
        train = stable_hash(self.train_idx.tolist())
        return stable_hash({"data": self.run.data_key, "fraction": self.cfg.validation_fraction,
                            "seed": self.cfg.validation_seed, "train": train})  # fmt: skip

    @property
    def n_train(self) -> int:
        return len(self.train_idx)

    # --- forget sets --------------------------------------------------------------------------------------
    @functools.cache  # noqa: B019  (one TuningData per suite and process)
    def evaluation_forget(self, protocol: str) -> np.ndarray:
        """Every sample some evaluation forget set (any seed, the population's) of ``protocol`` deletes,
        plus every sample an evaluation corruption flips."""
        run = self.run
        fids: list[int | str] = list(run.suite.seeds)
        pop = run.suite.population
        if pop is not None and protocol in pop.protocols:
            fids.append(POP)
        parts = [np.zeros(0, dtype=np.int64)]
        for fid in fids:
            reqs = run.requests(protocol, fid)
            parts.append(cumulative(reqs, len(reqs)))
            bad = run.corruption(protocol, fid)
            if bad is not None:
                parts.append(bad[0])
        return np.unique(np.concatenate(parts))

    @functools.cache  # noqa: B019
    def _draw(self, protocol: str, seed: int) -> tuple[list[np.ndarray], Corruption | None]:
        cfg = self.run.protocol(protocol)
        classes = self.snapshot.num_classes
        if cfg.kind == "class":
            pool = self.train_idx
        else:
            pool = np.setdiff1d(self.train_idx, self.evaluation_forget(protocol), assume_unique=True)
            cfg = _rescaled(cfg, self.n_train, len(pool))
        memo = None
        if cfg.needs_memorization:
            from benchmark.runner.memorization import load_memorization

            memo = load_memorization(self.run)[pool]
        local = make_requests(cfg, self.labels[pool], seed, memorization=memo, num_classes=classes)
        reqs = [pool[r] for r in local]
        bad = None
        if cfg.corrupts_labels:
            idx, new = corrupt_labels(cfg, self.labels[pool], seed, classes)
            bad = (pool[idx], new)
        return reqs, bad

    def requests(self, protocol: str, seed: int) -> list[np.ndarray]:
        """The K tuning forget sets of ``protocol`` and tuning seed ``seed`` (indices into the train set)."""
        return self._draw(protocol, seed)[0]

    def corruption(self, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        return self._draw(protocol, seed)[1] if self.run.variant(protocol) else None

    def write_forget_sets(self) -> list[Path]:
        """The tuning forget sets as JSON under ``runs/<suite>/tuning/protocols`` (for inspection)."""
        out = []
        for protocol in self.run.suite.protocols:
            for seed in self.cfg.seeds:
                path = self.dir / "protocols" / f"{protocol}_seed{seed}.json"
                save_requests(path, self.requests(protocol, seed), self.run.protocol(protocol), seed,
                              self.labels, corrupted=self.corruption(protocol, seed))  # fmt: skip
                out.append(path)
        return out

    @functools.cache  # noqa: B019
    def train_labels(self, protocol: str | None, seed: int) -> torch.Tensor:
        y = self.snapshot.y_train
        bad = self.corruption(protocol, seed) if protocol is not None else None
        if bad is None:
            return y
        y = y.clone()
        y[torch.as_tensor(bad[0])] = torch.as_tensor(bad[1])
        return y

    # --- views ---------------------------------------------------------------------------------------------
    def view(self, indices: np.ndarray, labels: torch.Tensor) -> DataView:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return DataView(self.snapshot.x_train[idx], labels[idx], idx)

    def retain(self, protocol: str, seed: int, step: int) -> np.ndarray:
        gone = cumulative(self.requests(protocol, seed), step)
        return np.setdiff1d(self.train_idx, gone, assume_unique=True)

    def request(self, protocol: str, seed: int, step: int) -> Request:
        reqs, y = self.requests(protocol, seed), self.train_labels(protocol, seed)
        return Request(
            step=step,
            forget=self.view(reqs[step - 1], y),
            forget_all=self.view(cumulative(reqs, step), y),
            retain=self.view(self.retain(protocol, seed, step), y),
            num_classes=self.snapshot.num_classes,
        )

    def make_model(self, seed: int) -> nn.Module:
        return build_model(self.run.suite.model, self.snapshot.input_shape, self.snapshot.num_classes, seed)

    # --- originals and golds ------------------------------------------------------------------------------
    def original_path(self, seed: int, protocol: str | None = None) -> Path:
        variant = self.run.variant(protocol)
        base = self.dir / "originals"
        return (base / variant if variant else base) / f"seed{seed}.pt"

    def original_key(self, seed: int, protocol: str | None = None) -> str:
        key: dict[str, Any] = {"split": self.split_key, "model": self.run.suite.model,
                               "train": vars(self.run.suite.recipe), "seed": seed}  # fmt: skip
        bad = self.corruption(protocol, seed) if protocol is not None and self.run.variant(protocol) else None
        if bad is not None:
            key["labels"] = stable_hash([bad[0].tolist(), bad[1].tolist()])
        return stable_hash(key)

    def gold_path(self, protocol: str, seed: int, step: int) -> Path:
        return self.dir / "gold" / protocol / f"seed{seed}" / f"step{step}.pt"

    def gold_key(self, protocol: str, seed: int, step: int) -> str:
        forget = cumulative(self.requests(protocol, seed), step)
        return stable_hash({"original": self.original_key(seed, protocol), "protocol": protocol,
                            "step": step, "forget": stable_hash(forget.tolist())})  # fmt: skip

    def forget_key(self, protocol: str) -> str:
        return stable_hash([[r.tolist() for r in self.requests(protocol, s)] for s in self.cfg.seeds])

    def load_original(self, seed: int, protocol: str) -> nn.Module:
        return load_state(self.original_path(seed, protocol), self.make_model(seed))

    def load_gold(self, protocol: str, seed: int, step: int) -> nn.Module:
        return load_state(self.gold_path(protocol, seed, step), self.make_model(seed))

    # --- accuracies (validation in place of test) ---------------------------------------------------------
    def accuracies(self, model: nn.Module, protocol: str, seed: int, step: int) -> tuple[float, float, float]:
        """(forget, retain, validation) accuracy: forget / retain with the labels the models trained on,
        validation with the true labels (never flipped: the tuning corruption stays inside T)."""
        y = self.train_labels(protocol, seed)
        forget = cumulative(self.requests(protocol, seed), step)
        retain = self.retain(protocol, seed, step)
        x = self.snapshot.x_train
        probs = predict_proba(model, x)
        return (
            accuracy_from_probs(probs[forget], y[forget]),
            accuracy_from_probs(probs[retain], y[retain]),
            accuracy_from_probs(probs[self.val_idx], self.snapshot.y_train[self.val_idx]),
        )

    @functools.cache  # noqa: B019
    def gold_accuracies(self, protocol: str, seed: int, step: int) -> tuple[float, float, float]:
        return self.accuracies(self.load_gold(protocol, seed, step), protocol, seed, step)


_DATA: dict[int, TuningData] = {}


def tuning_data(run: SuiteRun) -> TuningData:
    """The suite's :class:`TuningData`, built once per :class:`SuiteRun` (and process)."""
    if run.params.tuning is None:
        raise ValueError(f"suite {run.suite.name}: params.yaml has no tuning: section")
    if id(run) not in _DATA or _DATA[id(run)].run is not run:
        if len(_DATA) >= 4:
            _DATA.clear()
        _DATA[id(run)] = TuningData(run, run.params.tuning)
    return _DATA[id(run)]


def _is_done(path: Path, key: str) -> bool:
    meta = path.with_suffix(".json")
    return path.exists() and meta.exists() and read_json(meta).get("key") == key


def tuning_model_units(run: SuiteRun) -> tuple[list[Unit], list[Unit]]:
    """(originals, golds) of the tuning seeds still missing or stale, as executor units."""
    td = tuning_data(run)
    s, originals, golds = run.suite, [], []
    variants = sorted({run.variant(p) for p in s.protocols}, key=str)
    for variant in variants:
        for seed in td.cfg.seeds:
            key = td.original_key(seed, variant)
            if not _is_done(td.original_path(seed, variant), key):
                args = {"seed": seed, "protocol": variant, "key": key}
                originals.append(Unit("tune-original", f"tuning/original/{variant}/seed{seed}", s.name, args))
    for protocol in s.protocols:
        for seed in td.cfg.seeds:
            for step in run.steps(protocol):
                key = td.gold_key(protocol, seed, step)
                if not _is_done(td.gold_path(protocol, seed, step), key):
                    args = {"protocol": protocol, "seed": seed, "step": step, "key": key}
                    name = f"tuning/gold/{protocol}/seed{seed}/step{step}"
                    golds.append(Unit("tune-gold", name, s.name, args))
    return originals, golds


def train_tuning_original(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """One tuning original: the suite's recipe on T (flipped labels for a ``mislabeled`` variant)."""
    td = tuning_data(run)
    seed, protocol = unit.args["seed"], unit.args["protocol"]
    y = td.train_labels(protocol, seed)
    idx = torch.as_tensor(td.train_idx)
    t0 = time.perf_counter()
    model = train_model(td.make_model(seed), td.snapshot.x_train[idx], y[idx], run.suite.recipe, seed)
    path = td.original_path(seed, protocol)
    save_state(path, model)
    meta = {"key": unit.args["key"], "seed": seed, "variant": protocol, "wall_s": time.perf_counter() - t0,
            "n_train": td.n_train}  # fmt: skip
    write_json(path.with_suffix(".json"), meta)
    return meta


def train_tuning_gold(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """One tuning gold model: the original's recipe and seed on T minus tuning requests 1..k."""
    td = tuning_data(run)
    protocol, seed, step = unit.args["protocol"], unit.args["seed"], unit.args["step"]
    retain = td.request(protocol, seed, step).retain
    t0 = time.perf_counter()
    model = train_model(td.make_model(seed), retain.x, retain.y, run.suite.recipe, seed)
    path = td.gold_path(protocol, seed, step)
    save_state(path, model)
    meta = {"key": unit.args["key"], "protocol": protocol, "seed": seed, "step": step,
            "wall_s": time.perf_counter() - t0, "n_retain": len(retain)}  # fmt: skip
    write_json(path.with_suffix(".json"), meta)
    return meta
