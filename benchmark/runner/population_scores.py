"""Population scores (run by the ``evaluate`` stage): KLoM and the NeurIPS-2023 score of every population
method against the reference retrains, from the members the ``population`` stage trained
(:mod:`benchmark.runner.population`).

Per protocol and method, on the shared forget set at the final request K: KLoM (Georgiev et al. 2024;
:func:`benchmark.metrics.klom.klom_summary`, half-sampling 95 % CI over models) and the competition score
(Triantafillou et al. 2024) computed by the tested functions of :mod:`benchmark.metrics.neurips`:
``neurips_f`` = :func:`~benchmark.metrics.neurips.forgetting_quality` on a seeded subsample of at most
:data:`NEURIPS_MAX_EXAMPLES` forget examples, and ``neurips_score`` =
:func:`~benchmark.metrics.neurips.neurips_score` of it with the per-model retain and test accuracies of
both sides. The ``retrain`` row (another retrain) is the noise floor. Writes
``results/<suite>_population.csv`` (one row per protocol × method) and ``_population_examples.csv``
(per-example KLoM).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.core.status import Status
from benchmark.metrics import accuracy_from_probs, predict_proba
from benchmark.metrics.klom import klom, klom_summary, margins
from benchmark.metrics.neurips import forgetting_quality, logit_scaled_confidence_from_probs, neurips_score
from benchmark.runner.artifacts import file_hash, load_state, read_json, slug, stable_hash, write_json
from benchmark.runner.eval_code import metric_code_hash, tree_hash
from benchmark.runner.population import RETRAIN, Member, _method_groups, _pop_seed, member_key, member_path
from benchmark.runner.suite import POP, SuiteRun

MIN_MEMBERS = 4  # klom_summary's split-half interval needs >= 4 models on each side


@dataclass
class _Outputs:
    """Per-member predictions needed by the scores: forget-set margins and NeurIPS outputs, accuracies."""

    margins: np.ndarray  # (M, n_forget)
    outputs: np.ndarray  # (M, n_forget) the NeurIPS score's per-example outputs
    acc_retain: np.ndarray  # (M,)
    acc_test: np.ndarray  # (M,)
    n_failed: int
    error: str


def _collect(run: SuiteRun, p: str, members: list[Member]) -> _Outputs:
    """Predictions of ``members`` on protocol ``p``'s population forget set at request K."""
    req = run.request(p, POP, run.protocol(p).requests)
    forget, retain = req.forget_all, req.retain
    snap = run.snapshot
    rows_m, rows_o, acc_r, acc_t, errors = [], [], [], [], []
    for m in members:
        path = member_path(run, m)
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path}: population member missing; run `unlearn-bench population`")
        meta = read_json(meta_path)
        if meta.get("key") != member_key(run, m):
            raise RuntimeError(f"{meta_path}: made from other inputs or code; run `unlearn-bench population`")
        if meta["status"] != Status.OK:
            errors.append(f"{meta['status']}: {meta['error']}")
            continue
        model = load_state(path, run.make_model(_pop_seed(run, m.index)))
        pf = predict_proba(model, forget.x)  # probabilities on the CPU; labels brought there too
        if not bool(torch.isfinite(pf).all()):  # e.g. logits overflowing to inf: a failed member, not a crash
            errors.append(f"{Status.NAN.value}: non-finite predictions on the forget set")
            continue
        rows_m.append(margins(torch.log(pf.clamp_min(1e-300)), forget.y.cpu()))
        rows_o.append(logit_scaled_confidence_from_probs(pf, forget.y.cpu()))
        acc_r.append(accuracy_from_probs(predict_proba(model, retain.x), retain.y))
        acc_t.append(accuracy_from_probs(predict_proba(model, snap.x_test), snap.y_test))
    n = len(forget)
    return _Outputs(
        margins=np.asarray(rows_m, dtype=float).reshape(-1, n),
        outputs=np.asarray(rows_o, dtype=float).reshape(-1, n),
        acc_retain=np.asarray(acc_r, dtype=float),
        acc_test=np.asarray(acc_t, dtype=float),
        n_failed=len(errors),
        error=errors[0] if errors else "",
    )


NEURIPS_MAX_EXAMPLES = 500  # the NeurIPS score costs ~7 ms per example whatever M: a seeded subsample


def _forgetting_quality(unlearned: np.ndarray, retrained: np.ndarray, seed: int) -> float:
    """The competition's F on at most :data:`NEURIPS_MAX_EXAMPLES` forget examples (a seeded subsample;
    F is a mean over examples, so this only adds sampling noise) and the same number of models per side
    (the first M of each, M = the smaller population: the reference needs equal counts)."""
    m = min(len(unlearned), len(retrained))
    cols = np.arange(unlearned.shape[1])
    if cols.size > NEURIPS_MAX_EXAMPLES:
        cols = np.sort(np.random.default_rng(seed).choice(cols, NEURIPS_MAX_EXAMPLES, replace=False))
    return forgetting_quality(unlearned[:m, cols], retrained[:m, cols])


SUMMARY_COLUMNS = ("suite", "protocol", "method", "params_id", "step", "status", "error", "n_unlearned",
                   "n_retrained", "n_failed", "klom_mean", "klom_lo", "klom_hi", "klom_p95", "klom_floor",
                   "neurips_score", "neurips_f", "acc_retain", "acc_test", "gold_acc_retain",
                   "gold_acc_test")  # fmt: skip


EXAMPLE_COLUMNS = ("suite", "protocol", "params_id", "step", "index", "klom")


def _sidecar_hashes(run: SuiteRun, members: list[Member]) -> list[str]:
    """The hashes of the members' sidecars (each holds its member key and status)."""
    out = []
    for m in members:
        meta = member_path(run, m).with_suffix(".json")
        if not meta.exists():
            raise FileNotFoundError(f"{meta}: population member missing; run `unlearn-bench population`")
        out.append(file_hash(meta))
    return out


def _group_key(
    run: SuiteRun, ref_hashes: list[str], members: list[Member], params_id: str, n_boot: int
) -> str:
    """The key of one (protocol, method) group's scores: the sidecars of its members and of the reference
    retrains (``ref_hashes``, hashed once per protocol), the evaluation code, this module, the resampling
    replicates (``n_boot``)."""
    return stable_hash({"ref": ref_hashes, "members": _sidecar_hashes(run, members), "params_id": params_id,
                        "n_boot": n_boot, "code": metric_code_hash(), "scores": _scores_code(),
                        "suite": [run.suite.name, run.data_key]})  # fmt: skip


@functools.cache
def _scores_code() -> str:
    """The code fingerprint of this module (part of every group key), computed once per process."""
    return tree_hash(Path(__file__).resolve().parents[1], ("runner/population_scores.py",))


def _score_group(run: SuiteRun, p: str, method: str, params_id: str, members: list[Member], ref: _Outputs,
                 forget_idx: np.ndarray, n_boot: int) -> tuple[dict[str, Any], list[float] | None]:
    """The summary row of one group and its per-example KLoM (None when it has too few members)."""
    k = run.protocol(p).requests
    out = _collect(run, p, members)
    row: dict[str, Any] = {"suite": run.suite.name, "protocol": p, "method": method,
                           "params_id": params_id, "step": k, "n_unlearned": len(out.margins),
                           "n_retrained": len(ref.margins), "n_failed": out.n_failed,
                           "error": out.error, "gold_acc_retain": float(ref.acc_retain.mean()),
                           "gold_acc_test": float(ref.acc_test.mean())}  # fmt: skip
    if len(out.margins) < MIN_MEMBERS:  # too many failed members for the split-half interval
        row["status"] = Status.FAILED.value if out.n_failed else Status.SKIPPED.value
        return row, None
    seed = int(stable_hash([run.suite.name, p, params_id]), 16) % 2**31
    ks = klom_summary(out.margins, ref.margins, n_boot=n_boot, seed=seed)
    f = _forgetting_quality(out.outputs, ref.outputs, seed)
    row.update(
        status=Status.OK.value,
        klom_mean=float(ks["mean"]),
        klom_lo=float(ks["mean_ci_low"]),
        klom_hi=float(ks["mean_ci_high"]),
        klom_p95=float(ks["q0.95"]),
        neurips_f=float(f),
        neurips_score=float(neurips_score(
            f, out.acc_retain.mean(), ref.acc_retain.mean(), out.acc_test.mean(), ref.acc_test.mean()
        )),
        acc_retain=float(out.acc_retain.mean()),
        acc_test=float(out.acc_test.mean()),
    )
    return row, [float(v) for v in klom(out.margins, ref.margins)]


def score_population(run: SuiteRun, n_boot: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """KLoM (half-sampling 95 % CI over models) and the NeurIPS-2023 score of every population method,
    against the reference retrains; the ``retrain`` row (another retrain) is the noise floor.

    Each (protocol, method) group's scores are cached under ``runs/<suite>/evaluated/population/`` by
    :func:`_group_key`, so a re-run, or adding a method, scores only new or changed groups (and loads the
    reference retrains only then)."""
    pop = run.suite.population
    summary: list[dict[str, Any]] = []
    examples: list[pd.DataFrame] = []
    if pop is None:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS)), pd.DataFrame()
    cache_dir = run.layout.suite_dir(run.suite.name) / "evaluated" / "population"
    for p in pop.protocols:
        k = run.protocol(p).requests
        ref_members = [Member("gold", p, i) for i in range(pop.models)]
        ref: _Outputs | None = None
        ref_hashes = _sidecar_hashes(run, ref_members)
        forget_idx = run.request(p, POP, k).forget_all.indices.numpy()
        floor = math.nan
        rows: list[dict[str, Any]] = []
        for method, params_id, members in _method_groups(run, p):
            key = _group_key(run, ref_hashes, members, params_id, n_boot)
            path = cache_dir / p / f"{slug(params_id)}.json"
            cached = read_json(path) if path.exists() else {}
            if cached.get("key") == key:
                row, per_example = cached["row"], cached["klom"]
            else:
                if ref is None:
                    ref = _collect(run, p, ref_members)
                row, per_example = _score_group(run, p, method, params_id, members, ref, forget_idx, n_boot)
                write_json(path, {"key": key, "row": row, "klom": per_example})
            if method == RETRAIN and row["status"] == Status.OK.value:
                floor = row["klom_mean"]
            rows.append(row)
            if per_example is not None:
                examples.append(pd.DataFrame({"suite": run.suite.name, "protocol": p, "params_id": params_id,
                                              "step": k, "index": forget_idx,
                                              "klom": np.asarray(per_example, dtype=float)}))  # fmt: skip
        for row in rows:
            row["klom_floor"] = floor
        summary += rows
    df = pd.DataFrame(summary)
    for col in SUMMARY_COLUMNS:
        if col not in df:
            df[col] = math.nan
    ex = pd.concat(examples, ignore_index=True) if examples else pd.DataFrame()
    return df[list(SUMMARY_COLUMNS)], ex


def write_population_results(run: SuiteRun) -> pd.DataFrame | None:
    """Write ``results/<suite>_population.csv`` and ``_population_examples.csv`` (empty, with their header,
    when the suite has no population)."""
    df, ex = score_population(run)
    if ex.empty:
        ex = pd.DataFrame(columns=list(EXAMPLE_COLUMNS))
    for frame, path in ((df, run.layout.population_results_path(run.suite.name)),
                        (ex, run.layout.population_examples_path(run.suite.name))):  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        frame.to_csv(tmp, index=False, float_format="%.6g")
        tmp.replace(path)
    return df if run.suite.population is not None else None
