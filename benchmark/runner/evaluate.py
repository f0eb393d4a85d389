"""Stage ``evaluate``: one row per (cell, request k), judged against the gold model of step k.

Every cell is judged the same way, ``original`` included. Per request k (forget set F = requests
1..k of the cell's seed, retain set R = D − F, test set T):

**Against the cell's own gold model** (retrained on R, same seed):
accuracies on F / R / T of both, their gaps, ToW; ``js_*`` / ``kl_*`` = mean JS / KL(unlearned‖gold)
on F and T; ``dist_to_gold`` = ‖w − w_gold‖; the update norm.

**Against the population of gold models** (one per suite seed, same protocol and step). Forget sets
are drawn per seed, so the gold model of another seed s′ is a valid "retrained without x" reference
for an example x only if it is *admissible*: it did not train on x (x ∈ F_{s′}: always true on T)
and the class of x is deleted entirely by both or by neither of the two forget sets. The cell's
own gold model is always admissible.

* ``js_forget_pop`` … ``kl_test_pop``: mean over examples of the mean divergence to the admissible
  gold models (:func:`~benchmark.metrics.population_divergence`);
* ``js_gg_*`` / ``kl_gg_*``: gold-to-gold reference, the mean divergence between two *different*
  admissible gold models, over the examples that have at least two (``n_gg_forget`` of F);
* ``js_ratio_*`` / ``kl_ratio_*``: population divergence / gold-to-gold divergence on those same
  examples (:func:`~benchmark.metrics.reference_ratio`; ≈ 1: as close as another retrain);
* ``gold_pop_forget``: mean number of admissible gold models per forget example;
* ``dist_gold_gold``: mean ‖w_gold(s) − w_gold(s′)‖ over seed pairs; ``dist_to_gold_rel`` =
  ``dist_to_gold / dist_gold_gold`` (models sharing the gold model's initialisation sit well below 1).

**Membership inference** on F (members?) against T (non-members):
``mia_loss_auc`` / ``mia_loss_bacc``: loss-threshold attack (Yeom et al. 2018), AUC and best
balanced accuracy; ``mia_efficacy``: SalUn's SVC attack on true-class confidence trained on R vs T,
fraction of F predicted non-member (higher = more forgotten); ``gold_mia_*``: the same for the gold
model, the value to aim at; ``lira_z_forget``: mean z-score of the unlearned model's logit-scaled
confidence under a Gaussian fitted to the admissible gold models (offline fixed-variance LiRA,
Carlini et al. 2022; variance pooled over test examples of the same class status, else over all; needs
``lira_min_gold`` = 3 gold seeds, else NaN); ``lira_member_frac``: fraction of F with z > 1.645.

**Labels.** Models of a ``mislabeled`` protocol train on flipped labels; every accuracy, loss and
confidence above uses the labels the models were trained on, and ``acc_forget_true`` /
``gold_acc_forget_true`` give the accuracy on the deleted samples' *true* labels (corrective unlearning:
did the damage go?). They are NaN for the other protocols. When only part of the flipped samples is
identified (``identified`` < 1), ``acc_unidentified_true`` / ``gold_acc_unidentified_true`` give the
accuracy on the true labels of the flipped samples no request deletes (Goel et al. 2024: does unlearning
the identified part also correct the rest? The gold model keeps them, flipped, in its training set).

Per-example distributional metrics over populations of models (KLoM, the NeurIPS-2023 score) are not
per-cell values: see :mod:`benchmark.runner.population` (``results/<suite>_population.csv``).

**Relearn time** (Golatkar et al. 2020), only at the final request K (cost): ``relearn_steps``
of fine-tuning on F (recipe optimiser and lr, batch 32) until forget accuracy reaches the original
model's, capped at ``relearn_max_steps`` (100; ``relearn_capped`` = 1); ``gold_relearn_steps`` /
``gold_relearn_capped`` for the gold model.

**Incremental.** Each cell's rows are cached with the hash of everything they are computed from
(:mod:`benchmark.runner.eval_cache`): a re-run judges only new or changed cells and reads the others, and
gives the same table as a full evaluation. The gold references a cell is judged against (gold predictions,
MIA numbers, relearn times) are cached too (:mod:`benchmark.runner.reference_cache`), so judging a few new
cells does not reload and re-attack every gold model. Code layout: this module is the stage (one row per
request, the table); :mod:`benchmark.runner.scoring` computes one row's metrics,
:mod:`benchmark.runner.gold_reference` the gold models and population references they are judged
against, :mod:`benchmark.runner.population_scores` the population scores written beside the table.
Columns: :class:`benchmark.core.results.ResultRow`.

**Cost**: wall/CPU seconds, peak RSS and (when the unlearn stage records it) CUDA peak memory of
the request, gradient passes, HVPs, epoch-equivalents, speedup = gold retrain seconds of the same
step / request seconds.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from benchmark.core.results import RESULT_COLUMNS, make_row
from benchmark.core.status import Status
from benchmark.runner import eval_cache
from benchmark.runner.artifacts import (
    StaleArtifactError,
    StaleCellError,
    check_artifact,
    load_state,
    read_json,
)
from benchmark.runner.cells import Cell, cell_dir, cell_key, expand_cells
from benchmark.runner.gold_reference import GoldReference
from benchmark.runner.reference_cache import ReferenceCache
from benchmark.runner.scoring import EvalConfig, judge, relearn
from benchmark.runner.suite import SuiteRun

__all__ = [
    "COLUMNS",
    "EvalConfig",
    "StaleArtifactError",
    "StaleCellError",
    "check_artifact",
    "evaluate_suite",
    "evaluate_suite_counted",
    "write_results",
]

COLUMNS: list[str] = list(RESULT_COLUMNS)  # the table's columns, in order (benchmark.core.results)

_REQUEST_FIELDS = ("wall_s", "cpu_s", "peak_rss_mb", "cuda_peak_mb", "grad_samples", "fwd_samples", "hvps",
                   "hessians", "update_norm")  # fmt: skip
_PROVENANCE_FIELDS = ("code_hash", "origin", "git_rev", "packages", "hardware")


def _text(v: Any) -> str | None:
    """A provenance value as the text the table holds (dicts, e.g. package versions: their Python repr)."""
    return v if v is None or isinstance(v, str) else str(v)


def read_cell_result(run: SuiteRun, cell: Cell) -> dict[str, Any]:
    """The cell's ``result.json``, if it is current (else a one-line :class:`StaleCellError`)."""
    result_path = cell_dir(run, cell) / "result.json"
    if not result_path.exists():
        raise StaleCellError(
            f"{result_path}: missing; run `unlearn-bench unlearn --suite {run.suite.name}` first"
        )
    result = read_json(result_path)
    if result["key"] != cell_key(run, cell):
        raise StaleCellError(f"{result_path}: produced by other code or inputs; re-run the unlearn stage")
    return result


def judge_cell(run: SuiteRun, ref: GoldReference, cell: Cell, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one cell (one per request), judged against the gold models (:class:`ResultRow` order)."""
    s = run.suite
    common = {
        "suite": s.name,
        "dataset": s.dataset,
        "model": s.model["arch"],
        "protocol": cell.protocol,
        "method": cell.method,
        "params_id": cell.params_id,
        "seed": cell.seed,
        "hparams": json.dumps(cell.hparams, sort_keys=True),
        **{k: _text(result.get(k)) for k in _PROVENANCE_FIELDS},
    }
    k_final = run.protocol(cell.protocol).requests
    rows: list[dict[str, Any]] = []
    for req in result["requests"]:
        step = req["step"]
        row: dict[str, Any] = {**common, "step": step, "status": req["status"], "error": req["error"]}
        for k in _REQUEST_FIELDS:
            row[k] = req.get(k)
        row["info"] = json.dumps(req.get("info", {}), sort_keys=True)
        g = ref.gold(cell.protocol, cell.seed, step)
        sp = ref.split(cell.protocol, cell.seed, step)
        row.update(
            gold_acc_forget=g["acc"]["forget"],
            gold_acc_retain=g["acc"]["retain"],
            gold_acc_test=g["acc"]["test"],
            gold_acc_forget_true=g["acc"]["forget_true"],
            gold_acc_unidentified_true=g["acc"]["unidentified_true"],
            gold_wall_s=g["meta"]["wall_s"],
            gold_epochs_equiv=g["meta"]["epochs_equiv"],
            n_forget=len(sp.forget),
            n_retain=len(sp.retain),
        )
        if req["status"] == Status.OK:
            model = load_state(cell_dir(run, cell) / f"step{step}.pt", run.make_model(cell.seed))
            row.update(judge(ref, cell, step, model, req))
            if ref.cfg.relearn and step == k_final:
                steps, capped = relearn(ref, model, cell.protocol, cell.seed, step)
                row["relearn_steps"], row["relearn_capped"] = float(steps), float(capped)
                steps, capped = ref.gold_relearn(cell.protocol, cell.seed, step)
                row["gold_relearn_steps"], row["gold_relearn_capped"] = float(steps), float(capped)
        rows.append(make_row(row))
    return rows


def evaluate_suite_counted(
    run: SuiteRun, config: EvalConfig | None = None, use_cache: bool = True
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows for every cell of the suite (cells must be up to date: ``unlearn`` first), and the counts of
    cells ``judged`` and read from the evaluation ``cached`` (:mod:`benchmark.runner.eval_cache`), and of
    gold references ``references_read`` from / ``references_computed`` into the reference cache
    (:mod:`benchmark.runner.reference_cache`). ``use_cache=False`` judges every cell from scratch and neither
    reads nor writes either cache."""
    cfg = config or EvalConfig()
    store = ReferenceCache(run, cfg) if use_cache else None
    ref = GoldReference(run, cfg, store)
    rows: list[dict[str, Any]] = []
    counts = {"judged": 0, "cached": 0}
    for cell in tqdm(expand_cells(run), desc=f"{run.suite.name}: evaluate", unit="cell", disable=None):
        result = read_cell_result(run, cell)
        if not use_cache:
            rows += [{**row, **_selection(cell)} for row in judge_cell(run, ref, cell, result)]
            counts["judged"] += 1
            continue
        key = eval_cache.cell_eval_key(run, ref, cell)
        cached = eval_cache.load_rows(run, cell, key)
        if cached is None:
            cached = eval_cache.store_rows(run, cell, key, judge_cell(run, ref, cell, result))
            counts["judged"] += 1
        else:
            counts["cached"] += 1
        rows += [{**row, **_selection(cell)} for row in cached]  # the tuning outcome is not a judged value
    if store is not None:
        counts["references_read"], counts["references_computed"] = store.hits, store.misses
    return pd.DataFrame(rows, columns=COLUMNS), counts


def _selection(cell: Cell) -> dict[str, Any]:
    """Whether tuning selected this cell's configuration, and what choosing it cost."""
    return {"selected": cell.selected, "tuning_trials": cell.tuning_trials, "tuning_s": cell.tuning_s,
            "tuning_constraint": None if cell.tuning_feasible is None else ("met" if cell.tuning_feasible
                                                                             else "violated")}


def evaluate_suite(run: SuiteRun, config: EvalConfig | None = None, use_cache: bool = True) -> pd.DataFrame:
    """Rows for every cell of the suite (:func:`evaluate_suite_counted` without the counts)."""
    return evaluate_suite_counted(run, config, use_cache)[0]


def write_results(run: SuiteRun, config: EvalConfig | None = None) -> pd.DataFrame:
    """Evaluate the suite and write ``results/<suite>.csv`` (atomically). The frame's ``attrs["counts"]``
    holds the cells judged and read from the cache."""
    df, counts = evaluate_suite_counted(run, config)
    path = run.layout.results_path(run.suite.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    df.attrs["counts"] = counts
    return df
