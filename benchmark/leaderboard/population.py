"""Population metrics of the leaderboard: read ``results/<suite>_population.csv`` and summarise it.

The population files are written by the evaluation stage (one row per suite × protocol × params_id ×
step; optional: a suite without them has no population section):

* ``<suite>_population.csv`` — :data:`POPULATION_COLUMNS`: the number of unlearned and retrained
  models, ``klom_mean`` (mean over forget examples of KLoM, the KL divergence between the
  distributions of the margins of the unlearned and the retrained models on the example; Georgiev et
  al. 2024, *Attribute-to-Delete: Machine Unlearning via Datamodel Matching*; lower is better) with its
  half-sampling 95% CI ``klom_lo``/``klom_hi`` and 95th percentile ``klom_p95``, ``klom_floor`` (the same
  statistic for a second, independent population of retrained models: the noise floor), and the
  NeurIPS 2023 competition score ``neurips_score`` with its forgetting quality ``neurips_f``
  (Triantafillou et al. 2024);
* ``<suite>_population_examples.csv`` — :data:`EXAMPLE_COLUMNS`: the per-example KLoM values behind
  ``klom_mean`` (plotted as a CDF).

This module only reads and reshapes these numbers; they are computed elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.core.status import Status

__all__ = [
    "EXAMPLE_COLUMNS",
    "POPULATION_COLUMNS",
    "POPULATION_SUMMARY_COLUMNS",
    "attach_population",
    "final_examples",
    "normalise_examples",
    "normalise_population",
    "population_summary",
    "read_population",
]

POPULATION_COLUMNS: tuple[str, ...] = (
    "suite", "protocol", "method", "params_id", "step", "n_unlearned", "n_retrained", "klom_mean",
    "klom_lo", "klom_hi", "klom_p95", "klom_floor", "neurips_score", "neurips_f", "status", "error",
)  # fmt: skip
EXAMPLE_COLUMNS: tuple[str, ...] = ("suite", "protocol", "params_id", "step", "index", "klom")
_POP_STRINGS = ("suite", "protocol", "method", "params_id", "status", "error")
_POP_NUMBERS = ("klom_mean", "klom_lo", "klom_hi", "klom_p95", "klom_floor", "neurips_score", "neurips_f")
# columns added to a summary by attach_population (``pop_*`` avoids clashes with the result rows' status)
POPULATION_SUMMARY_COLUMNS: tuple[str, ...] = (
    "pop_step", "n_unlearned", "n_retrained", *_POP_NUMBERS, "pop_status", "pop_error",
)  # fmt: skip


def normalise_population(pop: pd.DataFrame | None) -> pd.DataFrame:
    """``pop`` with every :data:`POPULATION_COLUMNS` column present and typed (``status`` defaults to
    ``ok``, or ``failed`` with an error text; ``params_id`` to the method); ``None`` gives an empty frame."""
    out = pd.DataFrame(columns=list(POPULATION_COLUMNS)) if pop is None else pop.copy()
    for col in POPULATION_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    for col in _POP_STRINGS:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    out["status"] = [s if s is not None else (Status.FAILED if e not in (None, "") else Status.OK)
                     for s, e in zip(out["status"], out["error"], strict=True)]  # fmt: skip
    out["params_id"] = out["params_id"].where(out["params_id"].notna(), out["method"])
    for col in ("step", "n_unlearned", "n_retrained"):
        out[col] = pd.to_numeric(out[col], errors="coerce").round().astype("Int64")
    for col in _POP_NUMBERS:
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out[list(POPULATION_COLUMNS)].reset_index(drop=True)


def normalise_examples(examples: pd.DataFrame | None) -> pd.DataFrame:
    """``examples`` with the :data:`EXAMPLE_COLUMNS` typed; ``None`` gives an empty frame."""
    out = pd.DataFrame(columns=list(EXAMPLE_COLUMNS)) if examples is None else examples.copy()
    for col in EXAMPLE_COLUMNS:
        if col not in out.columns:
            out[col] = np.nan
    for col in ("suite", "protocol", "params_id"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    for col in ("step", "index"):
        out[col] = pd.to_numeric(out[col], errors="coerce").round().astype("Int64")
    out["klom"] = pd.to_numeric(out["klom"], errors="coerce").astype(float)
    return out[list(EXAMPLE_COLUMNS)].reset_index(drop=True)


def read_population(
    results_dir: Path, suites: Iterable[str]
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The concatenated ``<suite>_population.csv`` and ``<suite>_population_examples.csv`` of ``suites``
    under ``results_dir``; either is ``None`` when no suite has that file."""
    pops, exs = [], []
    for suite in suites:
        p = Path(results_dir) / f"{suite}_population.csv"
        e = Path(results_dir) / f"{suite}_population_examples.csv"
        if p.is_file():
            pops.append(pd.read_csv(p, keep_default_na=False, na_values=[""]))  # status "nan" stays a string
        if e.is_file():
            exs.append(pd.read_csv(e))
    return (pd.concat(pops, ignore_index=True) if pops else None,
            pd.concat(exs, ignore_index=True) if exs else None)  # fmt: skip


def population_summary(pop: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (suite, protocol, params_id): its population row at the protocol's final step.

    The final step is the largest step of the (suite, protocol) in the population file; a params_id
    without a row there gets its last row, marked ``pop_status`` = ``incomplete`` with no numbers.
    Columns: suite, protocol, params_id and :data:`POPULATION_SUMMARY_COLUMNS`."""
    p = normalise_population(pop)
    cols = ["suite", "protocol", "params_id", *POPULATION_SUMMARY_COLUMNS]
    if p.empty:
        return pd.DataFrame(columns=cols)
    p = p.sort_values(["suite", "protocol", "params_id", "step"], na_position="first", kind="mergesort")
    k_final = p.groupby(["suite", "protocol"], dropna=False)["step"].transform("max")
    rows = []
    for _, g in p.assign(_k=k_final).groupby(["suite", "protocol", "params_id"], sort=True, dropna=False):
        r = g.iloc[-1].to_dict()
        complete = not pd.isna(r["_k"]) and not pd.isna(r["step"]) and r["step"] == r["_k"]
        if not complete:
            for col in _POP_NUMBERS:
                r[col] = math.nan
            r["status"], r["error"] = "incomplete", f"no population row at step {r['_k']}"
        keep = ("suite", "protocol", "params_id", "n_unlearned", "n_retrained", *_POP_NUMBERS)
        rows.append({**{k: r[k] for k in keep}, "pop_step": r["step"], "pop_status": r["status"],
                     "pop_error": r["error"] or ""})  # fmt: skip
    out = pd.DataFrame(rows, columns=cols)
    for col in ("pop_step", "n_unlearned", "n_retrained"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Int64")
    return out


def attach_population(summary: pd.DataFrame, pop: pd.DataFrame | None) -> pd.DataFrame:
    """``summary`` (one row per suite × protocol × params_id) with :data:`POPULATION_SUMMARY_COLUMNS`
    joined from :func:`population_summary` (NaN where the population file has no row)."""
    ps = population_summary(pop)
    base = summary.drop(columns=[c for c in POPULATION_SUMMARY_COLUMNS if c in summary.columns])
    ps = ps.astype({"suite": object, "protocol": object, "params_id": object})
    merged = base.merge(ps, on=["suite", "protocol", "params_id"], how="left", sort=False)
    merged.index = base.index
    for col in _POP_NUMBERS:
        merged[col] = pd.to_numeric(merged[col], errors="coerce").astype(float)
    for col in ("pop_step", "n_unlearned", "n_retrained"):
        merged[col] = pd.to_numeric(merged[col], errors="coerce").astype("Int64")
    return merged


def final_examples(examples: pd.DataFrame | None) -> pd.DataFrame:
    """The per-example KLoM rows at each (suite, protocol)'s final step (largest step in the file)."""
    e = normalise_examples(examples)
    if e.empty:
        return e
    k = e.groupby(["suite", "protocol"], dropna=False)["step"].transform("max")
    return e[e["step"] == k].reset_index(drop=True)
