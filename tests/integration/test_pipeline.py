"""The whole pipeline (`dvc repro`) on a tiny suite, in a temporary git + DVC repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
METHODS = ["original", "retrain", "finetune", "gradient_ascent", "cure_newton"]
PROTOCOLS = ["random", "class", "memorized", "mislabeled"]
POP_METHODS = ["original", "retrain", "finetune"]

TINY_PARAMS = {
    "datasets": {"digits": {"source": "digits", "split_seed": 0, "test_fraction": 0.2}},
    "protocols": {
        "random": {"kind": "random", "requests": 2, "fraction": 0.02},
        "class": {"kind": "class", "requests": 2},
        "memorized": {"kind": "memorized", "requests": 2, "fraction": 0.01, "pool": 0.03},
        # half of the flipped samples identified (deleted): the rest stay in training, flipped
        "mislabeled": {"kind": "mislabeled", "requests": 2, "corrupt_fraction": 0.04, "identified": 0.5},
    },
    "cost": {"hvp_grad_ratio": 2.0},
    "tuning": {"seeds": [100], "trials": 6},
    "methods": {
        "finetune": {"epochs": [1]},
        "gradient_ascent": {"epochs": [1]},
        "cure_newton": {"iters": [1]},
    },
    "suites": {
        "tiny-mlp": {
            "dataset": "digits",
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 8, "batch_size": 64, "lr": 0.01, "weight_decay": 0.001},
            "protocols": PROTOCOLS,
            "seeds": [0],
            "methods": METHODS,
            "memorization": {"models": 4},
            "population": {"models": 4, "methods": POP_METHODS, "protocols": ["class", "mislabeled"]},
        }
    },
}


def sh(*cmd: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        **(env or {}),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _rows_without(df: pd.DataFrame, method: str) -> str:
    return df[df.method != method].reset_index(drop=True).to_csv(index=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("bench")
    shutil.copytree(ROOT / "benchmark", repo / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("unlearn-bench", "fetch", cwd=repo)  # datasets.dvc, as scripts/bench.sh does
    sh("dvc", "repro", cwd=repo)
    return repo


@pytest.mark.integration
def test_dvc_repro_builds_the_leaderboard(repo: Path):
    df = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    # one selected configuration (tune stage) per method x protocol x seed x step; the configurations that
    # `methods:` lists run as extra rows
    assert df.selected.dtype == bool
    assert len(df[df.selected]) == len(METHODS) * len(PROTOCOLS) * 1 * 2
    assert set(df[~df.selected].method) <= set(TINY_PARAMS["methods"])
    assert (df[df.selected].tuning_trials >= 1).all()
    assert (repo / "tuning" / "tiny-mlp.yaml").exists()
    assert set(df.status) == {"ok"}, df[df.status != "ok"][["method", "error"]]
    assert df.tow.between(0, 1).all()
    # the do-nothing model still knows the deleted classes; the gold model does not
    orig = df[(df.method == "original") & (df.protocol == "class")]
    assert (orig.acc_forget > orig.gold_acc_forget + 0.5).all()
    assert (orig.update_norm == 0).all()
    assert (df[df.method == "cure_newton"].hessians > 0).all()
    # corrective protocol: accuracy on the true labels of the deleted (flipped) samples is reported
    bad = df[df.protocol == "mislabeled"]
    assert bad.acc_forget_true.notna().all() and df[df.protocol != "mislabeled"].acc_forget_true.isna().all()
    assert (bad[bad.method == "original"].acc_forget > bad[bad.method == "original"].gold_acc_forget).all()
    # ... and on the true labels of the flipped samples no request deleted (half of them here)
    for col in ("acc_unidentified_true", "gold_acc_unidentified_true"):
        assert bad[col].between(0, 1).all() and df[df.protocol != "mislabeled"][col].isna().all()
    # populations: one row per protocol x method, the do-nothing model far from retraining on class deletion
    pop = pd.read_csv(repo / "results" / "tiny-mlp_population.csv").set_index(["protocol", "method"])
    assert len(pop) == 2 * len(POP_METHODS) and set(pop.status) == {"ok"}
    assert (pop.n_unlearned == 4).all() and (pop.n_retrained == 4).all()
    # (4 models per side: KLoM's finite-population floor is high, ~8 nats of the 11.5 cap)
    assert pop.loc[("class", "original"), "klom_mean"] > pop.loc[("class", "retrain"), "klom_mean"] + 1
    assert (pop.klom_lo <= pop.klom_mean).all() and (pop.klom_mean <= pop.klom_hi).all()
    examples = pd.read_csv(repo / "results" / "tiny-mlp_population_examples.csv")
    assert {pid.partition("[")[0] for pid in examples.params_id} == set(POP_METHODS)
    assert examples.klom.notna().all()
    # a population method is its headline configuration: the one tuned for that protocol
    for protocol in ("class", "mislabeled"):
        picked = df[(df.method == "finetune") & df.selected & (df.protocol == protocol)].params_id.unique()
        assert list(picked) == [pop.loc[(protocol, "finetune"), "params_id"]]
    for name in ("README.md", "metrics_by_method.json", "index.html", "summary.csv",
                 "dvc_plots/tow_steps.json"):
        assert (repo / "leaderboards" / name).stat().st_size > 0
    assert "tiny-mlp" in (repo / "leaderboards" / "README.md").read_text()
    shown = sh("dvc", "metrics", "show", cwd=repo).stdout
    assert "tiny-mlp" in shown and "best_tow_auc" in shown
    # compact: one row per suite x protocol, a handful of columns
    rows = [line for line in shown.splitlines() if "leaderboards/metrics/" in line]
    assert len(rows) == len(PROTOCOLS) and max(len(line) for line in shown.splitlines()) < 200, shown


@pytest.mark.integration
def test_second_repro_does_nothing(repo: Path):
    out = sh("dvc", "repro", cwd=repo).stdout
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    # only the always-run method_code stage, which finds every hash unchanged
    assert ran == ["Running stage 'method_code':"], out
    assert "tiny-mlp.json unchanged" in out, out


@pytest.mark.integration
def test_interrupted_unlearn_resumes_only_missing_cells(repo: Path):
    victim = next((repo / "runs" / "tiny-mlp" / "cells" / "class").glob("finetune*/seed0/result.json"))
    victim.unlink()
    n_cells = len(pd.read_csv(repo / "results" / "tiny-mlp.csv")) // 2  # 1 seed, 2 steps
    out = sh("unlearn-bench", "unlearn", "--suite", "tiny-mlp", cwd=repo).stdout
    assert "1 cells run" in out and f"{n_cells - 1} reused" in out, out
    out = sh("unlearn-bench", "tune", "--suite", "tiny-mlp", cwd=repo).stdout
    assert " 0 trials run" in out, out
    out = sh("unlearn-bench", "train", "--suite", "tiny-mlp", cwd=repo).stdout
    assert "0 trained" in out, out
    out = sh("unlearn-bench", "gold", "--suite", "tiny-mlp", cwd=repo).stdout
    assert "0 retrained" in out, out


@pytest.mark.integration
def test_bad_config_is_one_line_naming_the_key(repo: Path, tmp_path: Path):
    bad = yaml.safe_load((repo / "params.yaml").read_text())
    bad["suites"]["tiny-mlp"]["methods"].append("no_such_method")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["unlearn-bench", "--params", str(path), "unlearn", "--suite", "tiny-mlp"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "suites.tiny-mlp.methods" in lines[0] and "no_such_method" in lines[0]


REFERENCE = Path(__file__).with_name("reference_tiny.json")
QUALITY_COLUMNS = {"tow": 0.02, "acc_forget": 0.02, "acc_retain": 0.02, "acc_test": 0.02, "js_test": 0.01}
COUNTER_COLUMNS = ["grad_samples", "fwd_samples", "hvps", "hessians"]


@pytest.mark.integration
def test_quality_gate_against_committed_reference(repo: Path):
    """CI regression gate: per (method, protocol, step), quality metrics within tolerance of the committed
    reference and deterministic work counters exactly equal. Refresh the reference deliberately with
    ``UPDATE_REFERENCE=1 pytest tests/integration/test_pipeline.py -k quality_gate`` and commit it."""
    import json

    df = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    current = {
        f"{r.params_id}|{r.protocol}|{r.step}": {
            **{c: round(float(getattr(r, c)), 6) for c in QUALITY_COLUMNS},
            **{c: int(getattr(r, c)) for c in COUNTER_COLUMNS},
        }
        for r in df.itertuples()
    }
    if os.environ.get("UPDATE_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    reference = json.loads(REFERENCE.read_text())
    assert sorted(current) == sorted(reference), "cells differ from the reference: refresh it deliberately"
    problems = []
    for key, ref in reference.items():
        for col, tol in QUALITY_COLUMNS.items():
            if abs(current[key][col] - ref[col]) > tol:
                problems.append(
                    f"{key} {col}: {current[key][col]:.4f} vs reference {ref[col]:.4f} (tol {tol})"
                )
        for col in COUNTER_COLUMNS:
            if current[key][col] != ref[col]:
                problems.append(f"{key} {col}: {current[key][col]} vs reference {ref[col]} (exact)")
    assert not problems, "\n".join(problems)


@pytest.mark.integration
def test_dvc_exp_run_set_param_reruns_only_that_method(repo: Path):
    """`dvc exp run -S` on the pipeline: one method's grid changes, only its cells run (the others are reused
    from the cell cache), and the experiment's metrics are readable."""
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "baseline", cwd=repo)  # experiments are relative to a commit
    before = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    out = sh("dvc", "exp", "run", "-S", "methods.finetune.epochs=[2]", cwd=repo).stdout
    assert "Running stage 'unlearn@tiny-mlp'" in out, out
    assert "Running stage 'train@tiny-mlp'" not in out and "Running stage 'gold@tiny-mlp'" not in out, out
    # finetune's base configuration changed: its studies start from it (trial 0) and only they run again
    ran = int(re.search(r"(\d+) trials run", out).group(1))
    assert 0 < ran <= 6 * len(PROTOCOLS), out
    assert int(re.search(r"(\d+) cells run", out).group(1)) <= 2 * len(PROTOCOLS), out
    df = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    assert _rows_without(df, "finetune") == _rows_without(before, "finetune")  # the others unchanged
    study = yaml.safe_load((repo / "tuning" / "tiny-mlp.yaml").read_text())["protocols"]["class"]["finetune"]
    assert study["trials"][0]["params"]["epochs"] == 2  # trial 0: the new base
    assert yaml.safe_load((repo / "params.yaml").read_text())["methods"]["finetune"]["epochs"] == [2]
    shown = sh("dvc", "exp", "show", "--no-pager", "--md", cwd=repo).stdout
    assert "tiny-mlp" in shown or "tow" in shown.lower(), shown[:2000]


@pytest.mark.integration
def test_adding_a_method_runs_and_judges_exactly_its_cells(repo: Path):
    """Issue 13 item 2: one more method (one configuration) in params.yaml -> `dvc repro` runs exactly its
    cells, evaluate judges exactly those (every other cell's rows and every gold reference come from the
    caches), nothing upstream of unlearn re-runs, and the other rows are unchanged byte for byte."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["methods"]["random_label"] = {"epochs": [1]}
    params["suites"]["tiny-mlp"]["methods"].append("random_label")
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    before = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    n_before = len(before[["protocol", "params_id", "seed"]].drop_duplicates())

    out = sh("dvc", "repro", cwd=repo).stdout
    upstream = ("fetch@digits", "memorize@tiny-mlp", "protocols@tiny-mlp", "train@tiny-mlp", "gold@tiny-mlp",
                "population@tiny-mlp")  # no population for the new method: its plan file is unchanged
    for stage in upstream:
        assert f"Running stage '{stage}'" not in out, out
    after = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    new = after[after.method == "random_label"]
    # the listed configuration on every protocol, plus the tuned selection where it differs from it
    new_cells = len(new[["protocol", "params_id", "seed"]].drop_duplicates())
    assert len(PROTOCOLS) <= new_cells <= 2 * len(PROTOCOLS)
    tuned_only_it = f"{6 * len(PROTOCOLS)} trials run"  # the new method's studies; the others reused
    assert "Running stage 'tune@tiny-mlp'" in out and tuned_only_it in out, out
    assert f"{new_cells} cells run, {n_before} reused" in out, out
    assert f"({new_cells} cells judged, {n_before} read from the evaluation cache" in out, out
    assert "gold references: " in out and ", 0 computed)" in out, out  # all read back, none recomputed
    assert "random_label" in set(new.params_id)
    assert set(new[new.selected].protocol) == set(PROTOCOLS)  # one selected configuration per protocol
    old = after[after.method != "random_label"].reset_index(drop=True)
    assert old.to_csv(index=False) == before.reset_index(drop=True).to_csv(index=False)


@pytest.mark.integration
def test_dvc_sees_a_method_code_change(repo: Path):
    """Issue 13 item 2: editing what a method runs (as a plugin upgrade does) makes `dvc repro` re-run exactly
    that method's trials and cells through runs/method_code/S.json; an edit of its docstring re-runs nothing.
    (Runs last: it edits the test repository's copy of the package, imported through PYTHONPATH.)"""
    env = {"PYTHONPATH": str(repo)}
    src = repo / "benchmark" / "unlearners" / "gradient_ascent.py"
    original = src.read_text()
    before = pd.read_csv(repo / "results" / "tiny-mlp.csv")
    mine = before[before.method == "gradient_ascent"]
    n_cells = len(mine[["protocol", "params_id", "seed"]].drop_duplicates())
    try:
        src.write_text(original.replace("Known to over-forget.", "Known to over-forget (docs edit)."))
        out = sh("dvc", "repro", cwd=repo, env=env).stdout
        assert "tiny-mlp.json unchanged" in out and "Running stage 'unlearn@" not in out, out
        changed = "        _ = 0  # a code change\n        return train_model("
        src.write_text(original.replace("        return train_model(", changed))
        out = sh("dvc", "repro", cwd=repo, env=env).stdout
        assert "tiny-mlp.json updated" in out, out
        assert f"{6 * len(PROTOCOLS)} trials run" in out, out  # only gradient_ascent's studies
        assert f"{n_cells} cells run" in out, out  # only its cells
        assert f"({n_cells} cells judged" in out, out
        for stage in ("memorize@tiny-mlp", "protocols@tiny-mlp", "train@tiny-mlp", "gold@tiny-mlp"):
            assert f"Running stage '{stage}'" not in out, out
        after = pd.read_csv(repo / "results" / "tiny-mlp.csv")
        assert _rows_without(after, "gradient_ascent") == _rows_without(before, "gradient_ascent")
    finally:
        src.write_text(original)


@pytest.mark.integration
def test_changing_only_the_populations_re_evaluates_and_restoring_them_too(repo: Path):
    """A preset that changes only the populations (as klom-random does), then `git checkout params.yaml`:
    both `dvc repro`s re-run evaluate, so results/ always matches params.yaml (the population directory
    keeps every member, so its hash alone cannot tell the two runs apart)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    saved = (repo / "params.yaml").read_text()
    params["suites"]["tiny-mlp"]["population"]["protocols"] = ["class"]
    try:
        (repo / "params.yaml").write_text(yaml.safe_dump(params))
        out = sh("dvc", "repro", cwd=repo).stdout
        assert "Running stage 'evaluate@tiny-mlp'" in out, out
        pop = pd.read_csv(repo / "results" / "tiny-mlp_population.csv")
        assert set(pop["protocol"]) == {"class"}
    finally:
        (repo / "params.yaml").write_text(saved)
    out = sh("dvc", "repro", cwd=repo).stdout
    assert "Running stage 'evaluate@tiny-mlp'" in out, out
    pop = pd.read_csv(repo / "results" / "tiny-mlp_population.csv")
    assert set(pop["protocol"]) == {"class", "mislabeled"}
