"""Stage ``memorize``: per-example memorisation scores, the input of the ``memorized`` protocol.

Feldman & Zhang (2020), "What Neural Networks Memorize and Why": the memorisation of training example i is

    mem(i) = P[f_S(x_i) = y_i | i ∈ S] − P[f_S(x_i) = y_i | i ∉ S],

estimated from ``memorization.models`` models trained (the suite's recipe, seeds ``memorization.seed + j``) on
random halves S_j of the training set (a fresh half per model, drawn from ``[memorization.seed, j]``):
the mean correctness over the models that saw i minus that over the models that did not. Half-size subsets
give each example about M/2 "in" and M/2 "out" models (Feldman & Zhang use 70 % subsets and thousands of
models; with M = 32 the estimate ranks examples, which is all the protocol needs). An example that no model
left out (or none saw) gets score 0.

Each model's correctness vector is cached under ``runs/<suite>/memorization/`` with its key, so an
interrupted stage resumes; ``scores.json`` holds the scores. Suites without a ``memorized`` protocol write
a ``scores.json`` that says so and train nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import ExecutorConfig
from benchmark.models.training import train_model
from benchmark.runner.artifacts import read_json, stable_hash, write_json
from benchmark.runner.executor import Unit, run_stage
from benchmark.runner.suite import SuiteRun


def half_indices(n: int, seed: int, j: int) -> np.ndarray:
    """The random half of ``range(n)`` that memorisation model ``j`` trains on (sorted)."""
    return np.sort(np.random.default_rng([seed, j]).permutation(n)[: n // 2]).astype(np.int64)


def memorization_scores(correct: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``correct``, ``inside``: (M, n) booleans (model j right on / trained on example i) -> mem (n,)."""
    correct = np.asarray(correct, dtype=float)
    inside = np.asarray(inside, dtype=bool)
    n_in, n_out = inside.sum(axis=0), (~inside).sum(axis=0)
    acc_in = np.where(n_in > 0, (correct * inside).sum(axis=0) / np.maximum(n_in, 1), np.nan)
    acc_out = np.where(n_out > 0, (correct * ~inside).sum(axis=0) / np.maximum(n_out, 1), np.nan)
    mem = acc_in - acc_out
    return np.where(np.isfinite(mem), mem, 0.0)


def _model_key(run: SuiteRun, j: int) -> str:
    m = run.suite.memorization
    return stable_hash({"data": run.data_key, "model": run.suite.model, "train": vars(run.suite.recipe),
                        "seed": m.seed, "j": j})  # fmt: skip


def _part_path(run: SuiteRun, j: int) -> Path:
    return run.layout.memorization_path(run.suite.name).parent / f"model{j}.json"


def memorization_unit(run: SuiteRun, unit: Unit) -> int:
    """Train memorisation model j on its half; write its correctness on every training example."""
    j = unit.args["j"]
    correct = _train_one(run, j)
    write_json(_part_path(run, j), {"key": unit.args["key"], "correct": correct.astype(int).tolist()})
    return j


def _train_one(run: SuiteRun, j: int) -> np.ndarray:
    m, snap = run.suite.memorization, run.snapshot
    half = torch.as_tensor(half_indices(run.n_train, m.seed, j)).to(run.device)
    model = train_model(run.make_model(m.seed + j), run.x_train[half], snap.y_train.to(run.device)[half],
                        run.suite.recipe, m.seed + j)  # fmt: skip
    with torch.no_grad():  # run.x_train: the training images on the suite's device
        chunks = [model(run.x_train[i : i + 2048]).argmax(1).cpu() for i in range(0, run.n_train, 2048)]
    pred = torch.cat(chunks)
    return (pred == snap.y_train).numpy()


def needs_memorization(run: SuiteRun) -> bool:
    return any(run.protocol(p).needs_memorization for p in run.suite.protocols)


def estimate_memorization(run: SuiteRun, executor: ExecutorConfig | None = None) -> dict[str, Any]:
    """Train the missing models (through the executor), then write and return ``scores.json``."""
    path = run.layout.memorization_path(run.suite.name)
    m = run.suite.memorization
    if not needs_memorization(run):
        out: dict[str, Any] = {"needed": False, "scores": None}
        write_json(path, out)
        return out
    keys = [_model_key(run, j) for j in range(m.models)]
    key = stable_hash(keys)
    if path.exists() and read_json(path).get("key") == key:
        return read_json(path)

    def done(j: int) -> bool:
        part = _part_path(run, j)
        return part.exists() and read_json(part).get("key") == keys[j]

    units = [Unit("memorization", f"memorization/model{j}", run.suite.name, {"j": j, "key": keys[j]})
             for j in range(m.models) if not done(j)]  # fmt: skip
    desc = f"{run.suite.name}: memorisation models"
    run_stage(run, units, memorization_unit, desc, executor)
    correct = np.zeros((m.models, run.n_train), dtype=bool)
    inside = np.zeros((m.models, run.n_train), dtype=bool)
    for j in range(m.models):
        correct[j] = np.asarray(read_json(_part_path(run, j))["correct"], dtype=bool)
        inside[j, half_indices(run.n_train, m.seed, j)] = True
    scores = memorization_scores(correct, inside)
    out = {"needed": True, "key": key, "models": m.models, "seed": m.seed,
           "scores": [round(float(v), 6) for v in scores]}  # fmt: skip
    write_json(path, out)
    return out


def load_memorization(run: SuiteRun) -> np.ndarray:
    path = run.layout.memorization_path(run.suite.name)
    if not path.exists():
        raise FileNotFoundError(f"{path}: memorisation scores missing; run `unlearn-bench memorize` first")
    scores = read_json(path).get("scores")
    if scores is None:
        raise FileNotFoundError(f"{path}: no scores (written when the suite had no memorized protocol)")
    return np.asarray(scores, dtype=float)
