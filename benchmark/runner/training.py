"""Stages ``train`` (originals) and ``gold`` (retrains on D minus requests 1..k, every step and seed).

Both skip any model whose sidecar JSON holds the same cache key, so an interrupted stage resumes
where it stopped and a re-run with unchanged inputs trains nothing. The models still to train are
units handed to the configured executor (:mod:`benchmark.runner.executor`); each unit writes its own
model and sidecar atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmark.config import ExecutorConfig
from benchmark.models.training import evaluate_accuracy, train_model
from benchmark.runner.artifacts import read_json, save_state, write_json
from benchmark.runner.executor import Unit, run_stage
from benchmark.runner.suite import SuiteRun


def _is_done(model_path: Path, key: str) -> bool:
    meta = model_path.with_suffix(".json")
    return model_path.exists() and meta.exists() and read_json(meta).get("key") == key


def original_units(run: SuiteRun) -> list[Unit]:
    """One unit per original model missing or stale: per seed, and per seed and ``mislabeled`` protocol."""
    units = []
    for variant, seed in run.original_jobs():
        key = run.original_key(seed, variant)
        if not _is_done(run.original_path(seed, variant), key):
            name = f"original/{variant}/seed{seed}" if variant else f"original/seed{seed}"
            args = {"seed": seed, "variant": variant, "key": key}
            units.append(Unit("original", name, run.suite.name, args))
    return units


def train_original(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """Train one original model on the full training set (flipped labels for a ``mislabeled`` variant);
    write it and its sidecar JSON."""
    s, snap, seed, variant = run.suite, run.snapshot, unit.args["seed"], unit.args.get("variant")
    path = run.original_path(seed, variant)
    y = run.train_labels(variant, seed).to(run.device)  # run.x_train: the images on the suite's device
    t0 = time.perf_counter()
    model = train_model(run.make_model(seed), run.x_train, y, s.recipe, seed, desc=f"seed {seed}")
    wall = time.perf_counter() - t0
    save_state(path, model)
    meta = {
        "key": unit.args["key"],
        "seed": seed,
        "variant": variant,
        "device": str(run.device),
        "wall_s": wall,
        "n_params": run.n_params,
        "train_acc": evaluate_accuracy(model, run.x_train, y),
        "test_acc": evaluate_accuracy(model, snap.x_test.to(run.device), snap.y_test.to(run.device)),
    }
    write_json(path.with_suffix(".json"), meta)
    return meta


def train_originals(run: SuiteRun, executor: ExecutorConfig | None = None) -> int:
    """Train every missing original model. Returns how many were trained."""
    units = original_units(run)
    desc = f"{run.suite.name}: originals"
    return len(run_stage(run, units, train_original, desc, executor))


def gold_units(run: SuiteRun) -> list[Unit]:
    """One unit per (protocol, seed, step) whose gold model is missing or stale."""
    s, units = run.suite, []
    for protocol in s.protocols:
        for seed in s.seeds:
            for step in run.steps(protocol):
                key = run.gold_key(protocol, seed, step)
                if not _is_done(run.layout.gold_path(s.name, protocol, seed, step), key):
                    args = {"protocol": protocol, "seed": seed, "step": step, "key": key}
                    units.append(Unit("gold", f"gold/{protocol}/seed{seed}/step{step}", s.name, args))
    return units


def train_gold_unit(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """Retrain from scratch (the original's recipe and seed) on D_r(k); write the model and its sidecar."""
    s = run.suite
    protocol, seed, step = unit.args["protocol"], unit.args["seed"], unit.args["step"]
    path = run.layout.gold_path(s.name, protocol, seed, step)
    retain = run.request(protocol, seed, step).retain
    t0 = time.perf_counter()
    model = train_model(run.make_model(seed), retain.x, retain.y, s.recipe, seed)
    wall = time.perf_counter() - t0
    save_state(path, model)
    meta = {
        "key": unit.args["key"],
        "protocol": protocol,
        "seed": seed,
        "step": step,
        "device": str(run.device),
        "wall_s": wall,
        "n_retain": len(retain),
        "epochs_equiv": s.recipe.epochs * len(retain) / run.n_train,
    }
    write_json(path.with_suffix(".json"), meta)
    return meta


def train_gold(run: SuiteRun, executor: ExecutorConfig | None = None) -> int:
    """Retrain from scratch (the originals' recipe and seed) on D_r(k) for every protocol, seed, step."""
    units = gold_units(run)
    desc = f"{run.suite.name}: gold retrains"
    return len(run_stage(run, units, train_gold_unit, desc, executor))
