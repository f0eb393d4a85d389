"""Stage ``evaluate``: one row per (cell, request k), judged against the gold model of step k.

Per request: accuracy on the forget set (union of requests 1..k), the retain set and the test set for
the unlearned and the gold model, their gaps, ToW, JS divergence to the gold model on forget and test,
‖w − w_gold‖, the update norm, and cost (wall/CPU seconds, gradient passes, HVPs, epoch-equivalents,
speedup = gold retrain seconds of the same step / request seconds).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.metrics import accuracy_from_probs, mean_js, predict_proba, tow
from benchmark.runner.artifacts import load_state, read_json
from benchmark.runner.cells import cell_dir, cell_key, expand_cells
from benchmark.runner.suite import SuiteRun

COLUMNS = [
    "suite",
    "dataset",
    "model",
    "protocol",
    "method",
    "params_id",
    "seed",
    "step",
    "status",
    "error",
    "acc_forget",
    "acc_retain",
    "acc_test",
    "gold_acc_forget",
    "gold_acc_retain",
    "gold_acc_test",
    "gap_forget",
    "gap_retain",
    "gap_test",
    "tow",
    "js_forget",
    "js_test",
    "dist_to_gold",
    "update_norm",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "gold_wall_s",
    "speedup",
    "grad_samples",
    "hvps",
    "hessians",
    "epochs_equiv",
    "gold_epochs_equiv",
    "n_forget",
    "n_retain",
    "info",
    "hparams",
    "code_hash",
    "origin",
    "git_rev",
    "packages",
    "hardware",
]


class StaleCellError(RuntimeError):
    """A cell's result was produced by other code or inputs than the current ones."""


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def evaluate_suite(run: SuiteRun) -> pd.DataFrame:
    """Rows for every cell of the suite (cells must be up to date: ``unlearn`` first)."""
    snap = run.snapshot
    s = run.suite

    @functools.cache
    def gold(protocol: str, seed: int, step: int) -> dict[str, Any]:
        path = run.layout.gold_path(s.name, protocol, seed, step)
        model = load_state(path, run.make_model(seed))
        req = run.request(protocol, seed, step)
        views = {"forget": req.forget_all, "retain": req.retain}
        probs = {k: predict_proba(model, v.x) for k, v in views.items()}
        probs["test"] = predict_proba(model, snap.x_test)
        labels = {"forget": req.forget_all.y, "retain": req.retain.y, "test": snap.y_test}
        return {
            "probs": probs,
            "labels": labels,
            "acc": {k: accuracy_from_probs(probs[k], labels[k]) for k in probs},
            "w": _weights(model),
            "meta": read_json(path.with_suffix(".json")),
            "x": views,
        }

    rows = []
    for cell in tqdm(expand_cells(run), desc=f"{s.name}: evaluate", unit="cell", disable=None):
        result_path = cell_dir(run, cell) / "result.json"
        if not result_path.exists():
            raise StaleCellError(
                f"{result_path}: missing; run `unlearn-bench unlearn --suite {s.name}` first"
            )
        result = read_json(result_path)
        if result["key"] != cell_key(run, cell):
            raise StaleCellError(f"{result_path}: produced by other code or inputs; re-run the unlearn stage")
        common = {
            "suite": s.name,
            "dataset": s.dataset,
            "model": s.model["arch"],
            "protocol": cell.protocol,
            "method": cell.method,
            "params_id": cell.params_id,
            "seed": cell.seed,
            "hparams": json.dumps(cell.hparams, sort_keys=True),
            **{k: result.get(k) for k in ("code_hash", "origin", "git_rev", "packages", "hardware")},
        }
        for req in result["requests"]:
            row: dict[str, Any] = {
                **common,
                "step": req["step"],
                "status": req["status"],
                "error": req["error"],
            }
            for k in ("wall_s", "cpu_s", "peak_rss_mb", "grad_samples", "hvps", "hessians", "update_norm"):
                row[k] = req.get(k)
            row["info"] = json.dumps(req.get("info", {}), sort_keys=True)
            g = gold(cell.protocol, cell.seed, req["step"])
            row.update(
                gold_acc_forget=g["acc"]["forget"],
                gold_acc_retain=g["acc"]["retain"],
                gold_acc_test=g["acc"]["test"],
                gold_wall_s=g["meta"]["wall_s"],
                gold_epochs_equiv=g["meta"]["epochs_equiv"],
                n_forget=len(g["x"]["forget"]),
                n_retain=len(g["x"]["retain"]),
            )
            if req["status"] == "ok":
                row.update(_judge(run, cell.seed, cell_dir(run, cell) / f"step{req['step']}.pt", g, req))
            rows.append(row)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    return df[COLUMNS]


def _judge(run: SuiteRun, seed: int, path, g: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    model = load_state(path, run.make_model(seed))
    probs = {
        "forget": predict_proba(model, g["x"]["forget"].x),
        "retain": predict_proba(model, g["x"]["retain"].x),
        "test": predict_proba(model, run.snapshot.x_test),
    }
    acc = {k: accuracy_from_probs(probs[k], g["labels"][k]) for k in probs}
    hvp_samples = req.get("hvp_samples", 0) or 0
    epochs_equiv = ((req.get("grad_samples") or 0) + run.params.hvp_grad_ratio * hvp_samples) / run.n_train
    wall = req.get("wall_s") or float("nan")
    return {
        "acc_forget": acc["forget"],
        "acc_retain": acc["retain"],
        "acc_test": acc["test"],
        "gap_forget": abs(acc["forget"] - g["acc"]["forget"]),
        "gap_retain": abs(acc["retain"] - g["acc"]["retain"]),
        "gap_test": abs(acc["test"] - g["acc"]["test"]),
        "tow": tow(
            acc["forget"],
            acc["retain"],
            acc["test"],
            g["acc"]["forget"],
            g["acc"]["retain"],
            g["acc"]["test"],
        ),
        "js_forget": mean_js(probs["forget"], g["probs"]["forget"]),
        "js_test": mean_js(probs["test"], g["probs"]["test"]),
        "dist_to_gold": float((_weights(model) - g["w"]).norm()),
        "epochs_equiv": epochs_equiv,
        "speedup": g["meta"]["wall_s"] / wall if wall > 0 else float("nan"),
    }


def write_results(run: SuiteRun) -> pd.DataFrame:
    df = evaluate_suite(run)
    path = run.layout.results_path(run.suite.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return df
