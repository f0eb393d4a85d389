"""A cell's cache key holds what its result depends on: its own forget sets, not the suite's lists."""

from __future__ import annotations

import copy

import numpy as np

from benchmark.config import parse_params
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import Cell, cell_key
from benchmark.runner.memorization import estimate_memorization
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_originals

RAW = {
    "datasets": {"digits": {"source": "digits"}},
    "executor": {"kind": "local"},
    "protocols": {
        "random": {"kind": "random", "requests": 2, "fraction": 0.02},
        "class": {"kind": "class", "requests": 2},
        "memorized": {"kind": "memorized", "requests": 2, "fraction": 0.01, "pool": 0.05},
    },
    "suites": {
        "t": {
            "dataset": "digits",
            "model": {"arch": "logreg"},
            "train": {"epochs": 1, "batch_size": 256, "lr": 0.01},
            "protocols": ["random", "memorized"],
            "seeds": [0],
            "methods": ["original"],
            "memorization": {"models": 2, "seed": 1000},
        }
    },
}


def _prepared(raw: dict, root):  # noqa: ANN001, ANN202
    params = parse_params(copy.deepcopy(raw))
    run = open_suite(params, "t", root)
    estimate_memorization(run)
    write_protocols(run)
    train_originals(run)
    return open_suite(params, "t", root)  # a fresh run: SuiteRun caches the forget sets it read


def _keys(run) -> dict[str, str]:  # noqa: ANN001
    return {p: cell_key(run, Cell(p, 0, "original", {}, "original")) for p in ("random", "memorized")}


def test_new_memorisation_scores_change_the_memorized_cells_key(tmp_path):
    """Another memorisation seed draws other `memorized` forget sets under the same protocol settings: the
    cell must run again (its key used to hold the protocol's settings only, so the old result was reused
    and judged against the new forget sets). `random` does not read the scores: its key stays."""
    fetch_dataset(parse_params(copy.deepcopy(RAW)), "digits", Layout(tmp_path))
    before = _prepared(RAW, tmp_path)
    forget = np.concatenate(before.requests("memorized", 0))
    keys = _keys(before)
    raw = copy.deepcopy(RAW)
    raw["suites"]["t"]["memorization"]["seed"] = 2000
    after = _prepared(raw, tmp_path)
    assert not np.array_equal(np.concatenate(after.requests("memorized", 0)), forget)
    assert _keys(after)["memorized"] != keys["memorized"]
    assert _keys(after)["random"] == keys["random"]


def test_adding_a_protocol_or_a_seed_keeps_the_other_cells_cached(tmp_path):
    fetch_dataset(parse_params(copy.deepcopy(RAW)), "digits", Layout(tmp_path))
    keys = _keys(_prepared(RAW, tmp_path))
    raw = copy.deepcopy(RAW)
    raw["suites"]["t"]["protocols"] = ["random", "class", "memorized"]
    raw["suites"]["t"]["seeds"] = [0, 1]
    assert _keys(_prepared(raw, tmp_path)) == keys
    raw["suites"]["t"]["train"]["lr"] = 0.02  # another recipe: other originals, other cells
    changed = _keys(_prepared(raw, tmp_path))
    assert all(changed[p] != keys[p] for p in keys)
