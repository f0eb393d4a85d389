"""The grid on Ray vs in-process (issue 14, item 4): the default digits-mlp suite's gold + unlearn units.

One run measures, on the same machine:

* ``test_ray_startup``: ``ray.init`` of a private 2-CPU instance plus a first no-op task on each worker
  (worker processes start and import torch and this package): what every DVC stage run on Ray pays once;
* ``test_grid[KIND]``: the gold stage then the unlearn stage of the default ``digits-mlp`` suite (its model,
  recipe, method defaults and protocols ``class`` and ``random``; seed 0: 10 gold + 16 cell units) from
  originals already trained:

  - ``local``: in-process, after a warm-up round (the cells' sandbox child already running);
  - ``ray-cold``: on a 2-CPU instance started (untimed) just before: each worker imports torch, opens the
    suite and starts its own sandbox child inside the timed grid, as in a DVC stage (minus ``ray.init``);
  - ``ray-warm``: the same instance after a warm-up round: the steady state of a long stage.

The ratios (``tests/benchmarks/targets.yaml``, scripts/perf_gate.py) are ``grid[ray-*] / grid[local]`` (the
inverse of the speedup on 2 cores) and ``startup / grid[local]``; never absolute seconds. Each round starts
from a fresh copy of the prepared inputs, so nothing is cached between rounds. In the normal test run
(``--benchmark-disable``) each function runs once as a smoke test.
"""

from __future__ import annotations

import copy
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import ray
import yaml

from benchmark.config import ExecutorConfig, parse_params
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import expand_cells, run_unlearning
from benchmark.runner.executor import Unit, ensure_ray, run_units
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import SuiteRun, open_suite
from benchmark.runner.training import gold_units, train_gold, train_originals

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module

ROOT = Path(__file__).resolve().parents[2]
SUITE = "digits-mlp"
# the first-order baselines and the budget CuReNU solvers of the default suite: cells of comparable cost (the
# converged Krylov default, influence and the Fisher method cost minutes here and would time one cell)
METHODS = ["finetune", "gradient_ascent", "neggrad_plus", "random_label", "salun", "l1_sparse",
           "bad_teacher", "cure_newton_stochastic"]  # fmt: skip
PROTOCOLS = ["class", "random"]
RAY = ExecutorConfig(kind="ray", num_cpus=2, max_retries=0, min_units=1)
EXECUTORS = {"local": ExecutorConfig(), "ray-cold": RAY, "ray-warm": RAY}


def _params():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw = copy.deepcopy(raw)
    suite = raw["suites"][SUITE]
    suite.update(seeds=[0], protocols=PROTOCOLS, methods=METHODS)
    suite.pop("population", None)
    raw["suites"] = {SUITE: suite}
    raw["datasets"] = {suite["dataset"]: raw["datasets"][suite["dataset"]]}
    raw["executor"] = {"kind": "local"}
    return parse_params(raw)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """Dataset, forget sets and the originals (the train stage, untimed) under one root, copied per round."""
    root = tmp_path_factory.mktemp("bench_executor")
    params = _params()
    fetch_dataset(params, params.suites[SUITE].dataset, Layout(root))
    run = open_suite(params, SUITE, root)
    write_protocols(run)
    train_originals(run)
    return root


@pytest.fixture(scope="module")
def no_ray_yet():
    if ray.is_initialized():  # another module's instance: measure a cold start of our own
        ray.shutdown()
    yield
    ray.shutdown()


def _fresh(prepared: Path) -> SuiteRun:
    root = Path(tempfile.mkdtemp(prefix="bench_grid_", dir=prepared.parent))
    shutil.copytree(prepared, root, dirs_exist_ok=True)
    return open_suite(_params(), SUITE, root)


def _grid(run: SuiteRun, kind: str) -> dict[str, int]:
    gold = train_gold(run, EXECUTORS[kind])
    cells = run_unlearning(run, executor=EXECUTORS[kind])
    return {"gold": gold, **cells}


def _noop(run, unit: Unit) -> int:
    return unit.args["x"]


def _start_ray() -> list[int]:
    ensure_ray(RAY)
    units = [Unit("noop", f"w{i}", "none", {"x": i}) for i in range(2)]
    return [r.value for r in run_units(units, _noop, executor=RAY, desc="ray start-up")]


@pytest.mark.benchmark(group="executor: digits-mlp gold + unlearn on 2 CPUs")
def test_ray_startup(benchmark, no_ray_yet):
    def setup():
        ray.shutdown()
        return (), {}

    assert benchmark.pedantic(_start_ray, setup=setup, rounds=1, iterations=1) == [0, 1]
    assert ray.is_initialized()  # left running: test_grid[ray] measures a warm instance


@pytest.mark.benchmark(group="executor: digits-mlp gold + unlearn on 2 CPUs")
@pytest.mark.parametrize("kind", ["local", "ray-cold", "ray-warm"])
def test_grid(benchmark, kind, prepared, no_ray_yet):
    def setup():
        if kind == "ray-cold":
            ray.shutdown()
            ensure_ray(RAY)
        return (_fresh(prepared), kind), {}

    probe = open_suite(_params(), SUITE, prepared)
    n_gold, n_cells = len(gold_units(probe)), len(expand_cells(probe))
    assert n_gold + n_cells >= 16  # the grid size
    warm = 0 if kind == "ray-cold" else 1
    out = benchmark.pedantic(_grid, setup=setup, rounds=1, iterations=1, warmup_rounds=warm)
    assert out == {"gold": n_gold, "run": n_cells, "cached": 0}
