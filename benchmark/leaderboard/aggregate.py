"""Aggregate result rows over seeds: means, 95% Student-t confidence intervals, failures.

The input is one row per (suite, protocol, method, params_id, seed, step) with the columns of
:data:`RESULT_COLUMNS` (missing columns are treated as all-NaN).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "GROUP_KEYS",
    "JSON_METRICS",
    "METRICS",
    "PAIRED_COLUMNS",
    "POP_METRICS",
    "RESULT_COLUMNS",
    "final_rows",
    "mean_ci",
    "metrics_json",
    "normalise",
    "paired_vs_best",
    "summarise",
    "summarise_steps",
]

RESULT_COLUMNS: tuple[str, ...] = (
    "suite", "dataset", "model", "protocol", "method", "params_id", "seed", "step", "status", "error",
    "acc_forget", "acc_retain", "acc_test", "gold_acc_forget", "gold_acc_retain", "gold_acc_test",
    "gap_forget", "gap_retain", "gap_test", "tow", "js_forget", "js_test", "update_norm", "dist_to_gold",
    "wall_s", "gold_wall_s", "speedup", "grad_samples", "hvps", "epochs_equiv", "code_hash", "git_rev",
    # added with the population / MIA / relearn metrics (see benchmark.runner.evaluate)
    "kl_forget", "kl_test", "js_forget_pop", "js_test_pop", "kl_forget_pop", "kl_test_pop",
    "js_gg_forget", "js_gg_test", "kl_gg_forget", "kl_gg_test", "js_ratio_forget", "js_ratio_test",
    "kl_ratio_forget", "kl_ratio_test", "gold_pop_forget", "n_gg_forget", "dist_gold_gold",
    "dist_to_gold_rel",
    "mia_loss_auc", "mia_loss_bacc", "gold_mia_loss_auc", "mia_efficacy", "gold_mia_efficacy",
    "lira_z_forget", "lira_member_frac", "neurips_score", "neurips_f", "neurips_n_examples",
    "neurips_n_models", "relearn_steps", "relearn_capped", "gold_relearn_steps", "gold_relearn_capped",
    "cpu_s", "peak_rss_mb", "cuda_peak_mb", "hessians", "fwd_samples",
)  # fmt: skip
STRING_COLUMNS = ("suite", "dataset", "model", "protocol", "method", "params_id", "status", "error",
                  "code_hash", "git_rev")  # fmt: skip
INT_COLUMNS = ("seed", "step", "grad_samples", "fwd_samples", "hvps")
GROUP_KEYS: tuple[str, ...] = ("suite", "protocol", "method", "params_id")
METRICS: tuple[str, ...] = (
    "tow", "acc_forget", "acc_retain", "acc_test", "gap_forget", "gap_retain", "gap_test",
    "js_forget", "js_test", "update_norm", "wall_s", "speedup", "epochs_equiv",
    "kl_forget", "kl_test", "js_forget_pop", "js_test_pop", "js_ratio_forget", "js_ratio_test",
    "kl_ratio_forget", "kl_ratio_test", "dist_to_gold", "dist_to_gold_rel", "mia_loss_auc", "mia_loss_bacc",
    "gold_mia_loss_auc", "mia_efficacy", "gold_mia_efficacy", "lira_z_forget", "lira_member_frac",
    "relearn_steps", "relearn_capped", "gold_relearn_steps", "gold_relearn_capped", "cpu_s", "peak_rss_mb",
    "cuda_peak_mb",
)  # fmt: skip
# Population metrics: one value per (suite, protocol, params_id, step), repeated on each seed's row.
# Summaries report it once (``_mean``; ``_ci`` is NaN: there is no spread over seeds to show).
POP_METRICS: tuple[str, ...] = ("neurips_score", "neurips_f", "neurips_n_examples")
JSON_METRICS: tuple[str, ...] = ("tow", "acc_forget", "js_test", "wall_s", "speedup", "mia_efficacy",
                                 "js_ratio_forget", "neurips_score", "tow_p_vs_best")  # fmt: skip
PAIRED_METRIC = "tow"
PAIRED_ALPHA = 0.05
PAIRED_COLUMNS: tuple[str, ...] = ("best_params_id", "tow_diff_vs_best", "tow_p_vs_best", "tow_n_pairs",
                                   "tied_with_best")  # fmt: skip

OK, SKIPPED = "ok", "skipped"


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with every column of :data:`RESULT_COLUMNS` present and typed.

    Missing columns become NaN (``status`` becomes ``ok`` when the column is absent; a missing
    status in a present column is ``failed`` when the row has an error text, else ``ok``).
    Numeric columns are coerced to float; ``seed``, ``step``, ``grad_samples`` and ``hvps`` to
    nullable integers. Columns beyond :data:`RESULT_COLUMNS` are kept, after them, sorted by name.
    """
    out = df.copy()
    if "status" not in out.columns:
        out["status"] = OK
    for col in RESULT_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    for col in STRING_COLUMNS:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    err = out["error"].map(lambda e: e is not None and str(e) != "")
    out["status"] = [
        str(s) if s is not None else ("failed" if e else OK) for s, e in zip(out["status"], err, strict=True)
    ]
    if out["params_id"].isna().any():  # params_id defaults to the method name
        out["params_id"] = out["params_id"].where(out["params_id"].notna(), out["method"])
    for col in RESULT_COLUMNS:
        if col in STRING_COLUMNS:
            continue
        values = pd.to_numeric(out[col], errors="coerce")
        out[col] = values.round().astype("Int64") if col in INT_COLUMNS else values.astype(float)
    extras = sorted(c for c in out.columns if c not in RESULT_COLUMNS)
    return out[list(RESULT_COLUMNS) + extras].reset_index(drop=True)


def mean_ci(values: Any) -> tuple[float, float, int]:
    """Mean, 95% Student-t CI half-width and n of the finite ``values``.

    ``half = t_{0.975, n-1} · s / √n`` with ``s`` the sample standard deviation (ddof=1).
    n = 0 gives ``(nan, nan, 0)``; n = 1 gives a NaN half-width.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n == 1:
        return mean, math.nan, 1
    sd = 0.0 if np.all(x == x[0]) else float(x.std(ddof=1))  # no rounding noise for constant values
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))
    return mean, half, n


def _first(series: pd.Series) -> Any:
    nonnull = series.dropna()
    return nonnull.iloc[0] if len(nonnull) else None


def _summarise_group(g: pd.DataFrame) -> dict[str, Any]:
    """One summary row for the rows ``g`` of one (suite, protocol, method, params_id[, step])."""
    g = g.sort_values(["seed", "step"], na_position="last", kind="mergesort")
    status = g["status"]
    ok = g[status == OK]
    n_skipped = int((status == SKIPPED).sum())
    bad = g[(status != OK) & (status != SKIPPED)]
    if len(ok) == len(g):
        summary_status = OK
    elif n_skipped == len(g):
        summary_status = SKIPPED
    elif len(ok) == 0:
        summary_status = str(bad["status"].iloc[0]) if len(bad) else SKIPPED
    else:
        summary_status = "partial"
    not_ok = g[status != OK]
    errors = [str(e) for e in not_ok["error"] if e is not None and str(e) != ""]
    if errors:
        error = errors[0]
    elif len(not_ok):
        error = str(not_ok["status"].iloc[0])
    else:
        error = ""
    row: dict[str, Any] = {
        "dataset": _first(g["dataset"]),
        "model": _first(g["model"]),
        "status": summary_status,
        "n_seeds": int(g["seed"].nunique(dropna=False)),
        "n_ok": len(ok),
        "n_failed": len(bad),
        "n_skipped": n_skipped,
        "error": error,
    }
    for m in METRICS:
        mean, half, _ = mean_ci(ok[m].to_numpy(dtype=float)) if len(ok) else (math.nan, math.nan, 0)
        row[f"{m}_mean"] = mean
        row[f"{m}_ci"] = half
    for m in POP_METRICS:
        row[f"{m}_mean"] = mean_ci(ok[m].to_numpy(dtype=float))[0] if len(ok) else math.nan
        row[f"{m}_ci"] = math.nan
    return row


def _summary_columns(with_step: bool) -> list[str]:
    cols = ["suite", "dataset", "model", "protocol", "method", "params_id"]
    if with_step:
        cols.append("step")
    cols += ["status", "n_seeds", "n_ok", "n_failed", "n_skipped", "error"]
    for m in (*METRICS, *POP_METRICS):
        cols += [f"{m}_mean", f"{m}_ci"]
    return cols


def _collect(df: pd.DataFrame, keys: list[str], with_step: bool) -> pd.DataFrame:
    rows = []
    for key, g in df.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key, strict=True))
        row.update(_summarise_group(g))
        rows.append(row)
    out = pd.DataFrame(rows, columns=_summary_columns(with_step))
    for col in ("n_seeds", "n_ok", "n_failed", "n_skipped"):
        out[col] = out[col].astype(int)
    if with_step:
        out["step"] = out["step"].astype("Int64")
    sort = keys if not with_step else [*GROUP_KEYS, "step"]
    return out.sort_values(sort, na_position="last", kind="mergesort").reset_index(drop=True)


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, protocol, method, params_id, seed): the one at the protocol's final step.

    The final step K is the largest step of the (suite, protocol) over all methods. A seed without
    a row at step K contributes its last row instead; if that row is ``ok`` it is turned into a
    ``failed`` row ("incomplete: last step k of K") with no numbers, since it has no final result.
    """
    df = normalise(df)
    if df.empty:
        return df
    k_final = df.groupby(["suite", "protocol"], dropna=False)["step"].transform("max")
    df = df.assign(_k=k_final)
    df = df.sort_values([*GROUP_KEYS, "seed", "step"], na_position="last", kind="mergesort")
    picked = []
    for _, g in df.groupby([*GROUP_KEYS, "seed"], sort=True, dropna=False):
        k = g["_k"].iloc[0]
        at_final = g[g["step"] == k] if not pd.isna(k) else g.iloc[0:0]
        if len(at_final):
            picked.append(at_final.iloc[[-1]])
            continue
        last = g.iloc[[-1]].copy()
        if (last["status"] == OK).all():
            last_step = last["step"].iloc[0]
            last["status"] = "failed"
            last["error"] = f"incomplete: last step {last_step} of {k}"
            for m in (*METRICS, *POP_METRICS):
                last[m] = np.nan
        picked.append(last)
    return pd.concat(picked).drop(columns="_k").reset_index(drop=True)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Summary over seeds at each protocol's final step: one row per (suite, protocol, method, params_id).

    Columns: suite, dataset, model, protocol, method, params_id, status, n_seeds, n_ok, n_failed,
    n_skipped, error, then ``<metric>_mean`` and ``<metric>_ci`` for each of :data:`METRICS`.

    * means and CIs use the ``ok`` rows only (and, per metric, their finite values);
      ``_ci`` is the 95% Student-t half-width ``t_{0.975,n-1}·s/√n`` (NaN for n < 2);
    * ``n_seeds`` counts seeds, ``n_failed`` rows with a status other than ``ok``/``skipped``
      (failed, timeout, nan, incomplete), ``n_skipped`` skipped rows;
    * ``status`` is ``ok`` (all seeds ok), ``partial`` (some ok), ``skipped`` (all skipped) or
      the first non-ok status; ``error`` is the first error text (the skip reason for skipped rows).

    * population metrics (:data:`POP_METRICS`, e.g. the NeurIPS competition score) are one value per
      params_id computed across seeds: ``_mean`` is that value, ``_ci`` is NaN;
    * :data:`PAIRED_COLUMNS` compare each row with the best method of its (suite, protocol), see
      :func:`paired_vs_best`.

    Sorted by (suite, protocol, method, params_id).
    """
    final = final_rows(df)
    return paired_vs_best(final, _collect(final, list(GROUP_KEYS), with_step=False))


def _paired_p(diff: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of ``diff`` (``scipy.stats.ttest_rel``); degenerate cases:
    fewer than 2 pairs -> NaN; all differences equal -> 1.0 if they are 0, else 0.0."""
    if diff.size < 2:
        return math.nan
    if np.all(diff == diff[0]):
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_rel(diff, np.zeros_like(diff)).pvalue)


def paired_vs_best(final: pd.DataFrame, summary: pd.DataFrame, alpha: float = PAIRED_ALPHA) -> pd.DataFrame:
    """Add :data:`PAIRED_COLUMNS` to ``summary``: each params_id against the best of its (suite, protocol).

    The *best* is the row with the highest mean final-step ToW among those that are not the
    ``retrain`` reference (ties: first by method, params_id), as in the leaderboard's bold best.
    Every other row is paired with it seed by seed (``ok`` final rows of both with a finite ToW):

    * ``tow_diff_vs_best`` = mean over paired seeds of ``ToW(row) − ToW(best)`` (≤ 0 up to noise);
    * ``tow_p_vs_best`` = two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``;
      t = d̄ / (s_d / √n), n − 1 degrees of freedom) — NaN with fewer than 2 pairs; if all
      differences are equal, 1.0 when they are 0 and 0.0 otherwise;
    * ``tied_with_best`` = True when ``p ≥ alpha`` (0.05): *not distinguishable from the best* at this
      number of seeds (few seeds make this weak evidence of equality); True for the best itself;
      None when there is no p-value;
    * ``best_params_id``, ``tow_n_pairs``.

    Reference: Student's paired t-test, e.g. J. Demšar, "Statistical comparisons of classifiers over
    multiple data sets", JMLR 2006 (pairing on a shared source of variation: here the seed, which fixes
    the original model, the forget sets and the gold models).
    """
    out = summary.copy()
    for col in PAIRED_COLUMNS:
        out[col] = pd.Series([None] * len(out), dtype=object)
    m = PAIRED_METRIC
    ok = final[(final["status"] == OK) & np.isfinite(final[m].to_numpy(dtype=float))]
    for (suite, proto), sub in out.groupby(["suite", "protocol"], sort=False, dropna=False):
        means = sub[f"{m}_mean"].to_numpy(dtype=float)
        eligible = sub[(sub["method"] != "retrain") & np.isfinite(means)]
        if eligible.empty:
            continue
        best = eligible.sort_values([f"{m}_mean", "method", "params_id"], ascending=[False, True, True],
                                    kind="mergesort").iloc[0]  # fmt: skip
        in_group = ok[(ok["suite"] == suite) & (ok["protocol"] == proto)]
        best_vals = in_group[in_group["params_id"] == best["params_id"]].set_index("seed")[m]
        for idx, r in sub.iterrows():
            out.at[idx, "best_params_id"] = best["params_id"]
            if r["params_id"] == best["params_id"]:
                out.at[idx, "tow_diff_vs_best"] = 0.0
                out.at[idx, "tow_n_pairs"] = int(best_vals.size)
                out.at[idx, "tied_with_best"] = True
                continue
            vals = in_group[in_group["params_id"] == r["params_id"]].set_index("seed")[m]
            common = vals.index.intersection(best_vals.index)
            diff = (vals.loc[common] - best_vals.loc[common]).to_numpy(dtype=float)
            p = _paired_p(diff)
            out.at[idx, "tow_n_pairs"] = int(diff.size)
            out.at[idx, "tow_diff_vs_best"] = float(diff.mean()) if diff.size else math.nan
            out.at[idx, "tow_p_vs_best"] = p
            out.at[idx, "tied_with_best"] = None if math.isnan(p) else bool(p >= alpha)
    for col in ("tow_diff_vs_best", "tow_p_vs_best"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["tow_n_pairs"] = pd.to_numeric(out["tow_n_pairs"], errors="coerce").astype("Int64")
    return out


def summarise_steps(df: pd.DataFrame) -> pd.DataFrame:
    """As :func:`summarise` for every step: one row per (suite, protocol, method, params_id, step).

    Rows without a step (e.g. skipped cells) form a group with step ``<NA>``, sorted last.
    """
    df = normalise(df)
    return _collect(df, [*GROUP_KEYS, "step"], with_step=True)


def _json_number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return round(v, 4)


def metrics_json(summary: pd.DataFrame) -> dict[str, Any]:
    """Nested ``{suite: {protocol: {params_id: {metric: mean}}}}`` for ``dvc metrics show``.

    Metrics are the :data:`JSON_METRICS` means (tow, acc_forget, js_test, wall_s, speedup, mia_efficacy,
    js_ratio_forget, neurips_score) and ``tow_p_vs_best`` (the paired-test p-value against the best;
    null for the best itself), rounded to 4 decimals; NaN/inf (and skipped or failed cells) become
    ``None`` (JSON ``null``). Keys are inserted in sorted order.
    """
    out: dict[str, Any] = {}
    rows = summary.sort_values(list(GROUP_KEYS), kind="mergesort")
    for _, r in rows.iterrows():
        cell = out.setdefault(str(r["suite"]), {}).setdefault(str(r["protocol"]), {})
        cell[str(r["params_id"])] = {
            m: _json_number(r.get(m) if m in PAIRED_COLUMNS else r.get(f"{m}_mean")) for m in JSON_METRICS
        }
    return out
