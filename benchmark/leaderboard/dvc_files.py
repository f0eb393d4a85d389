"""The small files DVC itself reads: headline metrics for ``dvc metrics show`` / ``dvc exp show`` and the
data of ``dvc plots show``.

* ``metrics/<suite>.<protocol>.json``: :func:`benchmark.leaderboard.aggregate.headline_metrics` of one
  suite x protocol (five keys), so ``dvc metrics show`` prints one short row per suite x protocol;
* ``dvc_plots/tow_steps.json``: the headline configuration of every method, ToW (mean over seeds) at
  each request step, one record per suite x protocol x method x step (``panel`` = ``"suite / protocol"``);
* ``dvc_plots/headline.json``: one record per suite x protocol x method: ToW AUC (mean over seeds) and
  its 95 % half-width.

The plot templates that read them (field types: step quantitative, method nominal) are
``.dvc/plots/tow_steps.json`` and ``.dvc/plots/headline_bars.json``, declared in ``dvc.yaml`` ``plots:``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.leaderboard.aggregate import _json_number, headline_metrics, summarise_steps

METRICS_DIR = "metrics"
PLOTS_DIR = "dvc_plots"


def _dump(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _panel(suite: Any, protocol: Any) -> str:
    return f"{suite} / {protocol}"


def step_records(data: pd.DataFrame, head: pd.DataFrame) -> list[dict[str, Any]]:
    """ToW mean over seeds per suite, protocol, headline method and step (ok rows only), sorted."""
    ok = data[data["status"] == "ok"]
    ids = set(zip(head["suite"], head["protocol"], head["params_id"], strict=True))
    keep = [k in ids for k in zip(ok["suite"], ok["protocol"], ok["params_id"], strict=True)]
    if not any(keep):
        return []
    steps = summarise_steps(ok[keep])
    out = []
    for _, r in steps.sort_values(["suite", "protocol", "method", "step"], kind="mergesort").iterrows():
        tow = _json_number(r["tow_mean"])
        if tow is None or pd.isna(r["step"]):
            continue
        out.append({"panel": _panel(r["suite"], r["protocol"]), "method": str(r["method"]),
                    "step": int(r["step"]), "tow": tow})  # fmt: skip
    return out


def bar_records(head: pd.DataFrame) -> list[dict[str, Any]]:
    """ToW AUC (mean, 95 % half-width) per suite, protocol and method of the headline; rows without one
    are left out."""
    out = []
    for _, r in head.sort_values(["suite", "protocol", "method"], kind="mergesort").iterrows():
        auc = _json_number(r["tow_auc_mean"])
        if auc is None:
            continue
        out.append({"panel": _panel(r["suite"], r["protocol"]), "method": str(r["method"]), "tow_auc": auc,
                    "tow_auc_ci": _json_number(r.get("tow_auc_ci"))})  # fmt: skip
    return out


def write_dvc_files(data: pd.DataFrame, head: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write the metrics and plot-data files under ``out_dir``; stale metrics files are removed first."""
    out_dir = Path(out_dir)
    metrics_dir = out_dir / METRICS_DIR
    if metrics_dir.is_dir():
        for old in metrics_dir.glob("*.json"):
            old.unlink()
    written = []
    for (suite, protocol), values in headline_metrics(head).items():
        written.append(_dump(values, metrics_dir / f"{_safe(suite)}.{_safe(protocol)}.json"))
    written.append(_dump(step_records(data, head), out_dir / PLOTS_DIR / "tow_steps.json"))
    written.append(_dump(bar_records(head), out_dir / PLOTS_DIR / "headline.json"))
    return written
