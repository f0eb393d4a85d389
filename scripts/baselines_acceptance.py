"""Acceptance check of the first-order / importance baselines against gold retrains (issue 10, item 3).

One seed, the suites' MLPs and recipes (params.yaml), the 5-request protocols of params.yaml; for every
(dataset, protocol) the gold model of each request is retrained from scratch on D_r(k) and the method's
model after request k is compared by forget/retain/test accuracy and ToW (Zhao et al. 2024)::

    python scripts/baselines_acceptance.py --dataset mnist5k --protocol random --method salun \
        --hparams '{"epochs": 1}' [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmark.config import ProtocolConfig
from benchmark.data.protocols import cumulative, make_requests, retain_indices
from benchmark.data.sources import load_source
from benchmark.metrics.accuracy import accuracy, tow
from benchmark.models.training import train_model
from benchmark.models.zoo import build_model
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

CACHE = Path(os.environ.get("BASELINES_CACHE", "/tmp/baselines_acceptance"))  # trained models
SUITES = {"digits": "digits-mlp", "mnist5k": "mnist5k-mlp"}


@cache
def setup(dataset: str, protocol: str) -> dict[str, Any]:
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    suite = params["suites"][SUITES[dataset]]
    ds = params["datasets"][dataset]
    raw = load_source(ds["source"], split_seed=ds["split_seed"], test_fraction=ds["test_fraction"])

    def nchw(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(
            np.ascontiguousarray(x[:, None], dtype=np.float32) / np.float32(raw.pixel_max)
        )

    x, y = nchw(raw.x_train), torch.from_numpy(raw.y_train).long()
    xt, yt = nchw(raw.x_test), torch.from_numpy(raw.y_test).long()
    p = params["protocols"][protocol]
    cfg = ProtocolConfig(
        name=protocol,
        kind=p["kind"],
        requests=p["requests"],
        fraction=p.get("fraction"),
        classes_per_request=p.get("classes_per_request", 1),
        seed=p.get("seed"),
    )
    requests = make_requests(cfg, raw.y_train, p.get("seed", 0))
    recipe = TrainRecipe(**suite["train"])
    spec = suite["model"]
    return {"x": x, "y": y, "xt": xt, "yt": yt, "requests": requests, "recipe": recipe, "spec": spec}


@cache
def trained(dataset: str, protocol: str, step: int, seed: int = 0) -> torch.nn.Module:
    """The original (step 0) or the gold retrain of request ``step``, trained from scratch."""
    s = setup(dataset, protocol)
    model = build_model(s["spec"], (1, *s["x"].shape[2:]), 10, seed)
    path = CACHE / f"{dataset}_{protocol if step else 'original'}_{step}_{seed}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model.eval()
    keep = (
        torch.from_numpy(retain_indices(len(s["y"]), s["requests"], step))
        if step
        else torch.arange(len(s["y"]))
    )
    model = train_model(model, s["x"][keep], s["y"][keep], s["recipe"], seed * 7919 + step)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


def accs(model: torch.nn.Module, s: dict[str, Any], step: int) -> tuple[float, float, float]:
    f = torch.from_numpy(cumulative(s["requests"], step))
    r = torch.from_numpy(retain_indices(len(s["y"]), s["requests"], step))
    return (
        accuracy(model, s["x"][f], s["y"][f]),
        accuracy(model, s["x"][r], s["y"][r]),
        accuracy(model, s["xt"], s["yt"]),
    )


def run(dataset: str, protocol: str, method: str, hparams: dict[str, Any], steps: int, seed: int = 0) -> list:
    import copy

    s = setup(dataset, protocol)
    x, y = s["x"], s["y"]

    def make(sd: int) -> torch.nn.Module:
        return build_model(s["spec"], (1, *x.shape[2:]), 10, sd)

    model = copy.deepcopy(trained(dataset, protocol, 0, seed))
    ctx = Context(seed=seed, recipe=s["recipe"], make_model=make, n_train=len(y))
    unlearner = get_unlearner(method)(**hparams)
    rows = []
    for k in range(1, steps + 1):
        fk = torch.from_numpy(s["requests"][k - 1])
        fa = torch.from_numpy(cumulative(s["requests"], k))
        rk = torch.from_numpy(retain_indices(len(y), s["requests"], k))
        req = Request(
            k, DataView(x[fk], y[fk], fk), DataView(x[fa], y[fa], fa), DataView(x[rk], y[rk], rk), 10
        )
        ctx.counters.reset()
        ctx.info = {}
        t0 = time.perf_counter()
        model = unlearner.unlearn(model, req, ctx)
        wall = time.perf_counter() - t0
        u = accs(model, s, k)
        g = accs(trained(dataset, protocol, k, seed), s, k)
        rows.append(
            {
                "step": k,
                "forget": round(u[0], 3),
                "retain": round(u[1], 3),
                "test": round(u[2], 3),
                "gold_forget": round(g[0], 3),
                "gold_retain": round(g[1], 3),
                "gold_test": round(g[2], 3),
                "tow": round(tow(*u, *g), 3),
                "wall_s": round(wall, 2),
                "grad_epochs": round(ctx.counters.grad_samples / len(y), 2),
                "info": {k2: v for k2, v in ctx.info.items() if not isinstance(v, (list, dict))},
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="mnist5k", choices=sorted(SUITES))
    ap.add_argument("--protocol", default="random", choices=["random", "class"])
    ap.add_argument("--method", required=True)
    ap.add_argument("--hparams", default="{}")
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    rows = run(a.dataset, a.protocol, a.method, json.loads(a.hparams), a.steps)
    for r in rows:
        print(json.dumps(r))
    mean_tow = sum(r["tow"] for r in rows) / len(rows)
    print(f"{a.dataset} {a.protocol} {a.method} {a.hparams}: mean ToW {mean_tow:.3f}")


if __name__ == "__main__":
    main()
