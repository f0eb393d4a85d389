"""Each paper preset's whole DAG (`dvc repro`) on CPU, on a tiny synthetic parquet copy of its dataset.

In a scratch git + DVC repository: `unlearn-bench preset NAME` (the documented command), then the dataset's
``hf_path`` pointed at a fixture of the hub's schema and image shape (tests/fixtures/paper_fixtures.py) and
the run shrunk to minutes on 2 cores: 64 train / 32 test images (32 / 16 for ResNet-18), 1 epoch,
1 seed, 2 requests per protocol, 2 memorisation models, a population of 4 (the smallest allowed) and five
methods (CI_METHODS) in cheap settings (ResNet-18: one protocol and four methods, see CASES). The preset's
architecture, device (``auto``: the CPU here), loading code and DAG are the real ones.
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

# the methods the CNN preset's CI run keeps (ResNet-18's: a subset, see CASES): the reference pair, a
# first-order baseline and both CuReNU solvers (matrix-free Krylov in its budget configuration, stochastic),
# enough to cover the device and model path through originals, gold retrains, cells, populations and the
# evaluation within minutes on 2 cores
CI_METHODS = ["original", "retrain", "finetune", "cure_newton_krylov", "cure_newton_stochastic"]
CASES = {
    # preset: (suite, dataset, hub source, fixture train / test images, methods, protocols kept (None: all),
    # population methods kept)
    "fmnist-cnn": ("fmnist-cnn", "fmnist", "fashion_mnist", (64, 32), CI_METHODS, None, CI_METHODS),
    # a ResNet-18 step costs ~100x the CNN's on a CPU (this case took 460 s of a 31-minute CI run with both
    # protocols and both CuReNU solvers): fewer images, the population's protocol (class) only, the Krylov
    # solver only and a population of originals and retrains only. The CNN's case covers the stochastic
    # solver, the random protocol and unlearned population members; this one still runs every stage of the
    # DAG on the real model
    "cifar10-resnet18": ("cifar10-resnet18", "cifar10", "cifar10", (32, 16),
                         ["original", "retrain", "finetune", "cure_newton_krylov"], ["class"],
                         ["original", "retrain"]),
}
TINY_METHODS = {
    "finetune": {"epochs": [1]},
    # params.yaml's budget configuration of the Krylov solver, at the fixture's size
    "cure_newton_krylov": [
        {"iters": [1], "hvp_batch": [16], "check_batch": [32], "precision": ["model"], "k": [3],
         "krylov_tol": [0.0]}
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


def shrink(params: dict, suite: str, dataset: str, fixture: Path, methods: list[str],
           protocols: list[str] | None, population: list[str]) -> dict:
    params["datasets"][dataset]["hf_path"] = str(fixture)
    s = params["suites"][suite]
    s.update(seeds=[0], budget_s=600, memorization={"models": 2, "seed": 1000}, methods=methods)
    if protocols is not None:
        s["protocols"] = protocols
    s["train"]["epochs"] = 1
    # 4: the smallest population the config (and KLoM's split-half noise floor) accepts
    s["population"]["models"] = 4
    s["population"]["methods"] = [m for m in s["population"]["methods"] if m in population]
    for p in s["protocols"]:
        params["protocols"][p]["requests"] = 2
    params["methods"] = {m: v for m, v in TINY_METHODS.items() if m in methods}
    # the DAG without tuning studies (`tuning: null`: what `methods:` lists; the tune stage records that), so
    # the fixture DAG stays within minutes; tuning itself is tested on the tiny suite (test_tune.py,
    # test_pipeline.py)
    params["tuning"] = None
    return params


@pytest.mark.integration
@pytest.mark.parametrize("preset", sorted(CASES))
def test_preset_dag_on_fixture(preset: str, tmp_path: Path):
    suite, dataset, source, (n_train, n_test), methods, protocols, population = CASES[preset]
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(ROOT / "benchmark", repo / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "presets", repo / "presets")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(ROOT / name, repo / name)
    sh("git", "init", "-q", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("unlearn-bench", "preset", preset, cwd=repo)
    fixture = write_fixture(source, tmp_path / "fixture", n_train=n_train, n_test=n_test)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert list(params["suites"]) == [suite] and params["suites"][suite]["device"] == "auto"
    shrunk = shrink(params, suite, dataset, fixture, methods, protocols, population)
    (repo / "params.yaml").write_text(yaml.safe_dump(shrunk))
    sh("unlearn-bench", "validate", cwd=repo)
    assert "recorded" in sh("unlearn-bench", "fetch", cwd=repo).stdout  # datasets.dvc, as bench.sh does
    out = sh("dvc", "repro", cwd=repo).stdout
    for stage in ("memorize", "protocols", "train", "gold", "unlearn", "evaluate"):
        assert f"Running stage '{stage}@" in out, out[-3000:]
    df = pd.read_csv(repo / "results" / f"{suite}.csv")
    run_protocols = shrunk["suites"][suite]["protocols"]  # the preset's, or the case's subset
    assert set(df.method) == set(methods) and set(df.protocol) == set(run_protocols)
    # configurations x protocols x 2 requests
    assert len(df) == len(set(df.params_id)) * len(run_protocols) * 2
    assert (df.status == "ok").mean() >= 0.9, df[df.status != "ok"][["params_id", "protocol", "error"]]
    assert df[df.status == "ok"].tow.between(0, 1).all()
    assert (df[df.method == "original"].update_norm == 0).all()
    assert suite in (repo / "leaderboards" / "README.md").read_text()
    meta = yaml.safe_load((repo / "runs" / suite / "originals" / "seed0.json").read_text())
    assert meta["device"] == ("cuda" if _cuda() else "cpu")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
