"""Stage ``population``: populations of models on one shared forget set, for per-example metrics.

Per-example distributional metrics compare, example by example, the *distribution* of a method's outputs
over many training seeds with the distribution of retrained models' outputs (KLoM, Georgiev et al. 2024;
the NeurIPS-2023 competition score, Triantafillou et al. 2024). A handful of evaluation seeds cannot resolve
those distributions, so ``suites.<name>.population`` asks for ``models`` = M members per side. Per protocol
``p`` in ``population.protocols``, on the shared forget set ``<p>_pop.json`` and at the final request K:

* ``originals``: M models trained on D (the protocol's flipped labels for ``mislabeled``), seeds
  ``seed + i``; shared by the protocols that use the clean labels;
* ``gold``: 2M retrains on D_r(K), seeds ``seed + i``: members 0..M−1 are the *reference* population,
  members M..2M−1 the ``retrain`` method's population — another retrain, the noise floor of every score;
* ``unlearned/<params_id>``: the method (its first configuration in the grid, the row the leaderboard
  headlines) applied over requests 1..K to original i, for every method in ``population.methods``
  (``original`` is the originals themselves).

Everything is cached per member with its key (as originals and gold models are), so an interrupted stage
resumes and adding a method trains only its members. Scoring (:func:`score_population`) runs in the
``evaluate`` stage and writes ``results/<suite>_population.csv`` (one row per protocol × method) and
``results/<suite>_population_examples.csv`` (per-example KLoM).
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.config import ConfigError, ExecutorConfig
from benchmark.metrics import accuracy_from_probs, predict_proba
from benchmark.metrics.klom import klom, klom_summary, margins
from benchmark.metrics.neurips import forgetting_quality, logit_scaled_confidence_from_probs, neurips_score
from benchmark.models.training import train_model
from benchmark.runner.artifacts import load_state, read_json, save_state, slug, stable_hash, write_json
from benchmark.runner.executor import Unit, UnitResult, run_stage
from benchmark.runner.suite import POP, SuiteRun
from benchmark.unlearners.base import BudgetExceeded, Context, get_unlearner

REFERENCE, RETRAIN, ORIGINAL = "reference", "retrain", "original"


@dataclass(frozen=True)
class Member:
    """One model of a population: ``kind`` is ``original``, ``gold`` or ``unlearned``."""

    kind: str
    protocol: str | None  # None: a clean original shared by every clean-label protocol
    index: int
    method: str = ""
    params_id: str = ""
    hparams: tuple[tuple[str, Any], ...] = ()


def _pop_seed(run: SuiteRun, index: int) -> int:
    assert run.suite.population is not None
    return run.suite.population.seed + index


def member_path(run: SuiteRun, m: Member) -> Path:
    base = run.layout.population_dir(run.suite.name)
    if m.kind == "original":
        return base / "originals" / (m.protocol or "clean") / f"seed{m.index}.pt"
    if m.kind == "gold":
        return base / "gold" / str(m.protocol) / f"seed{m.index}.pt"
    return base / "unlearned" / str(m.protocol) / slug(m.params_id) / f"seed{m.index}.pt"


def member_key(run: SuiteRun, m: Member) -> str:
    """Cache key: what the member was made from (data, recipe, seed, labels, forget set, method code)."""
    seed = _pop_seed(run, m.index)
    if m.kind == "original":
        return run.original_key(seed, m.protocol, POP)
    assert m.protocol is not None
    if m.kind == "gold":
        return run.gold_key(m.protocol, seed, run.protocol(m.protocol).requests, POP)
    orig = Member("original", run.variant(m.protocol), m.index)
    forget = stable_hash([r.tolist() for r in run.requests(m.protocol, POP)])
    code = get_unlearner(m.method).code_hash()
    return stable_hash({"code": code, "method": m.method, "hparams": dict(m.hparams),
                        "original": member_key(run, orig), "protocol": vars(run.protocol(m.protocol)),
                        "forget": forget, "budget_s": run.suite.budget_s})  # fmt: skip


def _method_config(run: SuiteRun, name: str) -> tuple[str, str, dict[str, Any]]:
    """(method, params_id, hparams) of a population entry: a params_id of the suite's grid, or a method
    name (its first configuration: the row the leaderboard headlines)."""
    from benchmark.runner.cells import expand_cells

    cells = expand_cells(run, tuned=False)  # the population stage runs before the tune stage
    cell = next((c for c in cells if c.params_id == name), None)
    if cell is None:
        if "[" in name:
            ids = sorted({c.params_id for c in cells if c.params_id.startswith(name.split("[")[0])})
            raise ConfigError(f"suites.{run.suite.name}.population.methods: no configuration {name!r}; "
                              f"the grid has {ids}")  # fmt: skip
        cell = next(c for c in cells if c.method == name)
    return cell.method, cell.params_id, cell.hparams


def population_members(run: SuiteRun) -> list[Member]:
    """Every member of the suite's populations, originals first (the unlearned ones start from them)."""
    pop = run.suite.population
    if pop is None:
        return []
    originals: list[Member] = []
    others: list[Member] = []
    for p in pop.protocols:
        originals += [m for m in (Member("original", run.variant(p), i) for i in range(pop.models))
                      if m not in originals]  # fmt: skip
        others += [Member("gold", p, i) for i in range(2 * pop.models)]
        for _, _, members in _method_groups(run, p):
            others += [m for m in members if m.kind == "unlearned"]
    return originals + others


def _done(run: SuiteRun, m: Member) -> bool:
    path = member_path(run, m)
    meta = path.with_suffix(".json")
    if not meta.exists() or read_json(meta).get("key") != member_key(run, m):
        return False
    return path.exists() or read_json(meta).get("status") != "ok"


def _train_member(run: SuiteRun, m: Member) -> dict[str, Any]:
    """Train or unlearn one member; write its model and sidecar JSON (status, error, seconds)."""
    path, key = member_path(run, m), member_key(run, m)
    t0 = time.perf_counter()
    status, error = "ok", ""
    seed = _pop_seed(run, m.index)
    if m.kind == "original":
        y = run.train_labels(m.protocol, POP)
        model = train_model(run.make_model(seed), run.snapshot.x_train, y, run.suite.recipe, seed)
    elif m.kind == "gold":
        assert m.protocol is not None
        retain = run.request(m.protocol, POP, run.protocol(m.protocol).requests).retain
        model = train_model(run.make_model(seed), retain.x, retain.y, run.suite.recipe, seed)
    else:
        assert m.protocol is not None
        orig = Member("original", run.variant(m.protocol), m.index)
        model = load_state(member_path(run, orig), run.make_model(seed))
        ctx = Context(seed=seed, recipe=run.suite.recipe, make_model=run.make_model, n_train=run.n_train,
                      budget_s=run.suite.budget_s)  # fmt: skip
        torch.manual_seed(seed)
        try:
            method = get_unlearner(m.method)(**dict(m.hparams))
            reason = method.skip(run.n_params)
            if reason:
                status, error = "skipped", reason
            else:
                for step in run.steps(m.protocol):
                    ctx.counters.reset()
                    ctx.info = {}
                    model = method.unlearn(model, run.request(m.protocol, POP, step), ctx)
                    ctx.check_budget()
                if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                    status, error = "nan", "non-finite weights after the update"
        except Exception as exc:  # a failing method fails its member, not the stage
            status = "timeout" if isinstance(exc, BudgetExceeded) else "failed"
            where = traceback.format_exc(limit=-1).strip().splitlines()[-3].strip()  # the raising line
            error = f"{type(exc).__name__}: {exc} | {where}"
    meta = {"key": key, "kind": m.kind, "protocol": m.protocol, "index": m.index, "method": m.method,
            "params_id": m.params_id, "status": status, "error": error,
            "wall_s": time.perf_counter() - t0}  # fmt: skip
    if status == "ok":
        save_state(path, model)
    write_json(path.with_suffix(".json"), meta)
    return meta


def population_unit(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """Executor entry point: train or unlearn one member."""
    return _train_member(run, unit.args["member"])


def train_population(run: SuiteRun, executor: ExecutorConfig | None = None) -> dict[str, int]:
    """Train every missing member through the executor: originals and retrains first, then the unlearned
    members (which start from the originals). Returns counts of members trained and reused."""
    members = population_members(run)
    todo = [m for m in members if not _done(run, m)]
    desc = f"{run.suite.name}: population"

    def report(res: UnitResult) -> None:
        if res.ok and res.value["status"] not in ("ok", "skipped"):
            m = res.unit.args["member"]
            print(f"[{run.suite.name}] population {m.params_id} {m.protocol} #{m.index}: "
                  f"{res.value['status']}: {res.value['error']}", flush=True)  # fmt: skip

    for wave in ([m for m in todo if m.kind != "unlearned"], [m for m in todo if m.kind == "unlearned"]):
        units = [Unit(m.kind, f"population/{m.kind}/{m.protocol}/{m.params_id}/{m.index}", run.suite.name,
                      {"member": m}) for m in wave]  # fmt: skip
        run_stage(run, units, population_unit, desc, executor, on_result=report)
    return {"run": len(todo), "cached": len(members) - len(todo)}


# --- scoring ----------------------------------------------------------------------------------------------
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
        if meta["status"] != "ok":
            errors.append(f"{meta['status']}: {meta['error']}")
            continue
        model = load_state(path, run.make_model(_pop_seed(run, m.index)))
        pf = predict_proba(model, forget.x)
        rows_m.append(margins(torch.log(pf.clamp_min(1e-300)), forget.y))
        rows_o.append(logit_scaled_confidence_from_probs(pf, forget.y))
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


def _method_groups(run: SuiteRun, p: str) -> list[tuple[str, str, list[Member]]]:
    """(method, params_id, members) of every population method on protocol ``p``."""
    pop = run.suite.population
    assert pop is not None
    groups: list[tuple[str, str, list[Member]]] = []
    for method in pop.methods:
        if method == ORIGINAL:
            members = [Member("original", run.variant(p), i) for i in range(pop.models)]
            groups.append((method, method, members))
        elif method == RETRAIN:
            groups.append((method, method, [Member("gold", p, pop.models + i) for i in range(pop.models)]))
        else:
            name, params_id, hp = _method_config(run, method)
            hpt = tuple(sorted(hp.items()))
            members = [Member("unlearned", p, i, name, params_id, hpt) for i in range(pop.models)]
            groups.append((name, params_id, members))
    return groups


SUMMARY_COLUMNS = ("suite", "protocol", "method", "params_id", "step", "status", "error", "n_unlearned",
                   "n_retrained", "n_failed", "klom_mean", "klom_lo", "klom_hi", "klom_p95", "klom_floor",
                   "neurips_score", "neurips_f", "acc_retain", "acc_test", "gold_acc_retain",
                   "gold_acc_test")  # fmt: skip


EXAMPLE_COLUMNS = ("suite", "protocol", "params_id", "step", "index", "klom")


def score_population(run: SuiteRun, n_boot: int = 400) -> tuple[pd.DataFrame, pd.DataFrame]:
    """KLoM (bootstrap 95 % CI over models) and the NeurIPS-2023 score of every population method,
    against the reference retrains; the ``retrain`` row (another retrain) is the noise floor."""
    pop = run.suite.population
    summary: list[dict[str, Any]] = []
    examples: list[pd.DataFrame] = []
    if pop is None:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS)), pd.DataFrame()
    for p in pop.protocols:
        k = run.protocol(p).requests
        ref = _collect(run, p, [Member("gold", p, i) for i in range(pop.models)])
        forget_idx = run.request(p, POP, k).forget_all.indices.numpy()
        floor = math.nan
        rows: list[dict[str, Any]] = []
        for method, params_id, members in _method_groups(run, p):
            out = _collect(run, p, members)
            row: dict[str, Any] = {"suite": run.suite.name, "protocol": p, "method": method,
                                   "params_id": params_id, "step": k, "n_unlearned": len(out.margins),
                                   "n_retrained": len(ref.margins), "n_failed": out.n_failed,
                                   "error": out.error, "gold_acc_retain": float(ref.acc_retain.mean()),
                                   "gold_acc_test": float(ref.acc_test.mean())}  # fmt: skip
            if len(out.margins) < 2:
                row["status"] = "failed" if out.n_failed else "skipped"
                rows.append(row)
                continue
            seed = int(stable_hash([run.suite.name, p, params_id]), 16) % 2**31
            ks = klom_summary(out.margins, ref.margins, n_boot=n_boot, seed=seed)
            f = _forgetting_quality(out.outputs, ref.outputs, seed)
            row.update(
                status="ok",
                klom_mean=ks["mean"],
                klom_lo=ks["mean_ci_low"],
                klom_hi=ks["mean_ci_high"],
                klom_p95=ks["q0.95"],
                neurips_f=f,
                neurips_score=neurips_score(
                    f, out.acc_retain.mean(), ref.acc_retain.mean(), out.acc_test.mean(), ref.acc_test.mean()
                ),
                acc_retain=float(out.acc_retain.mean()),
                acc_test=float(out.acc_test.mean()),
            )
            if method == RETRAIN:
                floor = ks["mean"]
            rows.append(row)
            per_example = {"index": forget_idx, "klom": klom(out.margins, ref.margins)}
            examples.append(pd.DataFrame({"suite": run.suite.name, "protocol": p, "params_id": params_id,
                                          "step": k, **per_example}))  # fmt: skip
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
