"""Replays the bad configs and runtime faults of issue 12 on a tiny suite (digits, logreg, 2 requests).

Every bad ``params.yaml`` must be rejected by ``unlearn-bench validate`` (exit 2) in one line naming the
dotted key; every runtime fault must end as a one-line error or an honest row (never a silently wrong
result); a method that never yields is killed within budget + 5 s while the other cells complete.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.cli import main
from benchmark.config import parse_params
from benchmark.leaderboard import read_results, summarise
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import Cell, cell_dir, expand_cells, needs_retry, run_cell, run_unlearning
from benchmark.runner.evaluate import evaluate_suite
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_gold, train_originals
from benchmark.unlearners.base import _REGISTRY, Unlearner, register_unlearner

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "datasets": {"digits": {"source": "digits", "split_seed": 0, "test_fraction": 0.2}},
    "protocols": {
        "random": {"kind": "random", "requests": 2, "fraction": 0.02},
        "class": {"kind": "class", "requests": 2},
        "memorized": {"kind": "memorized", "requests": 2, "fraction": 0.01, "pool": 0.03},
        "mislabeled": {"kind": "mislabeled", "requests": 2, "corrupt_fraction": 0.04},
    },
    "methods": {"finetune": {"epochs": [1]}},
    "suites": {
        "t": {
            "dataset": "digits",
            "model": {"arch": "mlp", "hidden": [8], "activation": "relu"},
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "weight_decay": 0.001, "optimizer": "adam"},
            "protocols": ["random", "class"],
            "seeds": [0, 1],
            "methods": ["original", "finetune"],
            "budget_s": 60,
            "memorization": {"models": 4, "seed": 1},
        }
    },
    "executor": {"kind": "local"},
}


def S(**kw):
    return lambda r: r["suites"]["t"].update(kw)


def T(**kw):
    return lambda r: r["suites"]["t"]["train"].update(kw)


def M(**kw):
    return lambda r: r["suites"]["t"]["model"].update(kw)


def P(name, **kw):
    return lambda r: r["protocols"][name].update(kw)


def D(**kw):
    return lambda r: r["datasets"]["digits"].update(kw)


BAD_CONFIGS = [
    (T(epochs=0), "suites.t.train.epochs"),
    (T(epochs=-3), "suites.t.train.epochs"),
    (P("class", classes_per_request=0), "protocols.class.classes_per_request"),
    (P("class", classes_per_request=-1), "protocols.class.classes_per_request"),
    (S(budget_s=-5), "suites.t.budget_s"),
    (S(budget_s=0), "suites.t.budget_s"),
    (S(memory_mb=-1), "suites.t.memory_mb"),
    (S(seeds=[0, 0]), "suites.t.seeds"),
    (S(methods=["original", "original"]), "suites.t.methods"),
    (T(batch_size=0), "suites.t.train.batch_size"),
    (T(lr=-0.1), "suites.t.train.lr"),
    (T(lr=0), "suites.t.train.lr"),
    (T(weight_decay=-1), "suites.t.train.weight_decay"),
    (M(hidden=[-8]), "suites.t.model.hidden"),
    (M(hidden=8), "suites.t.model.hidden"),
    (M(activation="swish"), "suites.t.model.activation"),
    (D(max_train=-5), "datasets.digits.max_train"),
    (D(max_test=0), "datasets.digits.max_test"),
    (P("class", requests=12), "protocols.class.requests"),
    (P("class", requests=5, classes_per_request=3), "protocols.class.requests"),
    (P("random", fraction=1.5), "protocols.random.fraction"),
    (P("random", fraction=0), "protocols.random.fraction"),
    (D(test_fraction=1.0), "datasets.digits.test_fraction"),
    (P("mislabeled", corrupt_fraction=-0.1), "protocols.mislabeled.corrupt_fraction"),
    (P("mislabeled", identified=0), "protocols.mislabeled.identified"),
    (P("memorized", pool=1.2), "protocols.memorized.pool"),
    (S(colour="blue"), "suites.t.colour"),
    (lambda r: r.update(extra=1), "params.extra"),
    (T(momentum=0.9), "suites.t.train.momentum"),
    (D(colour=1), "datasets.digits.colour"),
    (lambda r: r["executor"].update(foo=1), "executor.foo"),
    (T(epochs="ten"), "suites.t.train.epochs"),
    (T(epochs=2.5), "suites.t.train.epochs"),
    (T(batch_size=True), "suites.t.train.batch_size"),
    (S(seeds="0"), "suites.t.seeds"),
    (S(seeds=[0, "a"]), "suites.t.seeds"),
    (S(budget_s="fast"), "suites.t.budget_s"),
    (P("random", requests="2"), "protocols.random.requests"),
    (P("random", requests=0), "protocols.random.requests"),
    (D(split_seed=-1), "datasets.digits.split_seed"),
    (lambda r: r["suites"]["t"]["memorization"].update(models=1), "suites.t.memorization.models"),
    (
        lambda r: r["methods"].update(cure_newton_krylov={"precision": ["foo"]}),
        "methods.cure_newton_krylov.precision",
    ),
    (lambda r: r["executor"].update(kind="slurm"), "executor.kind"),
    (lambda r: r.update(grid="all"), "grid"),
    (lambda r: r.update(cost={"hvp_grad_ratio": -1}), "cost.hvp_grad_ratio"),
    (T(optimizer="rmsprop"), "suites.t.train.optimizer"),
    (lambda r: r["suites"]["t"]["model"].update(arch="vit"), "suites.t.model.arch"),
]


@pytest.mark.parametrize(("mutate", "key"), BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_validate_rejects_each_bad_config_in_one_line_naming_the_key(tmp_path, capsys, mutate, key):
    raw = copy.deepcopy(BASE)
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(path), "validate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"unlearn-bench: error: {key}"), err


def test_the_base_config_is_valid_and_the_console_script_exits_2(tmp_path):
    parse_params(copy.deepcopy(BASE))
    raw = copy.deepcopy(BASE)
    raw["suites"]["t"]["train"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "benchmark.cli", "validate"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "unlearn-bench: error: suites.t.train.epochs: Input should be greater than 0, got 0"
    ]


# --- runtime faults on a tiny trained suite ---------------------------------------------------------------


class Sleeper(Unlearner):
    """Never calls check_budget: only the hard limit stops it."""

    def unlearn(self, model, request, ctx):
        time.sleep(1000)
        return model


class FailsAtFirst(Unlearner):
    def unlearn(self, model, request, ctx):
        raise ValueError("first request rejected")


class MakesNaN(Unlearner):
    def unlearn(self, model, request, ctx):
        import torch

        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return model


class MemoryHog(Unlearner):
    """Allocates far past the suite's memory limit, then waits: only the memory limit stops it early."""

    def unlearn(self, model, request, ctx):
        import torch

        hog = torch.ones(HOG_MB * 2**18)  # HOG_MB MB of float32, every page written
        time.sleep(BUDGET_S / 2)
        return model if hog.sum() > 0 else model


def _stop_mark(test_pid: int) -> Path:
    """The marker of :class:`StoppedOnce`, named by the test process (the sandbox child's parent)."""
    return Path(tempfile.gettempdir()) / f"unlearn-bench-stopped-once-{test_pid}"


class StoppedOnce(Unlearner):
    """The run is stopped (SIGTERM to the cell's process, as ``kill`` or a job's end would) the first time;
    later runs finish."""

    def unlearn(self, model, request, ctx):
        mark = _stop_mark(os.getppid())
        if not mark.exists():
            mark.write_text("stopped once")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)
        return model


class KilledHard(Unlearner):
    """Dies of SIGKILL (what the kernel's out-of-memory killer sends): the method's failure, cached."""

    def unlearn(self, model, request, ctx):
        os.kill(os.getpid(), signal.SIGKILL)
        return model


FAULTY = {
    "fault_sleeper": Sleeper,
    "fault_fails": FailsAtFirst,
    "fault_nan": MakesNaN,
    "fault_hog": MemoryHog,
    "fault_stopped": StoppedOnce,
    "fault_killed": KilledHard,
}
BUDGET_S = 3.0
MEMORY_MB = 1500.0  # the whole sandbox process: interpreter, torch and the suite use a few hundred MB
HOG_MB = 3000
TINY = {
    "datasets": {"digits": {"source": "digits"}},
    "protocols": {"random": {"kind": "random", "requests": 2, "fraction": 0.02}},
    "suites": {
        "t": {
            "dataset": "digits",
            "model": {"arch": "logreg"},
            "train": {"epochs": 2, "batch_size": 128, "lr": 0.01},
            "protocols": ["random"],
            "seeds": [0],
            "methods": ["original", "finetune", *FAULTY],
            "budget_s": BUDGET_S,
            "memory_mb": MEMORY_MB,
        }
    },
    "methods": {"finetune": {"epochs": [1]}},
    "executor": {"kind": "local", "max_retries": 0},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    for name, cls in FAULTY.items():
        _REGISTRY.pop(name, None)
        register_unlearner(name)(cls)
    root = tmp_path_factory.mktemp("faults")
    _stop_mark(os.getpid()).unlink(missing_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(TINY))
    params = parse_params(copy.deepcopy(TINY))
    fetch_dataset(params, "digits", Layout(root))
    run = open_suite(params, "t", root)
    write_protocols(run)
    train_originals(run)
    train_gold(run)
    t0 = time.monotonic()
    counts = run_unlearning(run)
    yield run, counts, time.monotonic() - t0
    for name in FAULTY:
        _REGISTRY.pop(name, None)
    _stop_mark(os.getpid()).unlink(missing_ok=True)


def _cell(run, method: str) -> Cell:
    return next(c for c in expand_cells(run) if c.method == method)


def _result(run, method: str) -> dict:
    return json.loads((cell_dir(run, _cell(run, method)) / "result.json").read_text())


def test_a_sleeper_is_killed_within_budget_plus_5s_and_the_other_cells_complete(tiny):
    run, counts, _ = tiny
    assert counts == {"run": 8, "cached": 0}
    rows = _result(run, "fault_sleeper")["requests"]
    assert [r["status"] for r in rows] == ["timeout", "timeout"]
    assert rows[0]["error"].startswith("hard time limit: killed after")
    killed_after = float(rows[0]["error"].split("killed after ")[1].split(" s")[0])
    assert BUDGET_S <= killed_after <= BUDGET_S + 5
    assert rows[1]["error"] == "not run: request 1 did not finish"
    for method in ("original", "finetune"):
        assert [r["status"] for r in _result(run, method)["requests"]] == ["ok", "ok"]


def test_a_memory_hog_is_killed_at_its_memory_limit_and_the_other_cells_complete(tiny):
    run, _, _ = tiny
    rows = _result(run, "fault_hog")["requests"]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert rows[0]["error"].startswith("memory limit: killed at ")
    killed_at = float(rows[0]["error"].split("killed at ")[1].split(" MB")[0])
    assert MEMORY_MB < killed_at < HOG_MB + 1000  # stopped on its way up, not after the allocation ended
    assert rows[1]["error"] == "not run: request 1 did not finish"
    for method in ("original", "finetune"):
        assert [r["status"] for r in _result(run, method)["requests"]] == ["ok", "ok"]


def test_the_child_process_computes_exactly_what_the_in_process_code_did(tiny, tmp_path):
    run, _, _ = tiny
    cell = _cell(run, "finetune")
    isolated = [(cell_dir(run, cell) / f"step{k}.pt").read_bytes() for k in (1, 2)]
    key = _result(run, "finetune")["key"]
    shutil.rmtree(cell_dir(run, cell))
    run_cell(run, cell, key)  # in this process
    assert [(cell_dir(run, cell) / f"step{k}.pt").read_bytes() for k in (1, 2)] == isolated


def test_leaderboard_shows_the_true_status_and_the_first_reason(tiny, tmp_path):
    run, _, _ = tiny
    path = tmp_path / "t.csv"
    evaluate_suite(run).to_csv(path, index=False, float_format="%.6g")
    df = read_results(path)
    assert set(df.loc[df.method == "fault_nan", "status"]) == {"nan"}
    summary = summarise(df).set_index("method")
    assert summary.loc["fault_nan", "status"] == "nan"
    assert summary.loc["fault_fails", "status"] == "failed"
    assert summary.loc["fault_fails", "error"].startswith("ValueError: first request rejected")
    assert summary.loc["fault_sleeper", "status"] == "timeout"
    assert summary.loc["fault_sleeper", "error"].startswith("hard time limit")
    assert pd.read_csv(path).query("method == 'fault_nan'")["status"].isna().all()  # why read_results


def test_failed_cells_are_cached_until_retry_failed(tiny):
    run, _, _ = tiny
    methods = ["fault_fails", "fault_nan", "original"]
    assert run_unlearning(run, methods) == {"run": 0, "cached": 3}
    assert run_unlearning(run, methods, retry_failed=True) == {"run": 2, "cached": 1}  # original is ok
    assert needs_retry(run, _cell(run, "fault_sleeper"))  # a timeout is retried too
    assert not needs_retry(run, _cell(run, "original"))


def test_an_interrupted_cell_is_rerun_by_the_next_run_but_a_killed_one_stays_failed(tiny):
    """A cell whose process got SIGTERM (the run was stopped) is marked ``interrupted`` and re-run on the next
    run, where it finishes; one killed by SIGKILL (e.g. out of memory) is a failure, reused until
    ``--retry-failed``."""
    run, _, _ = tiny
    stopped, killed = _result(run, "fault_stopped"), _result(run, "fault_killed")
    assert stopped["interrupted"] is True and "interrupted" not in killed
    assert [r["status"] for r in stopped["requests"]] == ["failed", "failed"]
    assert stopped["requests"][0]["error"] == (
        "interrupted: the cell's process was stopped (SIGTERM); the next run re-runs the cell"
    )
    assert killed["requests"][0]["error"] == "WorkerDied: the cell's process ended (killed by signal 9)"
    assert run_unlearning(run, ["fault_stopped", "fault_killed"]) == {"run": 1, "cached": 1}
    again = _result(run, "fault_stopped")
    assert [r["status"] for r in again["requests"]] == ["ok", "ok"] and "interrupted" not in again
    assert run_unlearning(run, ["fault_stopped", "fault_killed"]) == {"run": 0, "cached": 2}


def test_a_changed_method_is_rerun_through_its_code_hash(tiny, monkeypatch):
    run, _, _ = tiny
    assert run_unlearning(run, ["fault_fails"]) == {"run": 0, "cached": 1}
    before = _result(run, "fault_fails")["key"]
    monkeypatch.setattr(FailsAtFirst, "code_hash", classmethod(lambda cls: "0123456789abcdef"))
    assert run_unlearning(run, ["fault_fails"]) == {"run": 1, "cached": 0}
    assert _result(run, "fault_fails")["key"] != before


# --- one-line errors of the CLI --------------------------------------------------------------------------


def _one_line_error(argv: list[str], capsys) -> str:
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_out_of_order_stage_is_one_line(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    args = ["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    err = _one_line_error([*args, "train"], capsys)  # before fetch
    assert "manifest.json: snapshot manifest missing" in err
    fetch_dataset(parse_params(copy.deepcopy(TINY)), "digits", Layout(tmp_path))
    assert main([*args, "protocols"]) == 0
    capsys.readouterr()
    err = _one_line_error([*args, "unlearn", "--method", "original"], capsys)  # before train
    assert "seed0.pt: missing; run `unlearn-bench train --suite t` first" in err


def test_corrupt_or_edited_snapshot_is_one_line_naming_the_file_and_the_fix(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    args = ["--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path)]
    fetch_dataset(parse_params(copy.deepcopy(TINY)), "digits", Layout(tmp_path))
    manifest = tmp_path / "datasets" / "digits" / "manifest.json"
    original = manifest.read_text()
    edited = json.loads(original)
    edited["pixel_max"] = 40.0  # what the models see changes; the parquet files do not
    manifest.write_text(json.dumps(edited, sort_keys=True, indent=2) + "\n")
    err = _one_line_error([*args, "train"], capsys)
    assert f"{manifest}: checksum mismatch" in err
    assert "unlearn-bench fetch --dataset digits" in err
    manifest.write_text(original)
    parquet = manifest.parent / "train.parquet"
    blob = bytearray(parquet.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    parquet.write_bytes(bytes(blob))
    err = _one_line_error([*args, "train"], capsys)
    assert f"{parquet}: checksum mismatch" in err and "unlearn-bench fetch --dataset digits" in err


def test_an_io_error_saving_one_cell_fails_only_that_cell_naming_the_path(tiny):
    run, _, _ = tiny
    cell = _cell(run, "original")
    shutil.rmtree(cell_dir(run, cell))
    blocked = cell_dir(run, cell) / "step1.pt"
    blocked.mkdir(parents=True)  # the model file cannot be written: a directory is in the way
    try:
        assert run_unlearning(run, ["original", "finetune"]) == {"run": 1, "cached": 1}
        rows = _result(run, "original")["requests"]
        assert rows[0]["status"] == "failed"
        assert rows[0]["error"].startswith(f"could not write {blocked}: IsADirectoryError")
        assert rows[1]["error"] == "not run: request 1 did not finish"
    finally:
        blocked.rmdir()
    assert run_unlearning(run, ["original"], retry_failed=True) == {"run": 1, "cached": 0}
    assert [r["status"] for r in _result(run, "original")["requests"]] == ["ok", "ok"]


def test_bench_script_outside_a_git_repository_says_why(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bench.sh", tmp_path / "scripts" / "bench.sh")
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "bench.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert "not inside a git repository" in proc.stderr


def test_bench_script_rejects_an_unknown_preset_before_installing(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bench.sh", tmp_path / "scripts" / "bench.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("touch installed\n")  # must not be reached
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run(["bash", "scripts/bench.sh", "--preset", "klom-mnsit"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    known = ", ".join(sorted(p.stem for p in (ROOT / "presets").glob("*.yaml")))
    assert proc.stderr.strip() == (
        f"scripts/bench.sh: preset 'klom-mnsit': no presets/klom-mnsit.yaml; known presets: {known}"
    )
    assert not (tmp_path / "installed").exists()
