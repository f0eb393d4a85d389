"""Stages ``train`` (originals) and ``gold`` (retrains on D minus requests 1..k, every step and seed).

Both skip any model whose sidecar JSON holds the same cache key, so an interrupted stage resumes
where it stopped and a re-run with unchanged inputs trains nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.models.training import evaluate_accuracy, train_model
from benchmark.runner.artifacts import read_json, save_state, write_json
from benchmark.runner.suite import SuiteRun


def _is_done(model_path: Path, key: str) -> bool:
    meta = model_path.with_suffix(".json")
    return model_path.exists() and meta.exists() and read_json(meta).get("key") == key


def train_originals(run: SuiteRun) -> int:
    """Train one original model per seed on the full training set (and one per seed on the flipped labels
    of each ``mislabeled`` protocol). Returns how many were trained."""
    s, snap = run.suite, run.snapshot
    trained = 0
    for variant, seed in tqdm(run.original_jobs(), desc=f"{s.name}: originals", unit="model", disable=None):
        path, key = run.original_path(seed, variant), run.original_key(seed, variant)
        if _is_done(path, key):
            continue
        y = run.train_labels(variant, seed)
        t0 = time.perf_counter()
        model = train_model(run.make_model(seed), snap.x_train, y, s.recipe, seed, desc=f"seed {seed}")
        wall = time.perf_counter() - t0
        save_state(path, model)
        write_json(
            path.with_suffix(".json"),
            {
                "key": key,
                "seed": seed,
                "variant": variant,
                "wall_s": wall,
                "n_params": run.n_params,
                "train_acc": evaluate_accuracy(model, snap.x_train, y),
                "test_acc": evaluate_accuracy(model, snap.x_test, snap.y_test),
            },
        )
        trained += 1
    return trained


def train_gold(run: SuiteRun) -> int:
    """Retrain from scratch (the originals' recipe and seed) on D_r(k) for every protocol, seed, step."""
    s = run.suite
    jobs = [(p, seed, k) for p in s.protocols for seed in s.seeds for k in run.steps(p)]
    trained = 0
    bar = tqdm(jobs, desc=f"{s.name}: gold retrains", unit="model", disable=None)
    for protocol, seed, step in bar:
        path, key = run.layout.gold_path(s.name, protocol, seed, step), run.gold_key(protocol, seed, step)
        if _is_done(path, key):
            continue
        bar.set_postfix(protocol=protocol, seed=seed, step=step)
        retain = run.request(protocol, seed, step).retain
        t0 = time.perf_counter()
        model = train_model(run.make_model(seed), retain.x, retain.y, s.recipe, seed)
        wall = time.perf_counter() - t0
        save_state(path, model)
        write_json(
            path.with_suffix(".json"),
            {
                "key": key,
                "protocol": protocol,
                "seed": seed,
                "step": step,
                "wall_s": wall,
                "n_retain": len(retain),
                "epochs_equiv": s.recipe.epochs * len(retain) / run.n_train,
            },
        )
        trained += 1
    return trained
