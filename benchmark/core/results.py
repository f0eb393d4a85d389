"""The result row: one (suite, protocol, method, params_id, seed, step), written by the ``evaluate`` stage to
``results/<suite>.csv`` and read by the leaderboard. Defined once here, as :class:`ResultRow`, whose fields
are the CSV's columns in order, each with its type and a one-line meaning (``field.metadata["doc"]``).

Writer and reader both check against it: a row with an unknown field (:func:`make_row`) or a frame with a
missing or unexpected column (:func:`check_columns`) raises a one-line :class:`SchemaError` naming the
column, instead of filling it with ``None``. The metrics' definitions are in :mod:`benchmark.runner.scoring`
and :mod:`benchmark.runner.evaluate`.

Column order: the order ``results/<suite>.csv`` always had (identity, status, accuracies, divergences,
population references, distances, membership inference, relearn time, cost, provenance), with the tuning
columns (``selected``, ``tuning_trials``, ``tuning_s``, ``tuning_constraint``) appended last.
"""

# no `from __future__ import annotations`: the field types are read at import (``typing.get_type_hints``)

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmark.core.status import Status

__all__ = [
    "COLUMN_DOCS",
    "COLUMN_KINDS",
    "RESULT_COLUMNS",
    "TIMING_COLUMNS",
    "ResultRow",
    "SchemaError",
    "check_columns",
    "make_row",
]


class SchemaError(ValueError):
    """A result row or table does not have exactly the columns of :class:`ResultRow`."""


def _c(doc: str, default: Any = None, timing: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "timing": timing})


def _key(doc: str) -> Any:
    return field(metadata={"doc": doc, "timing": False})


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One result row. Fields without a default identify the row; every measurement defaults to ``None``
    (written as an empty field: not measured, e.g. a skipped cell, or relearn time before the final step)."""

    suite: str = _key("suite name (params.yaml ``suites.<name>``)")
    dataset: str = _key("dataset of the suite")
    model: str = _key("model architecture of the suite")
    protocol: str = _key("deletion protocol (sequence of forget requests)")
    method: str = _key("unlearning method (registry name)")
    params_id: str = _key("method with its hyper-parameters, e.g. ``finetune[epochs=2]``")
    seed: int = _key("suite seed: original model, forget sets and gold models")
    step: int = _key("request k of the protocol (forget set = requests 1..k)")
    status: Status = _key("outcome of the request (benchmark.core.status.Status)")
    error: str = _key("failure or skip reason; empty when ok")
    acc_forget: float | None = _c("accuracy on the forget set F (labels the models trained on)")
    acc_retain: float | None = _c("accuracy on the retain set R")
    acc_test: float | None = _c("accuracy on the test set T")
    gold_acc_forget: float | None = _c("gold model's (retrained on R) accuracy on F")
    gold_acc_retain: float | None = _c("gold model's accuracy on R")
    gold_acc_test: float | None = _c("gold model's accuracy on T")
    acc_forget_true: float | None = _c("accuracy on F's true labels (mislabeled protocol; else NaN)")
    gold_acc_forget_true: float | None = _c("gold model's accuracy on F's true labels (mislabeled; else NaN)")
    acc_unidentified_true: float | None = _c(
        "accuracy on the true labels of the flipped samples no request deletes (mislabeled, identified < 1)"
    )
    gold_acc_unidentified_true: float | None = _c("gold model's accuracy on them (identified < 1)")
    gap_forget: float | None = _c("|acc_forget − gold_acc_forget|")
    gap_retain: float | None = _c("|acc_retain − gold_acc_retain|")
    gap_test: float | None = _c("|acc_test − gold_acc_test|")
    tow: float | None = _c("tug of war: product of (1 − gap) over F, R, T")
    js_forget: float | None = _c("mean JS divergence to the gold model's predictions on F")
    js_test: float | None = _c("mean JS divergence to the gold model's predictions on T")
    kl_forget: float | None = _c("mean KL(unlearned ‖ gold) on F")
    kl_test: float | None = _c("mean KL(unlearned ‖ gold) on T")
    js_forget_pop: float | None = _c("mean JS to the admissible gold models of the population, on F")
    js_test_pop: float | None = _c("mean JS to the admissible gold models, on T")
    kl_forget_pop: float | None = _c("mean KL to the admissible gold models, on F")
    kl_test_pop: float | None = _c("mean KL to the admissible gold models, on T")
    js_gg_forget: float | None = _c("gold-to-gold JS between two admissible gold models, on F")
    js_gg_test: float | None = _c("gold-to-gold JS, on T")
    kl_gg_forget: float | None = _c("gold-to-gold KL, on F")
    kl_gg_test: float | None = _c("gold-to-gold KL, on T")
    js_ratio_forget: float | None = _c("js_forget_pop / js_gg_forget on the same examples (≈ 1: a retrain)")
    js_ratio_test: float | None = _c("js_test_pop / js_gg_test")
    kl_ratio_forget: float | None = _c("kl_forget_pop / kl_gg_forget")
    kl_ratio_test: float | None = _c("kl_test_pop / kl_gg_test")
    gold_pop_forget: float | None = _c("mean number of admissible gold models per forget example")
    n_gg_forget: int | None = _c("forget examples with at least two admissible gold models")
    dist_to_gold: float | None = _c("‖w − w_gold‖")
    dist_gold_gold: float | None = _c("mean ‖w_gold(s) − w_gold(s′)‖ over seed pairs")
    dist_to_gold_rel: float | None = _c("dist_to_gold / dist_gold_gold")
    update_norm: float | None = _c("‖w_after − w_before‖ of the request")
    mia_loss_auc: float | None = _c("loss-threshold attack AUC, F (members?) vs T (Yeom et al. 2018)")
    mia_loss_bacc: float | None = _c("loss-threshold attack, best balanced accuracy")
    gold_mia_loss_auc: float | None = _c("mia_loss_auc of the gold model (the value to aim at)")
    mia_efficacy: float | None = _c("SalUn's SVC attack: fraction of F predicted non-member")
    gold_mia_efficacy: float | None = _c("mia_efficacy of the gold model")
    lira_z_forget: float | None = _c("mean offline LiRA z-score on F against the gold models (Carlini 2022)")
    lira_member_frac: float | None = _c("fraction of F with LiRA z > 1.645")
    relearn_steps: float | None = _c("fine-tuning steps on F to regain the original's accuracy (final step)")
    relearn_capped: float | None = _c("1 if relearn_steps hit the cap, else 0 (final step)")
    gold_relearn_steps: float | None = _c("relearn_steps of the gold model")
    gold_relearn_capped: float | None = _c("relearn_capped of the gold model")
    wall_s: float | None = _c("wall-clock seconds of the request", timing=True)
    cpu_s: float | None = _c("CPU seconds of the request", timing=True)
    peak_rss_mb: float | None = _c("peak resident memory of the process (MiB)", timing=True)
    cuda_peak_mb: float | None = _c("CUDA peak memory of the request (MiB; NaN without CUDA)", timing=True)
    gold_wall_s: float | None = _c("wall-clock seconds of the gold retrain of this step", timing=True)
    speedup: float | None = _c("gold_wall_s / wall_s", timing=True)
    grad_samples: int | None = _c("per-sample gradient evaluations")
    fwd_samples: int | None = _c("per-sample forward passes")
    hvps: int | None = _c("Hessian-vector products")
    hessians: int | None = _c("explicit Hessians formed")
    epochs_equiv: float | None = _c("cost in epochs of training on D (params ``cost``)")
    gold_epochs_equiv: float | None = _c("cost of the gold retrain in epochs")
    n_forget: int | None = _c("|F|: examples deleted by requests 1..k")
    n_retain: int | None = _c("|R| = |D| − |F|")
    info: str | None = _c("the method's diagnostics for the request (JSON)")
    hparams: str | None = _c("the method's hyper-parameters (JSON)")
    code_hash: str | None = _c("hash of the method's code")
    origin: str | None = _c("where the method comes from (built-in or plugin package and version)")
    git_rev: str | None = _c("git revision of the benchmark that ran the cell")
    packages: str | None = _c("versions of the key packages (Python repr of a dict)")
    hardware: str | None = _c("hardware that ran the cell")
    selected: bool = _c("the configuration chosen by tuning (False when the suite is not tuned)", False)
    tuning_trials: int | None = _c("trials the tuner ran to choose this configuration")
    tuning_s: float | None = _c("seconds the tuner spent choosing this configuration", timing=True)
    tuning_constraint: str | None = _c("'met' / 'violated': whether the selected configuration kept retain "
                                       "accuracy within tuning.max_retain_drop of the gold model's on the "
                                       "tuning data (violated: no trial did; the closest was selected)")


_FIELDS = dataclasses.fields(ResultRow)
RESULT_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS)
COLUMN_DOCS: dict[str, str] = {f.name: f.metadata["doc"] for f in _FIELDS}
TIMING_COLUMNS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.metadata["timing"])


def _kind(tp: Any) -> type:
    """``float | None`` -> float; ``Status`` -> str (a str enum)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return str if isinstance(tp, type) and issubclass(tp, str) else tp


_HINTS = typing.get_type_hints(ResultRow)
COLUMN_KINDS: dict[str, type] = {name: _kind(_HINTS[name]) for name in RESULT_COLUMNS}


def make_row(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a complete row (every column, in order; unmeasured ones ``None``), checked against
    :class:`ResultRow`: an unknown or missing identifying column raises a one-line :class:`SchemaError`."""
    unknown = [k for k in values if k not in COLUMN_KINDS]
    if unknown:
        raise SchemaError(
            f"result row: unexpected column {unknown[0]!r} (not in benchmark.core.results.ResultRow)"
        )
    try:
        row = ResultRow(**values)
    except TypeError as exc:  # a missing identifying column
        raise SchemaError(f"result row: {exc}") from None
    return {name: getattr(row, name) for name in RESULT_COLUMNS}


def check_columns(columns: Iterable[Any], where: str = "result table") -> None:
    """Raise a one-line :class:`SchemaError` naming the missing and unexpected columns of ``columns``
    (compared with :data:`RESULT_COLUMNS` as sets; the order is restored by the reader)."""
    cols = [str(c) for c in columns]
    missing = [c for c in RESULT_COLUMNS if c not in cols]
    unexpected = [c for c in cols if c not in COLUMN_KINDS]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing column{'s' * (len(missing) > 1)} {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected column{'s' * (len(unexpected) > 1)} {', '.join(unexpected)}")
        raise SchemaError(f"{where}: {'; '.join(parts)} (schema: benchmark.core.results.ResultRow)")
