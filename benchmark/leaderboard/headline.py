"""The headline view: one row per method and (suite, protocol), chosen from its grid of params_ids.

Rule (:func:`choose_params`), per (suite, protocol, method):

1. the params_id flagged in a ``selected`` column of the result rows (truthy: ``True``, ``1``,
   ``"true"``, ``"yes"``; written from the tuning stage's selection, :mod:`benchmark.runner.tuning`), else
2. the params_id named exactly like the method (``finetune`` for ``finetune``), else
3. the first params_id in sort order.

The choice is recorded in ``params_choice`` (``default`` / ``selected`` / ``first``) beside
``n_params`` (the grid size); the full grid stays in ``summary.csv``. The paired comparisons (best,
margin over ``original``, floor) are recomputed among the headline rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from benchmark.leaderboard.aggregate import compare, normalise

__all__ = ["CHOICE_COLUMNS", "choose_params", "headline", "selected_params"]

CHOICE_COLUMNS: tuple[str, ...] = ("params_choice", "n_params")
_TRUE = {"true", "1", "1.0", "yes", "y", "selected"}


def _truthy(v: Any) -> bool:
    if v is None or (isinstance(v, float) and v != v):
        return False
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in _TRUE


def selected_params(rows: pd.DataFrame) -> set[tuple[str, str, str]]:
    """(suite, protocol, params_id) of the result rows whose ``selected`` column is truthy (empty set
    without the column)."""
    if "selected" not in rows.columns:
        return set()
    flagged = rows[rows["selected"].map(_truthy)]
    keys = flagged[["suite", "protocol", "params_id"]].itertuples(index=False)
    return {(str(s), str(p), str(i)) for s, p, i in keys}


def choose_params(method: str, params_ids: list[str], selected: set[str]) -> tuple[str, str]:
    """(params_id, how) for ``method`` among its ``params_ids``: see the module docstring."""
    ids = sorted(params_ids)
    flagged = [i for i in ids if i in selected]
    if flagged:
        return flagged[0], "selected"
    if method in ids:
        return method, "default"
    return ids[0], "first"


def headline(summary: pd.DataFrame, seeds: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """One row of ``summary`` per (suite, protocol, method), plus :data:`CHOICE_COLUMNS`.

    ``summary`` is :func:`~benchmark.leaderboard.aggregate.summarise` (optionally with population
    columns), ``seeds`` :func:`~benchmark.leaderboard.aggregate.seed_table` and ``rows`` the result rows
    (for the ``selected`` flag). Sorted by (suite, protocol, method)."""
    data = normalise(rows)
    flagged = selected_params(data)
    keep, how, sizes = [], [], []
    for (suite, proto, method), sub in summary.groupby(["suite", "protocol", "method"], sort=True,
                                                       dropna=False):  # fmt: skip
        ids = [str(i) for i in sub["params_id"]]
        sel = {i for i in ids if (str(suite), str(proto), i) in flagged}
        pid, choice = choose_params(str(method), ids, sel)
        keep.append(sub.index[sub["params_id"].astype(str) == pid][0])
        how.append(choice)
        sizes.append(len(ids))
    out = summary.loc[keep].copy()
    out["params_choice"] = how
    out["n_params"] = sizes
    out = out.reset_index(drop=True)
    return compare(seeds, out)
