"""Aggregate result rows over seeds: means, 95% Student-t confidence intervals, failures.

The input is one row per (suite, protocol, method, params_id, seed, step) with exactly the columns of
:class:`benchmark.core.results.ResultRow` (:data:`RESULT_COLUMNS`; a missing or unexpected column is a
one-line :class:`~benchmark.core.results.SchemaError`).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.core.results import COLUMN_KINDS, RESULT_COLUMNS, check_columns
from benchmark.core.status import PARTIAL, Status

__all__ = [
    "GROUP_KEYS",
    "HEADLINE_METRICS",
    "JSON_METRICS",
    "METRICS",
    "PAIRED_COLUMNS",
    "FLOOR_COLUMNS",
    "MARGIN_COLUMNS",
    "RESULT_COLUMNS",
    "SEQUENCE_METRICS",
    "compare",
    "final_rows",
    "margin_vs_reference",
    "mean_ci",
    "headline_metrics",
    "metrics_json",
    "noise_floor",
    "normalise",
    "paired_vs_best",
    "seed_table",
    "summarise",
    "summarise_steps",
]

# the result row's columns and their types: benchmark.core.results.ResultRow (shared with the writer)
STRING_COLUMNS = tuple(c for c in RESULT_COLUMNS if COLUMN_KINDS[c] is str)
INT_COLUMNS = tuple(c for c in RESULT_COLUMNS if COLUMN_KINDS[c] is int)
BOOL_COLUMNS = tuple(c for c in RESULT_COLUMNS if COLUMN_KINDS[c] is bool)
GROUP_KEYS: tuple[str, ...] = ("suite", "protocol", "method", "params_id")
METRICS: tuple[str, ...] = (
    "tow", "acc_forget", "acc_retain", "acc_test", "gap_forget", "gap_retain", "gap_test",
    "js_forget", "js_test", "update_norm", "wall_s", "speedup", "epochs_equiv",
    "kl_forget", "kl_test", "js_forget_pop", "js_test_pop", "js_ratio_forget", "js_ratio_test",
    "kl_ratio_forget", "kl_ratio_test", "dist_to_gold", "dist_to_gold_rel", "mia_loss_auc", "mia_loss_bacc",
    "gold_mia_loss_auc", "mia_efficacy", "gold_mia_efficacy", "lira_z_forget", "lira_member_frac",
    "relearn_steps", "relearn_capped", "gold_relearn_steps", "gold_relearn_capped", "cpu_s", "peak_rss_mb",
    "cuda_peak_mb", "acc_forget_true", "gold_acc_forget_true", "acc_unidentified_true",
    "gold_acc_unidentified_true",
)  # fmt: skip
# Per-seed summaries of the whole sequence of requests (see :func:`seed_table`), summarised like METRICS.
SEQUENCE_METRICS: tuple[str, ...] = ("tow_auc", "tow_step1")
PAIRED_METRIC = "tow_auc"
PAIRED_ALPHA = 0.05
PAIRED_COLUMNS: tuple[str, ...] = ("best_params_id", "tow_auc_diff_vs_best", "tow_auc_p_vs_best",
                                   "tow_auc_n_pairs", "tied_with_best")  # fmt: skip
REFERENCE_METHOD = "original"  # the do-nothing baseline every margin is taken against
FLOOR_METHOD = "retrain"  # an independent retrain: the gold-to-gold noise floor
MARGIN_COLUMNS: tuple[str, ...] = ("margin_vs_original", "margin_vs_original_ci", "margin_vs_original_p",
                                   "margin_n_pairs")  # fmt: skip
FLOOR_COLUMNS: tuple[str, ...] = ("floor_tow_auc", "floor_tow_auc_ci")
# per suite x protocol in the DVC metrics files (headline_metrics): a few numbers, not one per method
HEADLINE_METRICS: tuple[str, ...] = ("best_method", "best_tow_auc", "best_margin_vs_original",
                                     "original_tow_auc", "retrain_tow_auc")  # fmt: skip
JSON_METRICS: tuple[str, ...] = ("tow_auc", "tow_final", "margin_vs_original", "klom_mean", "neurips_score")

OK, SKIPPED, FAILED = Status.OK, Status.SKIPPED, Status.FAILED


def _as_bool(v: Any) -> bool:
    """A flag read from a CSV or a frame: bools as they are; empty -> False; text ``true``/``1``/``yes``."""
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return False
    return str(v).strip().lower() in {"true", "1", "1.0", "yes"}


def read_results(path: Path) -> pd.DataFrame:
    """A ``results/<suite>.csv`` as written by ``evaluate``: only an empty field is missing, so the status
    ``nan`` (non-finite weights) stays the string ``"nan"`` (pandas' default reads it as a missing value)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` with the columns of :data:`RESULT_COLUMNS`, in that order, typed.

    ``df`` must have exactly those columns (in any order): a missing or unexpected one raises a one-line
    :class:`~benchmark.core.results.SchemaError` naming it. Typing follows
    :class:`~benchmark.core.results.ResultRow`: text columns hold ``None`` where empty, integer columns
    are nullable integers (``Int64``), ``selected`` is a bool (empty: False; text ``true``/``1``/``yes``:
    True), every other column float.
    A missing status is ``failed`` when the row has an error text, else ``ok``; a missing ``params_id``
    is the method name.
    """
    check_columns(df.columns, "result rows")
    out = df.copy()
    for col in STRING_COLUMNS:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    err = out["error"].map(lambda e: e is not None and str(e) != "")
    out["status"] = [
        str(s) if s is not None else (FAILED if e else OK) for s, e in zip(out["status"], err, strict=True)
    ]
    if out["params_id"].isna().any():  # params_id defaults to the method name
        out["params_id"] = out["params_id"].where(out["params_id"].notna(), out["method"])
    for col in BOOL_COLUMNS:
        out[col] = [_as_bool(v) for v in out[col]]
    for col in RESULT_COLUMNS:
        if col in STRING_COLUMNS or col in BOOL_COLUMNS:
            continue
        values = pd.to_numeric(out[col], errors="coerce")
        out[col] = values.round().astype("Int64") if col in INT_COLUMNS else values.astype(float)
    return out[list(RESULT_COLUMNS)].reset_index(drop=True)


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
    half = float(_t975(n - 1) * sd / math.sqrt(n))
    return mean, half, n


@functools.cache
def _t975(dof: int) -> float:
    """``stats.t.ppf(0.975, dof)`` (the same float; scipy's call costs ~0.3 ms, made once per metric)."""
    return stats.t.ppf(0.975, dof)


def _first_value(values: np.ndarray) -> Any:
    """The first non-missing element (None if there is none)."""
    for v in values:
        if not pd.isna(v):
            return v
    return None


def _summarise_group(cols: dict[str, np.ndarray], metrics: tuple[str, ...]) -> dict[str, Any]:
    """One summary row for the rows of one (suite, protocol, method, params_id[, step]): ``cols`` holds
    each needed column's values for those rows, ordered by seed then step (missing last)."""
    status = cols["status"]
    ok_mask = status == OK
    skipped = status == SKIPPED
    n, n_ok, n_skipped = len(status), int(ok_mask.sum()), int(skipped.sum())
    bad_mask = ~ok_mask & ~skipped
    summary_status: str
    if n_ok == n:
        summary_status = OK
    elif n_skipped == n:
        summary_status = SKIPPED
    elif n_ok == 0:
        summary_status = str(status[bad_mask][0]) if bad_mask.any() else SKIPPED
    else:
        summary_status = PARTIAL
    not_ok = ~ok_mask
    errors = [str(e) for e in cols["error"][not_ok] if e is not None and str(e) != ""]
    if errors:
        error = errors[0]
    elif not_ok.any():
        error = str(status[not_ok][0])
    else:
        error = ""
    row: dict[str, Any] = {
        "dataset": _first_value(cols["dataset"]),
        "model": _first_value(cols["model"]),
        "status": summary_status,
        "n_seeds": len(pd.unique(cols["seed"])),
        "n_ok": n_ok,
        "n_failed": int(bad_mask.sum()),
        "n_skipped": n_skipped,
        "error": error,
        "origin": _first_value(cols["origin"]) if "origin" in cols else None,
        "code_hash": ",".join(sorted({str(v) for v in cols["code_hash"] if not pd.isna(v)})) or None,
        "tuning_constraint": _first_value(cols["tuning_constraint"]) if "tuning_constraint" in cols else None,
    }
    for m in metrics:
        vals = cols[m][ok_mask].astype(float) if m in cols and n_ok else np.array([])
        mean, half, _ = mean_ci(vals)
        row[f"{m}_mean"] = mean
        row[f"{m}_ci"] = half
    return row


def _summary_columns(with_step: bool, metrics: tuple[str, ...]) -> list[str]:
    cols = ["suite", "dataset", "model", "protocol", "method", "params_id"]
    if with_step:
        cols.append("step")
    cols += ["status", "n_seeds", "n_ok", "n_failed", "n_skipped", "error", "origin", "code_hash",
             "tuning_constraint"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_ci"]
    return cols


_SUMMARY_INPUTS = ("status", "error", "seed", "step", "dataset", "model", "origin", "code_hash",
                   "tuning_constraint")


def _collect(df: pd.DataFrame, keys: list[str], with_step: bool, metrics: tuple[str, ...]) -> pd.DataFrame:
    # only the columns a summary reads: every group is a copy, and the result rows carry ~100 columns
    wanted = dict.fromkeys([*keys, *_SUMMARY_INPUTS, *metrics])
    df = df[[c for c in wanted if c in df.columns]]
    # rows ordered by seed then step inside each group (missing last, ties in input order), then one pass
    # over numpy slices: a DataFrame per group cost ~7 ms each (most of a leaderboard render)
    order = [c for c in dict.fromkeys([*keys, "seed", "step"]) if c in df.columns]
    df = df.sort_values(order, na_position="last", kind="mergesort")
    arrays = {c: df[c].to_numpy() for c in df.columns}
    rows = []
    groups = df.groupby(keys, sort=True, dropna=False).indices
    for key, idx in groups.items():
        key = key if isinstance(key, tuple) else (key,)
        idx = np.sort(idx)
        row = dict(zip(keys, key, strict=True))
        row.update(_summarise_group({c: v[idx] for c, v in arrays.items()}, metrics))
        rows.append(row)
    out = pd.DataFrame(rows, columns=_summary_columns(with_step, metrics))
    for col in ("n_seeds", "n_ok", "n_failed", "n_skipped"):
        out[col] = out[col].astype(int)
    if with_step:
        out["step"] = out["step"].astype("Int64")
    sort = keys if not with_step else [*GROUP_KEYS, "step"]
    return out.sort_values(sort, na_position="last", kind="mergesort").reset_index(drop=True)


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, protocol, method, params_id, seed): the one at the protocol's final step.

    The final step K is the largest step of the (suite, protocol) over all methods. A seed whose row at K
    is not ``ok`` carries the status and error of its first failed request (the cause: a method that failed
    at request 1 reads as its exception, not as "not run: request 1 did not finish"). A seed without
    a row at step K contributes its last row instead; if that row is ``ok`` it is turned into a
    ``failed`` row ("incomplete: last step k of K") with no numbers, since it has no final result.
    """
    df = normalise(df)
    if df.empty:
        return df
    k_final = df.groupby(["suite", "protocol"], dropna=False)["step"].transform("max")
    df = df.assign(_k=k_final)
    df = df.sort_values([*GROUP_KEYS, "seed", "step"], na_position="last", kind="mergesort")
    df = df.reset_index(drop=True)
    # choose per (group, seed) on plain arrays (positions in the sorted frame), then take the chosen rows
    gid = df.groupby([*GROUP_KEYS, "seed"], sort=True, dropna=False).ngroup().to_numpy()
    n_groups, positions = int(gid.max()) + 1, np.arange(len(df))
    step, k = df["step"].to_numpy(dtype=float), df["_k"].to_numpy(dtype=float)
    statuses = df["status"].to_numpy(dtype=object)
    at_k, bad = step == k, ~df["status"].isin([OK, SKIPPED]).to_numpy()  # a NaN step or K: never equal
    last_at_k, last_row, first_bad = (np.full(n_groups, -1), np.full(n_groups, -1),
                                      np.full(n_groups, len(df)))  # fmt: skip
    np.maximum.at(last_at_k, gid[at_k], positions[at_k])
    np.maximum.at(last_row, gid, positions)
    np.minimum.at(first_bad, gid[bad], positions[bad])
    picks: list[int] = []
    reasons: dict[int, tuple[Any, Any]] = {}  # position -> (status, error) of the first failed request
    incomplete: dict[int, str] = {}  # position -> error of a seed without a row at the final step
    errors = df["error"].to_numpy(dtype=object)
    for g in range(n_groups):
        if last_at_k[g] >= 0:
            pick = int(last_at_k[g])
            if first_bad[g] < len(df) and statuses[pick] != OK:  # the first reason, not "not run: request 1"
                reasons[pick] = (statuses[first_bad[g]], errors[first_bad[g]])
        else:
            pick = int(last_row[g])
            if statuses[pick] == OK:
                incomplete[pick] = f"incomplete: last step {df['step'].iat[pick]} of {df['_k'].iat[pick]}"
        picks.append(pick)
    out = df.take(picks).drop(columns="_k")
    columns = list(out.columns)
    status_col, error_col = columns.index("status"), columns.index("error")
    where = {pos: i for i, pos in enumerate(picks)}
    for pos, (status, error) in reasons.items():
        out.iloc[where[pos], status_col] = status
        out.iloc[where[pos], error_col] = error
    if incomplete:
        rows = [where[pos] for pos in incomplete]
        out.iloc[rows, status_col] = FAILED
        out.iloc[rows, error_col] = list(incomplete.values())
        for m in METRICS:
            if m in out.columns:
                col = columns.index(m)
                if out[m].dtype.kind in "iub":
                    out[m] = out[m].astype(float)
                out.iloc[rows, col] = np.nan
    return out.reset_index(drop=True)


def _key(values: Any) -> tuple:
    return tuple(None if pd.isna(v) else v for v in values)


def seed_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`final_rows` plus the per-seed summaries of the whole sequence of K requests.

    * ``tow_auc`` — the area under the sequential ToW curve, normalised by its length:
      ``AUC_s = (1/K) Σ_{k=1..K} ToW_s(k)`` over the steps 1..K of the (suite, protocol) (every step
      that any method of the protocol reached). A seed with a step missing, not ``ok`` or without a
      finite ToW has no AUC (NaN): averaging the steps it has would reward stopping early;
    * ``tow_step1`` — ToW after the first request (NaN if that step is missing or not ``ok``);
    * ``tow_final`` is the final row's ``tow``, i.e. the column itself.
    """
    data = normalise(df)
    final = final_rows(data)
    if final.empty:
        return final.assign(tow_auc=pd.Series(dtype=float), tow_step1=pd.Series(dtype=float))
    protocol_steps: dict[tuple, list[int]] = {}
    for key, g in data.groupby(["suite", "protocol"], dropna=False):
        protocol_steps[_key(key)] = sorted({int(v) for v in g["step"].dropna()})
    # the good rows of every (group, seed), one per step (a duplicated step: the last row, as in final_rows),
    # ordered by step: the AUC is their mean when they cover all the protocol's steps
    narrow = data[[*GROUP_KEYS, "seed", "step", "status", "tow"]]
    gid = narrow.groupby([*GROUP_KEYS, "seed"], sort=False, dropna=False).ngroup().to_numpy()
    tow = narrow["tow"].to_numpy(dtype=float)
    good = (narrow["status"] == OK).to_numpy() & np.isfinite(tow) & narrow["step"].notna().to_numpy()
    rows = pd.DataFrame({"g": gid[good], "step": narrow["step"].to_numpy()[good].astype(float),
                         "tow": tow[good]})  # fmt: skip
    rows = rows.drop_duplicates(["g", "step"], keep="last").sort_values(["g", "step"], kind="mergesort")
    firsts = narrow.iloc[np.unique(gid, return_index=True)[1]]  # one row per group, by group number
    by_group: dict[Any, tuple[np.ndarray, np.ndarray]] = {
        gi: (sub["step"].to_numpy(), sub["tow"].to_numpy()) for gi, sub in rows.groupby("g", sort=False)}
    aucs: dict[tuple, tuple[float, float]] = {}
    for gi, r in enumerate(firsts[[*GROUP_KEYS, "seed"]].itertuples(False)):
        k = _key(r)
        steps = protocol_steps.get(k[:2], [])
        have_steps, have_tow = by_group.get(gi, (np.empty(0), np.empty(0)))
        auc = float(np.mean(have_tow)) if steps and len(have_steps) == len(steps) else math.nan
        first = float(have_tow[0]) if steps and len(have_steps) and have_steps[0] == steps[0] else math.nan
        aucs[k] = (auc, first)
    keyed = [aucs.get(_key(r), (math.nan, math.nan)) for r in final[[*GROUP_KEYS, "seed"]].itertuples(False)]
    final["tow_auc"] = [a for a, _ in keyed]
    final["tow_step1"] = [f for _, f in keyed]
    return final


def summarise(df: pd.DataFrame, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Summary over seeds: one row per (suite, protocol, method, params_id).

    Columns: suite, dataset, model, protocol, method, params_id, status, n_seeds, n_ok, n_failed,
    n_skipped, error, origin, code_hash, tuning_constraint, then ``<metric>_mean`` and ``<metric>_ci`` for
    each of :data:`METRICS` (at the protocol's final step) and :data:`SEQUENCE_METRICS` (``tow_auc``: the
    per-seed mean ToW over steps 1..K, ``tow_step1``; see :func:`seed_table`), then
    :data:`PAIRED_COLUMNS`, :data:`MARGIN_COLUMNS` and :data:`FLOOR_COLUMNS`.

    * means and CIs use the ``ok`` final rows only (and, per metric, their finite values);
      ``_ci`` is the 95% Student-t half-width ``t_{0.975,n-1}·s/√n`` (NaN for n < 2);
    * ``n_seeds`` counts seeds, ``n_failed`` rows with a status other than ``ok``/``skipped``
      (failed, timeout, nan, incomplete), ``n_skipped`` skipped rows;
    * ``status`` is ``ok`` (all seeds ok), ``partial`` (some ok), ``skipped`` (all skipped) or
      the first non-ok status; ``error`` is the first error text (the skip reason for skipped rows);
    * :data:`PAIRED_COLUMNS`: the paired test of the ToW AUC against the best of the (suite, protocol),
      :func:`paired_vs_best`; :data:`MARGIN_COLUMNS`: the paired margin over ``original``,
      :func:`margin_vs_reference`; :data:`FLOOR_COLUMNS`: the ``retrain`` AUC, :func:`noise_floor`.

    Sorted by (suite, protocol, method, params_id). ``seeds``: :func:`seed_table` of ``df`` when the caller
    already has it.
    """
    seeds = seed_table(df) if seeds is None else seeds
    summary = _collect(seeds, list(GROUP_KEYS), with_step=False, metrics=(*METRICS, *SEQUENCE_METRICS))
    return compare(seeds, summary)


def compare(seeds: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the paired comparisons among its own rows (best, margin, floor) (re)computed.

    Used on the full grid and again on the one-row-per-method headline, whose best is chosen among
    the headline rows only."""
    out = summary.drop(columns=[c for c in (*PAIRED_COLUMNS, *MARGIN_COLUMNS, *FLOOR_COLUMNS)
                                if c in summary.columns])  # fmt: skip
    return noise_floor(margin_vs_reference(seeds, paired_vs_best(seeds, out)))


def _paired_p(diff: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test of ``diff`` (``scipy.stats.ttest_rel``); degenerate cases:
    fewer than 2 pairs -> NaN; all differences equal -> 1.0 if they are 0, else 0.0."""
    if diff.size < 2:
        return math.nan
    if np.all(diff == diff[0]):
        return 1.0 if diff[0] == 0 else 0.0
    return float(stats.ttest_rel(diff, np.zeros_like(diff)).pvalue)


class _SeedValues:
    """The finite ``m`` of the ``ok`` seeds of each (suite, protocol, params_id), indexed by seed: built once
    per seed table (one groupby), then looked up per pair instead of filtering the whole table each time."""

    def __init__(self, seeds: pd.DataFrame, m: str) -> None:
        ok = seeds.loc[seeds["status"] == OK, ["suite", "protocol", "params_id", "seed", m]]
        self._by: dict[tuple, pd.Series] = {}
        for key, g in ok.groupby(["suite", "protocol", "params_id"], sort=False):  # NaN keys: never matched
            vals = g.set_index("seed")[m].astype(float)
            self._by[key] = vals[np.isfinite(vals.to_numpy())]
        self._empty = pd.Series(dtype=float)

    def __call__(self, suite: Any, proto: Any, params_id: Any) -> pd.Series:
        return self._by.get((suite, proto, params_id), self._empty)

    def paired_diff(self, suite: Any, proto: Any, a: Any, b: Any) -> np.ndarray:
        """``m(a) − m(b)`` on the seeds both have (same seed = same original model, forget sets, gold
        models)."""
        va, vb = self(suite, proto, a), self(suite, proto, b)
        common = va.index.intersection(vb.index).sort_values()
        return (va.loc[common] - vb.loc[common]).to_numpy(dtype=float)


def paired_vs_best(seeds: pd.DataFrame, summary: pd.DataFrame, alpha: float = PAIRED_ALPHA) -> pd.DataFrame:
    """Add :data:`PAIRED_COLUMNS` to ``summary``: each row against the best of its (suite, protocol).

    ``seeds`` is :func:`seed_table`. The *best* is the row of ``summary`` with the highest mean ToW AUC
    among those that are not the ``retrain`` reference (ties: first by method, params_id), as in the
    leaderboard's bold best. Every other row is paired with it seed by seed (``ok`` seeds of both with
    a finite AUC):

    * ``tow_auc_diff_vs_best`` = mean over paired seeds of ``AUC(row) − AUC(best)`` (≤ 0 up to noise);
    * ``tow_auc_p_vs_best`` = two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``;
      t = d̄ / (s_d / √n), n − 1 degrees of freedom) — NaN with fewer than 2 pairs; if all
      differences are equal, 1.0 when they are 0 and 0.0 otherwise;
    * ``tied_with_best`` = True when ``p ≥ alpha`` (0.05): *not distinguishable from the best* at this
      number of seeds (few seeds make this weak evidence of equality); True for the best itself;
      None when there is no p-value;
    * ``best_params_id``, ``tow_auc_n_pairs``.

    Reference: Student's paired t-test, e.g. J. Demšar, "Statistical comparisons of classifiers over
    multiple data sets", JMLR 2006 (pairing on a shared source of variation: here the seed, which fixes
    the original model, the forget sets and the gold models).
    """
    out = summary.copy()
    for col in PAIRED_COLUMNS:
        out[col] = pd.Series([None] * len(out), dtype=object, index=out.index)
    m = PAIRED_METRIC
    values = _SeedValues(seeds, m)
    for (suite, proto), sub in out.groupby(["suite", "protocol"], sort=False, dropna=False):
        means = sub[f"{m}_mean"].to_numpy(dtype=float)
        eligible = sub[(sub["method"] != FLOOR_METHOD) & np.isfinite(means)]
        if eligible.empty:
            continue
        best = eligible.sort_values([f"{m}_mean", "method", "params_id"], ascending=[False, True, True],
                                    kind="mergesort").iloc[0]  # fmt: skip
        for idx, r in sub.iterrows():
            out.at[idx, "best_params_id"] = best["params_id"]
            if r["params_id"] == best["params_id"]:
                out.at[idx, "tow_auc_diff_vs_best"] = 0.0
                n_best = values(suite, proto, r["params_id"]).size
                out.at[idx, "tow_auc_n_pairs"] = int(n_best)
                out.at[idx, "tied_with_best"] = True
                continue
            diff = values.paired_diff(suite, proto, r["params_id"], best["params_id"])
            p = _paired_p(diff)
            out.at[idx, "tow_auc_n_pairs"] = int(diff.size)
            out.at[idx, "tow_auc_diff_vs_best"] = float(diff.mean()) if diff.size else math.nan
            out.at[idx, "tow_auc_p_vs_best"] = p
            out.at[idx, "tied_with_best"] = None if math.isnan(p) else bool(p >= alpha)
    for col in ("tow_auc_diff_vs_best", "tow_auc_p_vs_best"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["tow_auc_n_pairs"] = pd.to_numeric(out["tow_auc_n_pairs"], errors="coerce").astype("Int64")
    return out


def _reference_params_id(sub: pd.DataFrame, method: str) -> Any:
    """The params_id of ``method`` in ``sub``: the one named like the method, else the first."""
    ids = sorted(str(v) for v in sub.loc[sub["method"] == method, "params_id"].dropna())
    if not ids:
        return None
    return method if method in ids else ids[0]


def margin_vs_reference(seeds: pd.DataFrame, summary: pd.DataFrame,
                        reference: str = REFERENCE_METHOD) -> pd.DataFrame:  # fmt: skip
    """Add :data:`MARGIN_COLUMNS`: the paired margin of each row's ToW AUC over ``original`` (do nothing).

    Per (suite, protocol), for the seeds both have (``ok``, finite AUC): ``d_s = AUC_s(row) −
    AUC_s(original)``; ``margin_vs_original`` = mean d, ``margin_vs_original_ci`` = the 95% Student-t
    half-width of d (:func:`mean_ci`, NaN for fewer than 2 pairs), ``margin_vs_original_p`` = the
    two-sided paired t-test p-value (as :func:`paired_vs_best`), ``margin_n_pairs`` = number of pairs.
    ``original`` itself gets 0 with no CI. All NaN when the protocol has no ``original`` row.
    """
    out = summary.copy()
    for col in MARGIN_COLUMNS:
        out[col] = math.nan
    values = _SeedValues(seeds, PAIRED_METRIC)
    for (suite, proto), sub in out.groupby(["suite", "protocol"], sort=False, dropna=False):
        ref = _reference_params_id(sub, reference)
        if ref is None:
            continue
        for idx, r in sub.iterrows():
            diff = values.paired_diff(suite, proto, r["params_id"], ref)
            mean, half, n = mean_ci(diff)
            out.at[idx, "margin_vs_original"] = mean
            out.at[idx, "margin_n_pairs"] = n
            if r["params_id"] != ref:
                out.at[idx, "margin_vs_original_ci"] = half
                out.at[idx, "margin_vs_original_p"] = _paired_p(diff)
    out["margin_n_pairs"] = pd.to_numeric(out["margin_n_pairs"], errors="coerce").astype("Int64")
    return out


def noise_floor(summary: pd.DataFrame, floor: str = FLOOR_METHOD) -> pd.DataFrame:
    """Add :data:`FLOOR_COLUMNS`: the mean ± CI ToW AUC of the ``retrain`` row of each (suite, protocol).

    ``retrain`` is an independent retrain with another seed judged against the gold model like any
    method, so its AUC (and ``1 − AUC``) is the gold-to-gold noise floor: what "as good as retraining"
    can reach at this number of seeds. NaN when the protocol has no ``retrain`` row."""
    out = summary.copy()
    out["floor_tow_auc"] = math.nan
    out["floor_tow_auc_ci"] = math.nan
    for _, sub in out.groupby(["suite", "protocol"], sort=False, dropna=False):
        ref = _reference_params_id(sub, floor)
        if ref is None:
            continue
        r = sub[sub["params_id"] == ref].iloc[0]
        out.loc[sub.index, "floor_tow_auc"] = r[f"{PAIRED_METRIC}_mean"]
        out.loc[sub.index, "floor_tow_auc_ci"] = r[f"{PAIRED_METRIC}_ci"]
    return out


def summarise_steps(df: pd.DataFrame) -> pd.DataFrame:
    """As :func:`summarise` for every step (without the sequence and paired columns): one row per
    (suite, protocol, method, params_id, step).

    Rows without a step (e.g. skipped cells) form a group with step ``<NA>``, sorted last.
    """
    df = normalise(df)
    return _collect(df, [*GROUP_KEYS, "step"], with_step=True, metrics=METRICS)


def _json_number(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return round(v, 4)


def metrics_json(headline: pd.DataFrame) -> dict[str, Any]:
    """Every method's headline numbers, nested ``{suite: {protocol: {method: {metric: value}}}}``.

    Written to ``leaderboards/metrics_by_method.json`` (a plain committed file, not a DVC metric: it has
    hundreds of leaves); :func:`headline_metrics` is the compact file ``dvc metrics show`` reads.

    ``headline`` is one row per method (:func:`benchmark.leaderboard.headline.headline`). Metrics
    (:data:`JSON_METRICS`): ``tow_auc`` (mean ToW over the K requests), ``tow_final`` (ToW after request
    K), ``margin_vs_original`` (paired AUC margin over doing nothing), ``klom_mean`` and ``neurips_score``
    (population file, final step; null when absent), rounded to 4 decimals; NaN/inf become ``None``.
    """
    out: dict[str, Any] = {}
    source = {"tow_auc": "tow_auc_mean", "tow_final": "tow_mean"}
    rows = headline.sort_values(["suite", "protocol", "method"], kind="mergesort")
    for _, r in rows.iterrows():
        cell = out.setdefault(str(r["suite"]), {}).setdefault(str(r["protocol"]), {})
        cell[str(r["method"])] = {m: _json_number(r.get(source.get(m, m))) for m in JSON_METRICS}
    return out


def headline_metrics(headline: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """The DVC headline metrics: per (suite, protocol), a handful of numbers for ``dvc metrics show``.

    For each suite x protocol of ``headline`` (one row per method), :data:`HEADLINE_METRICS`:
    ``best_method`` (the unlearning method with the highest ToW AUC, ``original`` and ``retrain`` excluded;
    ties broken by name), its ``best_tow_auc`` and paired ``best_margin_vs_original`` (AUC margin over
    doing nothing), ``original_tow_auc`` (the floor to beat) and ``retrain_tow_auc`` (an independent
    retrain: the noise floor). Numbers rounded to 4 decimals, NaN/inf/absent -> ``None``; ``best_method``
    is ``None`` when no unlearning method has a finite AUC.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (suite, protocol), rows in headline.groupby(["suite", "protocol"], sort=True):
        by_method = {str(r["method"]): r for _, r in rows.iterrows()}
        cols = ["method", "tow_auc_mean", *(["margin_vs_original"] if "margin_vs_original" in rows else [])]
        cand = rows.loc[~rows["method"].isin([REFERENCE_METHOD, FLOOR_METHOD]), cols].copy()
        auc = pd.to_numeric(cand["tow_auc_mean"], errors="coerce")
        cand["_auc"] = auc.where(np.isfinite(auc))
        cand = cand.dropna(subset=["_auc"]).sort_values(["_auc", "method"], ascending=[False, True],
                                                        kind="mergesort")  # fmt: skip
        best = cand.iloc[0] if len(cand) else None
        ref, floor = by_method.get(REFERENCE_METHOD), by_method.get(FLOOR_METHOD)
        out[(str(suite), str(protocol))] = {
            "best_method": None if best is None else str(best["method"]),
            "best_tow_auc": None if best is None else _json_number(best["tow_auc_mean"]),
            "best_margin_vs_original": None if best is None else _json_number(best.get("margin_vs_original")),
            "original_tow_auc": None if ref is None else _json_number(ref["tow_auc_mean"]),
            "retrain_tow_auc": None if floor is None else _json_number(floor["tow_auc_mean"]),
        }
    return out
