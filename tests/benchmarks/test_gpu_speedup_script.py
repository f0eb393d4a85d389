"""Smoke test of the paper-scale speedup script on a CPU-sized problem (the real run needs a GPU)."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_speedup.py"


def test_speedup_script_runs_on_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_speedup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(
        [
            "--device",
            "cpu",
            "--n-train",
            "32",
            "--batch-size",
            "8",
            "--epochs",
            "2",
            "--rounds",
            "1",
            "--inner-steps",
            "2",
            "--krylov-subsample",
            "4",
            "--krylov-k",
            "2",
            "--krylov-iters",
            "1",
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    assert out["n_params"] > 11_000_000  # torchvision ResNet-18 with the CIFAR stem
    assert out["gold_retrain_s"] > 0
    assert set(out["methods"]) == {"cure_newton_stochastic", "cure_newton_krylov"}
    assert all(m["speedup"] > 0 for m in out["methods"].values())
    assert out["methods"]["cure_newton_krylov"]["hessians"] == 0
