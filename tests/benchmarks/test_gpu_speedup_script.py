"""Smoke test of the paper-scale speedup script on a CPU-sized problem (the real run needs a GPU)."""


def test_speedup_script_runs_on_cpu(script, tmp_path):
    module = script("gpu_speedup")
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
            "--krylov-hvp-batch",
            "4",
            "--chunk",
            "16",
            "--krylov-k",
            "2",
            "--krylov-iters",
            "1",
            "--ratio-batch",
            "4",
            "--ratio-reps",
            "1",
            "--out",
            str(tmp_path / "s.json"),
        ]
    )
    assert out["n_params"] > 11_000_000  # torchvision ResNet-18 with the CIFAR stem
    assert out["gold"]["gold_retrain_s"] > 0
    assert out["ratios"]["grad_s"] > 0 and "error" not in out["ratios"]
    assert set(out["methods"]) == {"cure_newton_stochastic", "cure_newton_krylov"}
    assert all(m["speedup"] > 0 for m in out["methods"].values())
    krylov = out["methods"]["cure_newton_krylov"]
    assert krylov["hessians"] == 0
    assert krylov["hvp_samples"] == krylov["hvps"] * 4  # curvature on the 4-sample retain subsample
    assert krylov["grad_samples"] == out["n_retain"]  # the exact gradient over all of D_r
    assert out["memory"] == {"skipped": "peak memory is read from the CUDA allocator"}


def test_methods_check_script_runs_every_method_on_cpu(script, tmp_path):
    module = script("gpu_methods_check")
    out = module.main(["--device", "cpu", "--out", str(tmp_path / "m.json")])
    from benchmark.unlearners.base import available_unlearners

    assert set(out) == set(available_unlearners())
    assert {name: r["status"] for name, r in out.items() if r["status"] != "ok"} == {}
