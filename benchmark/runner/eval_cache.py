"""The evaluation cache: each cell's judged rows on disk, so ``evaluate`` judges only new or changed cells.

``runs/<suite>/evaluated/<protocol>/<params_id>/seed<s>.json`` holds ``{"key": ..., "rows": [...]}``, the
rows of one cell exactly as the stage built them (JSON keeps Python floats, ints, None and NaN exactly, so
a table assembled from cached rows is byte-identical to a fresh one). The key (:func:`cell_eval_key`) is the
hash of everything a row is computed from:

* the cell's ``result.json`` (its bytes: the cell key with the method's code hash, hyper-parameters,
  original model and forget sets, plus the request counters and timings);
* the sidecar JSON of every gold model of the cell's protocol (all seeds, all steps: the population
  references use the other seeds' gold models) and of the cell's original model;
* the evaluation code (:func:`~benchmark.runner.eval_code.metric_code_hash`: the code of
  ``benchmark/metrics``, ``benchmark/models`` and the scoring modules, docstrings and comments excluded),
  the :class:`~benchmark.runner.scoring.EvalConfig`, the ``cost`` parameters and the suite's identity
  (name, dataset, model, seeds).

A missing, unreadable or mismatched file is a miss: the cell is judged and its file rewritten.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from benchmark.runner.artifacts import file_hash, stable_hash
from benchmark.runner.cells import Cell, cell_dir
from benchmark.runner.eval_code import CODE_PATHS, metric_code_hash
from benchmark.runner.gold_reference import GoldReference
from benchmark.runner.suite import SuiteRun

__all__ = ["CODE_PATHS", "cell_eval_key", "load_rows", "metric_code_hash", "store_rows"]


def cache_path(run: SuiteRun, cell: Cell) -> Path:
    return run.layout.evaluated_path(run.suite.name, cell.protocol, cell.params_id, cell.seed)


def cell_eval_key(run: SuiteRun, ref: GoldReference, cell: Cell) -> str:
    """The key of ``cell``'s judged rows (see the module docstring). Checks, as judging would, that the
    original and every gold model the rows depend on are current (one-line ``StaleArtifactError``)."""
    s = run.suite
    gold = {
        f"{seed}/{step}": ref.gold_meta(cell.protocol, seed, step)
        for seed in ref.seeds
        for step in run.steps(cell.protocol)
    }
    return stable_hash({
        "result": file_hash(cell_dir(run, cell) / "result.json"),
        "gold": gold,
        "original": ref.check_original(cell.seed, cell.protocol),
        "code": metric_code_hash(),
        "config": dataclasses.asdict(ref.cfg),
        "cost": [run.params.hvp_grad_ratio, run.params.fwd_grad_ratio],
        "suite": [s.name, s.dataset, s.model, list(s.seeds)],
    })  # fmt: skip


def load_rows(run: SuiteRun, cell: Cell, key: str) -> list[dict[str, Any]] | None:
    """The cached rows of ``cell`` if its file holds ``key``, else None."""
    path = cache_path(run, cell)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    rows = data.get("rows")
    return rows if isinstance(rows, list) else None


def _plain(v: Any) -> Any:
    """Python scalars as they are; numpy scalars as the Python scalar of the same value (np.float64 already
    is a float); anything else is an error, so the cache never stores a lossy ``str``."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if hasattr(v, "item"):
        item = v.item()
        if isinstance(item, bool | int | float):
            return item
    raise TypeError(f"evaluation cache: cannot store {type(v).__name__} value {v!r}")


def store_rows(run: SuiteRun, cell: Cell, key: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``cell``'s rows with ``key`` atomically (temp file + rename); returns the rows as a later
    :func:`load_rows` reads them back (what the stage tabulates, so a fresh and a cached run agree)."""
    path = cache_path(run, cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"key": key, "rows": [{k: _plain(v) for k, v in r.items()} for r in rows]})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)
    return json.loads(text)["rows"]
