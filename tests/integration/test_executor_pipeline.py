"""train -> gold -> unlearn on a tiny suite, once in-process and once on a private 2-CPU Ray instance:
every artifact is identical apart from timings and resource peaks, and a re-run submits nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import torch
import yaml

from benchmark.cli import main
from benchmark.config import ExecutorConfig, parse_params
from benchmark.runner.artifacts import Layout, read_json
from benchmark.runner.cells import run_unlearning
from benchmark.runner.executor import ensure_ray
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_gold, train_originals

RAW = {
    "datasets": {"digits": {"source": "digits", "split_seed": 0, "test_fraction": 0.2}},
    "protocols": {
        "random": {"kind": "random", "requests": 2, "fraction": 0.02, "seed": 0},
        "class": {"kind": "class", "requests": 2, "seed": 0},
    },
    "methods": {
        "finetune": {"epochs": [1]},
        "gradient_ascent": {"epochs": [1]},
        "cure_newton": {"iters": [1]},
    },
    "suites": {
        "tiny": {
            "dataset": "digits",
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 4, "batch_size": 64, "lr": 0.01, "weight_decay": 0.001},
            "protocols": ["random", "class"],
            "seeds": [0, 1],
            "methods": ["original", "retrain", "finetune", "gradient_ascent", "cure_newton"],
        }
    },
}
TIMING = {"wall_s", "cpu_s", "peak_rss_mb", "cuda_peak_mb"}  # measured, so they differ between runs


@pytest.fixture(scope="module")
def ray_instance():
    ensure_ray(ExecutorConfig(kind="ray", num_cpus=2, min_units=1))
    yield
    ray.shutdown()


def _pipeline(root: Path, executor: ExecutorConfig) -> dict[str, int]:
    params = parse_params(RAW)
    fetch_dataset(params, "digits", Layout(root))
    run = open_suite(params, "tiny", root)
    write_protocols(run)
    trained = train_originals(run, executor)
    retrained = train_gold(run, executor)
    cells = run_unlearning(run, executor=executor)
    return {"originals": trained, "gold": retrained, **cells}


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@pytest.mark.integration
def test_ray_and_local_write_identical_artifacts(ray_instance, tmp_path):
    local = _pipeline(tmp_path / "local", ExecutorConfig())
    remote = _pipeline(tmp_path / "ray", ExecutorConfig(kind="ray", num_cpus=2, min_units=1))
    assert local == remote == {"originals": 2, "gold": 8, "run": 20, "cached": 0}

    runs = {name: tmp_path / name / "runs" / "tiny" for name in ("local", "ray")}
    files = sorted(p.relative_to(runs["local"]) for p in runs["local"].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(runs["ray"]) for p in runs["ray"].rglob("*") if p.is_file())
    assert (
        sum(f.suffix == ".pt" for f in files) == 2 + 8 + 20 * 2
    )  # originals, gold, one per step of each cell
    for rel in files:
        a, b = runs["local"] / rel, runs["ray"] / rel
        if rel.suffix == ".json":
            assert _strip(read_json(a)) == _strip(read_json(b)), rel
        elif rel.suffix == ".pt":
            sa, sb = (torch.load(p, weights_only=True) for p in (a, b))
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), rel
        else:
            assert a.read_bytes() == b.read_bytes(), rel
    results = [read_json(p) for p in runs["ray"].glob("cells/**/result.json")]
    assert len(results) == 20 and all(r["status"] == "ok" for res in results for r in res["requests"])

    # finished work is detected before submission: a second pass submits nothing
    again = _pipeline(tmp_path / "ray", ExecutorConfig(kind="ray", num_cpus=2, min_units=1))
    assert again == {"originals": 0, "gold": 0, "run": 0, "cached": 20}


@pytest.mark.integration
def test_cells_judged_as_ray_units_give_the_table_judged_in_process(ray_instance, tmp_path):
    """evaluate: the gold references and the cells judged as Ray units (benchmark.runner.evaluate_units)
    fill the caches from which the stage's table is byte-identical (full precision) to a serial evaluation
    from scratch; a second pass submits nothing."""
    from benchmark.runner.evaluate import EvalConfig, evaluate_suite_counted
    from benchmark.runner.evaluate_units import Judged, judge_pending

    ray_cfg = ExecutorConfig(kind="ray", num_cpus=2, min_units=1)
    _pipeline(tmp_path, ray_cfg)
    run = open_suite(parse_params(RAW), "tiny", tmp_path)
    cfg = EvalConfig(relearn_max_steps=10)
    scratch, counts = evaluate_suite_counted(run, cfg, use_cache=False)  # in this process, no cache
    assert counts == {"judged": 20, "cached": 0}
    # 2 protocols x 2 seeds x 2 steps gold references, and the relearn time of each final-step gold model
    assert judge_pending(run, ray_cfg, cfg) == Judged(cells=20, references_read=0, references_computed=8 + 4)
    table, counts = evaluate_suite_counted(run, cfg)
    assert counts == {"judged": 0, "cached": 20, "references_read": 0, "references_computed": 0}
    assert table.to_csv(index=False) == scratch.to_csv(index=False)
    assert judge_pending(run, ray_cfg, cfg) == Judged()


@pytest.mark.integration
def test_cli_runs_a_stage_on_ray_and_resumes_only_missing_cells(ray_instance, tmp_path, capsys):
    _pipeline(tmp_path, ExecutorConfig())
    raw = {**RAW, "executor": {"kind": "local", "min_units": 1}}  # one pending cell: still on Ray below
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    victim = next((tmp_path / "runs" / "tiny" / "cells" / "class").glob("finetune*/seed1/result.json"))
    before = _strip(read_json(victim))
    victim.unlink()
    base = ["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    assert main([*base, "unlearn", "--executor", "ray", "--num-cpus", "2"]) == 0
    assert main([*base, "gold", "--executor", "ray"]) == 0
    out = capsys.readouterr().out
    assert "tiny: unlearn: 1 cells run, 19 reused" in out and "tiny: gold: 0 retrained" in out, out
    assert _strip(read_json(victim)) == before  # recomputed on a Ray worker: the same result


@pytest.mark.integration
def test_a_few_pending_units_run_in_process_without_starting_ray(tmp_path):
    """``min_units``: a stage with fewer pending units runs them in-process (no Ray start-up for a few)."""
    if ray.is_initialized():
        ray.shutdown()
    params = parse_params({**RAW, "executor": {"kind": "ray", "num_cpus": 2, "min_units": 16}})
    fetch_dataset(params, "digits", Layout(tmp_path))
    run = open_suite(params, "tiny", tmp_path)
    write_protocols(run)
    assert 0 < train_originals(run) < 16 and not ray.is_initialized()  # fewer than 16 units: in-process
