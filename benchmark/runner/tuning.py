"""Stage ``tune``: per suite × protocol × method, an Optuna study selects the configuration the unlearn stage
runs, on tuning data only (:mod:`benchmark.runner.tuning_data`: tuning seeds, tuning forget sets disjoint
from the evaluation's, accuracy on a validation split; the test split is never read).

**Objective** (the leaderboard's headline metric, with validation in place of test accuracy):

.. math::

    \\mathrm{ToW\\text{-}AUC} = \\frac{1}{|S|}\\sum_{s\\in S}\\frac1K\\sum_{k=1}^K
        (1-|a_f(u)-a_f(r)|)(1-|a_r(u)-a_r(r)|)(1-|a_v(u)-a_v(r)|)

over the tuning seeds S and the K sequential requests (:func:`benchmark.metrics.tow`; Zhao et al.,
NeurIPS 2024), u the unlearned model after request k, r the tuning gold model of step k, ``a_v`` the
validation accuracy. Maximised.

**Utility constraint** (``tuning.max_retain_drop`` = :math:`\\delta_r`, default 0.05; ``null`` turns it
off). A trial is *feasible* iff its retain accuracy stays within :math:`\\delta_r` of the tuning gold
model's at every seed and request, :math:`c = \\max_{s,k}\\,(a_r(r) - a_r(u)) - \\delta_r \\le 0`. ToW
multiplies the three gaps, so without it a configuration that wrecks the retained data can still win by
forgetting a whole class (measured before the constraint: tuned SSD kept 0.68–0.92 retain accuracy on five
of seven suite × protocol pairs; gradient ascent and Fisher forgetting 0.76–0.81 on MNIST-5k memorized),
which no user would deploy; the competition's score (Triantafillou et al. 2024) likewise multiplies
forgetting by utility. The constraint is Optuna's own (``create_trial(constraints=...)``): TPE treats
infeasible trials as worse than every feasible one, and the selection is the best feasible trial; when no
trial is feasible, the one with the smallest violation (ties: higher objective). The same rule for every
method.

**Budget.** Every method gets exactly ``tuning.trials`` trials (a method without a tuned parameter: one, its
default). Trial 0 is the method's base configuration in the suite
(:func:`benchmark.runner.cells.base_config`: the first configuration ``methods:`` lists, else its built-in
default); trials 1.. sample :func:`benchmark.core.space.tuned` of its declared space with
Optuna's ``TPESampler`` (``n_startup_trials = max(2, trials // 2)``) or ``RandomSampler``, seeded with
``sampler_seed`` + a stable hash of (suite, protocol, method, trial number). Sampled floats are rounded to
4 significant digits (a readable ``params_id``; the rounded value is the one run and recorded).
A trial whose method raises, skips, returns non-finite weights or exceeds the suite's ``budget_s`` is
recorded as failed with the reason and told to Optuna as pruned (a score of -inf); the study goes on.

**Cache.** Each trial's result is a JSON under ``runs/<suite>/tuning/trials/<protocol>/<method>/``, keyed
by (data, the suite's dataset, model and recipe, tuning split and seeds, protocol, tuning forget sets, tuning
originals, method, its ``code_hash``, the full hyperparameters, ``budget_s``). Trial i is proposed by a
study rebuilt in memory from the records of trials 0..i-1 (``study.add_trial(create_trial(...))``), so a
fresh run and a resumed one propose the same points, a re-run computes nothing, and adding a method (or a
protocol) tunes only that method (protocol).
``trials``, ``sampler`` and ``sampler_seed`` choose the points, not their results, and are not in the key.
A finished study is also stored whole under ``runs/<suite>/tuning/studies/`` with :func:`study_key` (trial
0's key, the space, the sampler settings, Optuna's version): the stage reuses it in the driver, so a tune
stage with nothing new to try starts no worker and rebuilds no proposal (19 s -> ~5 s on digits-mlp).

**Output** ``tuning/<suite>.yaml`` (see :func:`write_selection`); the unlearn stage reads it through
:mod:`benchmark.runner.selection`.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

from benchmark.core.space import Param, tuned
from benchmark.metrics.accuracy import tow
from benchmark.runner.artifacts import file_hash, read_json, stable_hash, write_json
from benchmark.runner.cells import base_config
from benchmark.runner.executor import Unit, UnitResult, run_stage
from benchmark.runner.method_code import method_code_hash
from benchmark.runner.suite import SuiteRun
from benchmark.runner.tuning_data import (
    TuningData,
    train_tuning_gold,
    train_tuning_original,
    tuning_data,
    tuning_model_units,
)
from benchmark.unlearners.base import BudgetExceeded, Context, get_unlearner

__all__ = ["run_trial", "run_tuning", "study_seed", "tune_study", "trial_key", "write_selection"]

OBJECTIVE = "tow_auc_val"


# --- Optuna plumbing ---------------------------------------------------------------------------------------
class _Recorder:
    """A stand-in trial that records the Optuna distribution each :class:`Param` would sample from."""

    def __init__(self) -> None:
        self.dists: dict[str, optuna.distributions.BaseDistribution] = {}

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        self.dists[name] = optuna.distributions.FloatDistribution(low, high, log=log)
        return low

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        self.dists[name] = optuna.distributions.IntDistribution(low, high, log=log)
        return low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.dists[name] = optuna.distributions.CategoricalDistribution(list(choices))
        return choices[0]


def distributions(space: dict[str, Param]) -> dict[str, optuna.distributions.BaseDistribution]:
    rec = _Recorder()
    for name, p in space.items():
        p.suggest(rec, name)
    return rec.dists


def _round(value: Any, dist: optuna.distributions.BaseDistribution) -> Any:
    if isinstance(dist, optuna.distributions.FloatDistribution):
        return min(dist.high, max(dist.low, float(f"{float(value):.4g}")))
    return value


def study_seed(sampler_seed: int, suite: str, protocol: str, method: str, number: int) -> int:
    """The sampler seed of trial ``number``: ``sampler_seed`` + a stable hash of the study, mod 2**31."""
    return (sampler_seed + int(stable_hash([suite, protocol, method, number]), 16)) % 2**31


def _sampler(kind: str, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, trials // 2))


def _inside(dist: optuna.distributions.BaseDistribution, value: Any) -> bool:
    try:
        return value is not None and bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _rebuilt_study(
    records: list[dict[str, Any]], dists: dict[str, Any], sampler: optuna.samplers.BaseSampler,
    max_retain_drop: float | None = None,
) -> optuna.Study:
    """An in-memory study holding the finished ``records`` (values outside the search space, e.g. a default
    outside its range, are recorded but not shown to the sampler), with their utility constraint when
    ``max_retain_drop`` is set."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for r in records:
        params = {k: r["params"][k] for k in dists}
        if not all(_inside(dists[k], params[k]) for k in dists):
            continue
        ok = r["status"] == "ok"
        state = optuna.trial.TrialState.COMPLETE if ok else optuna.trial.TrialState.PRUNED
        constrained = ok and max_retain_drop is not None
        constraints = {"retain_drop": violation(r, max_retain_drop)} if constrained else None
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, state=state,
                                                  value=r["value"] if ok else None,
                                                  constraints=constraints))  # fmt: skip
    return study


# --- one trial ---------------------------------------------------------------------------------------------
def trial_key(
    run: SuiteRun, td: TuningData, protocol: str, method: str, hparams: dict[str, Any],
    code: str | None = None, by_recipe: bool = False,
) -> str:
    """The cache key of one trial (``code``: the method's ``code_hash()``, computed here if not given).

    Of the suite, its dataset, model and recipe only: the lists of evaluation protocols and seeds enter
    through the tuning forget sets (drawn outside every evaluation forget set), so adding a protocol to a
    suite re-tunes only that protocol. The tuning originals enter by their bytes (the trial's value is a
    function of them), or with ``by_recipe`` by the key of what trains them (data, model, recipe, seed,
    labels): the same on every machine, where the bytes differ between CPU vendors (README, *Known
    problems*)."""
    variant = run.variant(protocol)
    originals = ([td.original_key(s, protocol) for s in td.cfg.seeds] if by_recipe
                 else [file_hash(td.original_path(s, variant)) for s in td.cfg.seeds])  # fmt: skip
    return stable_hash(
        {
            "data": run.data_key,
            "suite": run.suite.key_fields(),
            "budget_s": run.suite.budget_s,
            "tuning": {"seeds": list(td.cfg.seeds), "split": td.split_key},
            "protocol": run.protocol(protocol).key_fields(),
            "forget": td.forget_key(protocol),
            "originals": originals,
            "method": method,
            "code": code or method_code_hash(method),
            "hparams": hparams,
        }
    )


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def run_trial(run: SuiteRun, td: TuningData, protocol: str, method: str, hparams: dict[str, Any]) -> dict:
    """Run ``method`` with ``hparams`` over the K tuning requests of every tuning seed; return the record
    (``status`` ok / failed, ``reason``, ``value`` = the objective or -inf, ``tow`` per seed and step,
    ``retain_drop`` = the largest drop over every seed and step and ``retain_drop_by_seed`` each seed's
    largest, ``wall_s`` and ``epochs_equiv`` of the unlearning calls)."""
    cls = get_unlearner(method)
    wall, work = 0.0, 0.0
    tows: list[list[float]] = []
    drops: list[list[float]] = []  # gold's retain accuracy minus the unlearned model's, per seed and step

    def failed(reason: str) -> dict[str, Any]:
        return {"status": "failed", "reason": reason, "value": -math.inf, "tow": tows, "wall_s": wall,
                "epochs_equiv": work, "retain_drop": math.inf}  # fmt: skip

    try:
        unlearner = cls(**hparams)
        skip = unlearner.skip(run.n_params)
    except Exception as exc:
        return failed(f"{type(exc).__name__}: {exc}")
    if skip:
        return failed(f"skipped: {skip}")
    for seed in td.cfg.seeds:
        torch.manual_seed(seed)
        ctx = Context(seed=seed, recipe=run.suite.recipe, make_model=td.make_model, n_train=td.n_train,
                      budget_s=run.suite.budget_s)  # fmt: skip
        model = td.load_original(seed, protocol)
        per_step: list[float] = []
        drops.append([])
        for step in run.steps(protocol):
            request = td.request(protocol, seed, step)
            ctx.counters.reset()
            ctx.info = {}
            t0 = time.perf_counter()
            try:
                model = unlearner.unlearn(model, request, ctx)
                ctx.check_budget()
            except BudgetExceeded as exc:
                return failed(f"timeout at seed {seed} request {step}: {exc}")
            except Exception as exc:
                where = traceback.format_exc(limit=-1).strip().splitlines()[-3].strip()
                return failed(f"{type(exc).__name__}: {exc} (seed {seed} request {step}) | {where}")
            finally:
                wall += time.perf_counter() - t0
                work += run.params.epochs_equiv(ctx.counters.as_dict(), td.n_train)
            if not _finite(model):
                return failed(f"non-finite weights at seed {seed} request {step}")
            u = td.accuracies(model, protocol, seed, step)
            g = td.gold_accuracies(protocol, seed, step)
            per_step.append(tow(u[0], u[1], u[2], g[0], g[1], g[2]))
            drops[-1].append(g[1] - u[1])
        tows.append(per_step)
    value = float(sum(sum(t) / len(t) for t in tows) / len(tows))
    if not math.isfinite(value):
        return failed("non-finite ToW")
    by_seed = [max(d) for d in drops]
    return {"status": "ok", "reason": "", "value": value, "tow": tows, "wall_s": wall, "epochs_equiv": work,
            "retain_drop": max(by_seed), "retain_drop_by_seed": by_seed}  # fmt: skip


def violation(record: dict[str, Any], max_retain_drop: float | None) -> float:
    """The trial's constraint value c = retain_drop - ``max_retain_drop`` (feasible iff c <= 0; 0 without a
    constraint; +inf for a failed trial)."""
    if record["status"] != "ok":
        return math.inf
    if max_retain_drop is None:
        return 0.0
    return float(record["retain_drop"]) - max_retain_drop


def select_trial(records: list[dict[str, Any]], max_retain_drop: float | None) -> dict[str, Any]:
    """The selected record: the best objective among feasible trials (ties: the earliest); when none is
    feasible, the smallest violation (then the higher objective, then the earliest)."""
    def rank(r: dict[str, Any]) -> tuple[float, float, int]:
        return (max(0.0, violation(r, max_retain_drop)), -r["value"], r["number"])

    return min(records, key=rank)


# --- one study ---------------------------------------------------------------------------------------------
def _trial_path(td: TuningData, protocol: str, method: str, key: str) -> Any:
    return td.dir / "trials" / protocol / method / f"{key}.json"


def _study_path(td: TuningData, protocol: str, method: str) -> Any:
    return td.dir / "studies" / protocol / f"{method}.json"


def study_key(run: SuiteRun, protocol: str, method: str, by_recipe: bool = False) -> str:
    """The key of a whole study: its trial 0 (data, suite, tuning split and seeds, forget sets, originals,
    method code, base configuration), the searched space, the sampler and its seed, the number of trials
    and Optuna's version. Every later trial is a deterministic function of these, so a study whose file
    holds this key is reused without rebuilding its proposals (a no-op tune stage starts no worker).
    ``by_recipe``: the tuning originals by what trains them, not by their bytes (:func:`trial_key`): the
    study's *definition*, equal on machines whose kernels give the originals other last bits."""
    td = tuning_data(run)
    cls = get_unlearner(method)
    space = tuned(cls.declared_space())
    code = method_code_hash(cls)
    return stable_hash({
        "trial0": trial_key(run, td, protocol, method, base_config(run, method), code, by_recipe),
        "space": {k: repr(v) for k, v in sorted(space.items())},
        "trials": td.cfg.trials, "sampler": td.cfg.sampler, "sampler_seed": td.cfg.sampler_seed,
        "max_retain_drop": td.cfg.max_retain_drop,
        "optuna": optuna.__version__, "study": [run.suite.name, protocol, method],
    })  # fmt: skip


def cached_study(run: SuiteRun, protocol: str, method: str, key: str | None = None) -> dict[str, Any] | None:
    """The stored study of (``protocol``, ``method``) if it holds ``key`` (default: the current
    :func:`study_key`), else None."""
    path = _study_path(tuning_data(run), protocol, method)
    if not path.exists():
        return None
    doc = read_json(path)
    if doc.get("key") != (key or study_key(run, protocol, method)):
        return None
    return {**doc["study"], "computed": 0}


def tune_study(run: SuiteRun, protocol: str, method: str) -> dict[str, Any]:
    """The study of (suite, ``protocol``, ``method``): its trials (cached ones reused) and the selection."""
    skey = study_key(run, protocol, method)
    hit = cached_study(run, protocol, method, skey)
    if hit is not None:
        return hit
    td = tuning_data(run)
    cfg = td.cfg
    cls = get_unlearner(method)
    code = method_code_hash(cls)
    space = tuned(cls.declared_space())
    dists = distributions(space)
    default = base_config(run, method)
    n_trials = cfg.trials if space else 1
    records: list[dict[str, Any]] = []
    computed = 0
    for number in range(n_trials):
        hp = dict(default)
        if number > 0:
            seed = study_seed(cfg.sampler_seed, run.suite.name, protocol, method, number)
            sampler = _sampler(cfg.sampler, seed, cfg.trials)
            study = _rebuilt_study(records, dists, sampler, cfg.max_retain_drop)
            trial = study.ask()
            hp.update({k: _round(p.suggest(trial, k), dists[k]) for k, p in space.items()})
        key = trial_key(run, td, protocol, method, hp, code)
        path = _trial_path(td, protocol, method, key)
        cached = read_json(path) if path.exists() else {}
        if cached.get("key") == key and "retain_drop" in cached:  # records before the constraint lack it
            result = cached
            how = "cached"
        else:
            result = {"key": key, "hparams": hp, **run_trial(run, td, protocol, method, hp)}
            write_json(path, result)
            computed += 1
            how = "ran"
        stats = ("status", "reason", "value", "wall_s", "epochs_equiv", "retain_drop")
        rec = {"number": number, "params": {k: hp[k] for k in space}, "hparams": hp, "key": key,
               **{k: result[k] for k in stats}}  # fmt: skip
        rec["feasible"] = violation(rec, cfg.max_retain_drop) <= 0
        records.append(rec)
        shown = f"{rec['value']:.4f}" if rec["status"] == "ok" else f"failed ({rec['reason'][:80]})"
        if rec["status"] == "ok" and not rec["feasible"]:
            shown += f" infeasible (retain -{rec['retain_drop']:.3f})"
        print(f"[{run.suite.name}] tune {protocol} {method} trial {number + 1}/{n_trials} {how}: "
              f"{rec['params']} -> {shown} ({rec['wall_s']:.1f} s)", file=sys.stderr, flush=True)  # fmt: skip
    best = select_trial(records, cfg.max_retain_drop)
    summary = {
        "protocol": protocol,
        "method": method,
        "code_hash": code,
        "tuned": sorted(space),
        "selected": best["hparams"],
        "best_trial": best["number"],
        "best_value": best["value"],
        "feasible": bool(best["feasible"]),
        "n_trials": n_trials,
        "cost": {"wall_s": sum(r["wall_s"] for r in records),
                 "epochs_equiv": sum(r["epochs_equiv"] for r in records)},  # fmt: skip
        "trials": records,
    }
    doc = {"key": skey, "study": summary}
    write_json(_study_path(td, protocol, method), doc, sort_keys=False)  # its order is tuning/S.yaml's
    return {**summary, "computed": computed}


def tune_study_unit(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """The executor's entry point for one study."""
    return tune_study(run, unit.args["protocol"], unit.args["method"])


# --- the stage ---------------------------------------------------------------------------------------------
def _clean(x: Any) -> Any:
    """Plain YAML-able values: floats to 6 significant digits (inf kept), tuples to lists."""
    if isinstance(x, float):
        return x if not math.isfinite(x) else float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def _plain(x: Any) -> Any:
    """Tuples to lists (YAML-able), everything else verbatim."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def write_untuned(run: SuiteRun) -> Path:
    """``tuning/<suite>.yaml`` of a run without tuning (``tuning: null`` in params.yaml, e.g. a smoke test of
    the DAG): no selection, so the unlearn grid runs what ``methods:`` lists for each method, else its
    built-in default (:func:`benchmark.runner.cells.configured_grid`). Not the benchmark's protocol: the
    file says so, and the leaderboard's rows carry ``selected = False``."""
    path = run.layout.tuning_path(run.suite.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"suite": run.suite.name, "tuning": "disabled (tuning: null): untuned, what methods: lists",
           "protocols": {}}  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_selection(run: SuiteRun, studies: list[dict[str, Any]]) -> dict[str, Any]:
    """Write ``tuning/<suite>.yaml``::

        suite: NAME
        objective: tow_auc_val
        config: {seeds, trials, sampler, sampler_seed, validation_fraction, validation_seed, max_retain_drop}
        protocols:
          PROTOCOL:
            METHOD:
              selected: {PARAM: VALUE, ...}     # every hyperparameter: what the unlearn stage runs
              tuned: [PARAM, ...]               # the sampled ones
              best_value: 0.93                  # objective of the selected trial
              best_trial: 2
              feasible: true                    # false: no trial met the utility constraint
              n_trials: 6
              cost: {wall_s: 12.3, epochs_equiv: 4.5}
              code_hash: 16 hex
              key: 16 hex                       # study_key: what the study's trials depend on
              trials:
              - {number: 0, params: {...}, status: ok, reason: '', value: 0.91, wall_s: 2.0,
                 epochs_equiv: 0.7, retain_drop: 0.004, feasible: true}

    Values come from the cached trials only (no timestamps), so an unchanged re-run rewrites the same
    bytes."""
    td = tuning_data(run)
    doc: dict[str, Any] = {
        "suite": run.suite.name,
        "objective": OBJECTIVE,
        "config": {"seeds": list(td.cfg.seeds), "trials": td.cfg.trials, "sampler": td.cfg.sampler,
                   "sampler_seed": td.cfg.sampler_seed, "validation_fraction": td.cfg.validation_fraction,
                   "validation_seed": td.cfg.validation_seed,
                   "max_retain_drop": td.cfg.max_retain_drop},  # fmt: skip
        "protocols": {},
    }
    for st in studies:
        # hyperparameters verbatim (the unlearn grid compares them with its configurations), figures rounded
        entry = {"selected": _plain(st["selected"]), "tuned": list(st["tuned"])}
        entry.update(_clean({k: st[k] for k in ("best_value", "best_trial", "feasible", "n_trials", "cost")
                             if k in st}))
        entry["code_hash"] = st["code_hash"]
        if st.get("key"):
            entry["key"] = st["key"]  # the study's inputs (study_key): a fresh clone reuses the entry by it
        if st.get("recipe"):
            entry["recipe"] = st["recipe"]  # its definition (study_key by_recipe): same on every machine
        stats = ("status", "reason", "value", "wall_s", "epochs_equiv", "retain_drop", "feasible")
        entry["trials"] = [{"number": r["number"], "params": _plain(r["params"]),
                            **_clean({k: r[k] for k in stats if k in r})} for r in st["trials"]]  # fmt: skip
        doc["protocols"].setdefault(st["protocol"], {})[st["method"]] = entry
    path = run.layout.tuning_path(run.suite.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Hyperparameters selected by `unlearn-bench tune --suite {run.suite.name}` on tuning\n"
              "# seeds, tuning forget sets and a validation split (never the test set); README: Tuning.\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=110, default_flow_style=None))
    tmp.replace(path)
    return doc


def run_tuning(run: SuiteRun, methods: list[str] | None = None) -> dict[str, int]:
    """Train the tuning originals still missing, run every study, write ``tuning/<suite>.yaml``. Returns
    counts: studies, trials computed, trials reused, studies taken from the committed selection.

    A study is not recomputed when its entry in the existing ``tuning/<suite>.yaml`` (first: the file
    keeps its bytes, wall times included) or its stored study (``runs/<suite>/tuning``) holds the current
    :func:`study_key`: the file records each study's key, and every trial is a deterministic function of
    what the key hashes, so a fresh clone (the committed selection, none of the trials behind it) re-tunes
    only the studies whose inputs changed. Without that, a preset
    that adds a population to a suite (a parameter of this stage) re-ran every study: hours on 2 cores.
    On a machine whose kernels train the tuning originals with other last bits (another CPU vendor) no key
    matches; an entry whose recorded ``recipe`` (the study's definition, :func:`study_key` ``by_recipe``)
    is the current one is then reused as it stands, key included, and counted ``foreign``: what the default
    pipeline does there too (DVC finds the ``tune`` stage up to date), rather than hours of re-tuning
    (delete the file to re-tune on this machine). The tuning golds are trained only when some study runs."""
    td = tuning_data(run)
    td.write_forget_sets()
    name = run.suite.name
    originals, _ = tuning_model_units(run)
    run_stage(run, originals, train_tuning_original, f"{name}: tuning originals")
    chosen = [m for m in run.suite.methods if methods is None or m in methods]
    previous = _previous(run)  # the existing tuning/<suite>.yaml, read once
    committed = {(s["protocol"], s["method"]): s for s in previous if s.get("key")}
    studies: list[dict[str, Any]] = []
    units: list[Unit] = []
    keys: dict[tuple[str, str], str] = {}
    recipes: dict[tuple[str, str], str] = {}
    from_file = foreign = 0
    for p in run.suite.protocols:
        for m in chosen:
            keys[(p, m)] = key = study_key(run, p, m)
            recipes[(p, m)] = recipe = study_key(run, p, m, by_recipe=True)
            entry = committed.get((p, m), {})
            hit: dict[str, Any] | None
            if entry.get("key") == key:  # first: the file keeps its bytes (wall times)
                hit, from_file = entry, from_file + 1
            else:
                hit = cached_study(run, p, m, key)
            if hit is None and entry.get("recipe") == recipe:  # the same study, made from other bits
                studies.append(entry)
                from_file, foreign = from_file + 1, foreign + 1  # the CLI's summary says how many
            elif hit is not None:
                studies.append({**hit, "key": key, "recipe": recipe})
            else:
                units.append(Unit("tune-study", f"tune/{p}/{m}", name, {"protocol": p, "method": m}))
    if units:
        _, golds = tuning_model_units(run)
        run_stage(run, golds, train_tuning_gold, f"{name}: tuning golds")

    def report(res: UnitResult) -> None:
        if res.ok:
            v = res.value
            print(f"[{name}] tuned {v['protocol']} {v['method']}: trial {v['best_trial']} "
                  f"{_clean(v['selected'])} -> {v['best_value']:.4f} ({v['n_trials']} trials, "
                  f"{v['computed']} computed)", file=sys.stderr, flush=True)  # fmt: skip

    results = run_stage(run, units, tune_study_unit, f"{name}: tuning studies", on_result=report)
    studies += [{**r.value, "key": keys[pm], "recipe": recipes[pm]} for r in results
                for pm in [(r.value["protocol"], r.value["method"])]]  # fmt: skip
    if methods is not None:  # keep the other methods' entries of an earlier run
        keep = {(s["protocol"], s["method"]) for s in studies}
        studies = [s for s in previous if (s["protocol"], s["method"]) not in keep] + studies
    pairs = [(p, m) for p in run.suite.protocols for m in run.suite.methods]
    order = {pm: i for i, pm in enumerate(pairs)}
    studies = sorted((s for s in studies if (s["protocol"], s["method"]) in order),
                     key=lambda s: order[(s["protocol"], s["method"])])  # fmt: skip
    write_selection(run, studies)
    n_trials = sum(len(s["trials"]) for s in studies)
    computed = sum(s.get("computed", 0) for s in studies)
    cached = n_trials - computed
    return {"studies": len(studies), "computed": computed, "cached": cached, "committed": from_file,
            "foreign": foreign}  # fmt: skip


def _previous(run: SuiteRun) -> list[dict[str, Any]]:
    path = run.layout.tuning_path(run.suite.name)
    if not path.exists():
        return []
    doc = yaml.safe_load(path.read_text()) or {}
    out = []
    for protocol, methods in (doc.get("protocols") or {}).items():
        for method, entry in methods.items():
            out.append({"protocol": protocol, "method": method, **entry, "computed": 0})
    return out
