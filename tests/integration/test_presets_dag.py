"""Each paper preset's whole DAG (`dvc repro`) on CPU, on a tiny synthetic parquet copy of its dataset.

In a scratch git + DVC repository: `unlearn-bench preset NAME` (the documented command), then the dataset's
``hf_path`` pointed at a fixture of the hub's schema and image shape (tests/fixtures/paper_fixtures.py) and
the run shrunk (1 epoch, 1 seed, 2 requests per protocol, 2 memorisation models, cheap method settings). The
preset's architecture, protocols, device (``auto``: the CPU here) and loading code are the real ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
from paper_fixtures import write_fixture  # noqa: E402

CASES = {
    # preset: (suite, dataset, source, methods the CI run keeps)
    "fmnist-cnn": ("fmnist-cnn", "fmnist", "fashion_mnist", None),  # None: every method of the preset
    # ResNet-18 on CPU: a few methods keep the run within minutes
    "cifar10-resnet18": (
        "cifar10-resnet18", "cifar10", "cifar10",
        ["original", "retrain", "cure_newton_stochastic", "finetune", "gradient_ascent"],
    ),
}
TINY_METHODS = {
    "finetune": {"epochs": [1]},
    "gradient_ascent": {"epochs": [1]},
    "cure_newton_krylov": [
        {"iters": [1], "hvp_batch": [32], "check_batch": [64], "k": [3], "krylov_tol": [0.0]}
    ],
    "cure_newton_stochastic": [{"rounds": [1], "inner_steps": [2]}],
}


def sh(*cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def shrink(params: dict, suite: str, dataset: str, fixture: Path, methods: list[str] | None) -> dict:
    params["datasets"][dataset]["hf_path"] = str(fixture)
    s = params["suites"][suite]
    s.update(seeds=[0], budget_s=600, memorization={"models": 2, "seed": 1000})
    s["train"]["epochs"] = 1
    s["population"]["models"] = 4
    if methods is not None:
        s["methods"] = methods
    for p in s["protocols"]:
        params["protocols"][p]["requests"] = 2
    params["methods"] = {k: v for k, v in TINY_METHODS.items() if k in s["methods"]}
    return params


@pytest.mark.integration
@pytest.mark.parametrize("preset", sorted(CASES))
def test_preset_dag_on_fixture(preset: str, tmp_path: Path):
    suite, dataset, source, methods = CASES[preset]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "benchmark", repo / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "presets", repo / "presets")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("unlearn-bench", "preset", preset, cwd=repo)
    fixture = write_fixture(source, tmp_path / "fixture")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert list(params["suites"]) == [suite] and params["suites"][suite]["device"] == "auto"
    (repo / "params.yaml").write_text(yaml.safe_dump(shrink(params, suite, dataset, fixture, methods)))
    sh("unlearn-bench", "validate", cwd=repo)
    assert "recorded" in sh("unlearn-bench", "fetch", cwd=repo).stdout  # datasets.dvc, as bench.sh does
    out = sh("dvc", "repro", cwd=repo).stdout
    for stage in ("memorize", "protocols", "train", "gold", "unlearn", "evaluate"):
        assert f"Running stage '{stage}@" in out, out[-3000:]
    df = pd.read_csv(repo / "results" / f"{suite}.csv")
    kept = methods or params["suites"][suite]["methods"]
    protocols = params["suites"][suite]["protocols"]
    assert set(df.method) == set(kept) and set(df.protocol) == set(protocols)
    assert len(df) == len(set(df.params_id)) * len(protocols) * 2  # configurations x protocols x 2 requests
    assert (df.status == "ok").mean() >= 0.9, df[df.status != "ok"][["params_id", "protocol", "error"]]
    assert df[df.status == "ok"].tow.between(0, 1).all()
    assert (df[df.method == "original"].update_norm == 0).all()
    assert suite in (repo / "leaderboards" / "README.md").read_text()
    meta = yaml.safe_load((repo / "runs" / suite / "originals" / "seed0.json").read_text())
    assert meta["device"] == ("cuda" if _cuda() else "cpu")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
