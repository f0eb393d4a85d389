"""Every registered unlearner on an accelerator: two sequential requests on a small MLP, per-method status.

The suite's pipeline runs on CPU; this script checks that the methods also run where the tensors live on
another device (a seeded CPU generator whose draws are not moved to the data's device fails here, not on
CPU). For each method (its ``test_params``): two requests (random forget sets) on a 64-32-10 MLP with
300 synthetic samples on ``--device``; a method passes when it returns finite parameters on that device.

    python scripts/gpu_methods_check.py --device cuda --out methods.json
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from typing import Any

import torch

from benchmark.models.training import train_model
from benchmark.models.zoo import build_model
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, available_unlearners


def check(cls: type, device: torch.device) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    n = 300
    x = torch.randn(n, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    x, y = x.to(device), y.to(device)
    recipe = TrainRecipe(epochs=2, batch_size=32, lr=0.003, weight_decay=5e-4, optimizer="adam")

    def make(seed: int) -> torch.nn.Module:
        return build_model({"arch": "mlp", "hidden": [32]}, (1, 8, 8), 10, seed).to(device)

    model = train_model(make(0), x, y, recipe, 0)
    ctx = Context(seed=0, recipe=recipe, make_model=make, n_train=n, device=device)
    order = torch.randperm(n, generator=gen)
    gone = torch.zeros(n, dtype=torch.bool)
    t0 = time.perf_counter()
    for step in (1, 2):
        idx = order[(step - 1) * 10 : step * 10]
        gone[idx] = True
        keep = (~gone).nonzero().squeeze(1)
        all_f = gone.nonzero().squeeze(1)

        def view(i: torch.Tensor) -> DataView:
            return DataView(x[i.to(device)], y[i.to(device)], i)

        req = Request(step, view(idx), view(all_f), view(keep), 10)
        ctx.counters.reset()
        ctx.info.clear()
        model = cls(**cls.test_params).unlearn(model, req, ctx)
    params = list(model.parameters())
    finite = all(bool(torch.isfinite(p).all()) for p in params)
    on_device = all(p.device.type == device.type for p in params)
    ok = finite and on_device
    reason = "" if ok else ("non-finite parameters" if not finite else "parameters left the device")
    return {"status": "ok" if ok else "failed", "error": reason, "s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    results: dict[str, Any] = {}
    for name, cls in sorted(available_unlearners().items()):
        try:
            results[name] = check(cls, device)
        except Exception as exc:
            tb = traceback.format_exc(limit=-3)
            results[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": tb}
        print(f"{name:28s} {results[name]['status']:7s} {results[name]['error'][:100]}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
