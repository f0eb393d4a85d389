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
* ``unlearned/<params_id>``: the method (a bare name: the configuration the tune stage selected for the
  protocol, the row the leaderboard headlines; ``method[k=v,...]``: that configuration) applied over
  requests 1..K to original i, for every method in ``population.methods`` (``original`` is the originals
  themselves).

Everything is cached per member with its key (as originals and gold models are), so an interrupted stage
resumes and adding a method trains only its members. Scoring
(:func:`benchmark.runner.population_scores.score_population`) runs in the ``evaluate`` stage and writes
``results/<suite>_population.csv`` (one row per protocol × method) and
``results/<suite>_population_examples.csv`` (per-example KLoM).
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmark.config import ConfigError, ExecutorConfig
from benchmark.core.status import Status
from benchmark.models.training import train_model
from benchmark.runner.artifacts import (
    finite_state,
    load_state,
    read_json,
    save_state,
    slug,
    stable_hash,
    write_json,
)
from benchmark.runner.executor import Unit, UnitResult, run_stage
from benchmark.runner.method_code import method_code_hash
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
    code = method_code_hash(m.method)
    return stable_hash({"code": code, "method": m.method, "hparams": dict(m.hparams),
                        "original": member_key(run, orig), "protocol": run.protocol(m.protocol).key_fields(),
                        "forget": forget, "budget_s": run.suite.budget_s})  # fmt: skip


def _method_config(run: SuiteRun, name: str, protocol: str) -> tuple[str, str, dict[str, Any]]:
    """(method, params_id, hparams) of a population entry on ``protocol``.

    A bare method name is the configuration the leaderboard headlines: the one the tuning stage selected
    for this protocol (``tuning/<suite>.yaml``), else (``tuning: null``) the method's base configuration.
    ``method[k=v,...]`` is the method's base configuration with those values (the params_id
    :func:`benchmark.runner.cells.config_label` gives it)."""
    from benchmark.runner.cells import MissingInputError, base_config, config_label, selected_config

    where = f"suites.{run.suite.name}.population.methods"
    if "[" in name:
        method, _, body = name.partition("[")
        if not body.endswith("]"):
            raise ConfigError(f"{where}: {name!r}: expected method[key=value,...]")
        cls = get_unlearner(method)
        base = base_config(run, method)
        hp = dict(base)
        for item in filter(None, body[:-1].split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in hp:
                raise ConfigError(f"{where}: {name!r}: {key!r} is not a parameter of {method} "
                                  f"(parameters: {sorted(hp)})")  # fmt: skip
            hp[key] = yaml.safe_load(value)
        hp = dict(cls(**hp).hparams)  # checked and coerced by the method's declared space
        return method, config_label(method, hp, base), hp
    if run.params.tuning is not None:
        picked = selected_config(run, name, protocol)
        if picked is None:
            path = run.layout.tuning_path(run.suite.name)
            raise MissingInputError(f"{path}: no selection for {name} on {protocol}; run "
                                    f"`unlearn-bench tune --suite {run.suite.name}` first")  # fmt: skip
        return name, picked[0], picked[1]
    return name, name, dict(base_config(run, name))


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


def population_plan(run: SuiteRun) -> dict[str, Any]:
    """What the population stage makes, as DVC should see it: per group of members (``original/<labels>``,
    ``gold/<protocol>``, ``unlearned/<protocol>/<params_id>``) their count and the hash of their cache keys.

    The keys already hold everything a member is made from (data, recipe, seeds, labels, forget sets, the
    method's selected configuration and code hash), so the ``population`` stage depends on this file
    instead of on every method's params, ``tuning/<suite>.yaml`` and the method-code file: adding or
    re-tuning a method that has no population leaves the file, and so the stage, untouched. A population
    method without a tuning selection yet is recorded as ``missing`` (the stage then fails with the reason).
    """
    pop = run.suite.population
    if pop is None:
        return {"suite": run.suite.name, "population": None}
    try:
        members = population_members(run)
    except Exception as exc:  # noqa: BLE001 - e.g. MissingInputError: recorded, raised by the stage itself
        return {"suite": run.suite.name, "models": pop.models, "missing": f"{type(exc).__name__}: {exc}"}
    groups: dict[str, list[str]] = {}
    for m in members:
        name = f"{m.kind}/{m.protocol or 'clean'}" + (f"/{m.params_id}" if m.kind == "unlearned" else "")
        groups.setdefault(name, []).append(member_key(run, m))
    summary = {g: {"members": len(keys), "keys": stable_hash(keys)} for g, keys in sorted(groups.items())}
    return {"suite": run.suite.name, "models": pop.models, "groups": summary}


def write_population_plan(run: SuiteRun) -> Path:
    """Write :func:`population_plan` to ``tuning/<suite>_population.json`` (rewritten only if it changed, so
    its modification time, like its hash, moves only with its content)."""
    path = run.layout.population_plan_path(run.suite.name)
    text = json.dumps(population_plan(run), indent=1, sort_keys=True) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def _done(run: SuiteRun, m: Member) -> bool:
    path = member_path(run, m)
    meta = path.with_suffix(".json")
    if not meta.exists() or read_json(meta).get("key") != member_key(run, m):
        return False
    return path.exists() or read_json(meta).get("status") != Status.OK


def _train_member(run: SuiteRun, m: Member) -> dict[str, Any]:
    """Train or unlearn one member; write its model and sidecar JSON (status, error, seconds)."""
    path, key = member_path(run, m), member_key(run, m)
    t0 = time.perf_counter()
    status, error = Status.OK, ""
    seed = _pop_seed(run, m.index)
    if m.kind == "original":
        y = run.train_labels(m.protocol, POP).to(run.device)
        model = train_model(run.make_model(seed), run.x_train, y, run.suite.recipe, seed)
    elif m.kind == "gold":
        assert m.protocol is not None
        retain = run.request(m.protocol, POP, run.protocol(m.protocol).requests).retain
        model = train_model(run.make_model(seed), retain.x, retain.y, run.suite.recipe, seed)
    else:
        assert m.protocol is not None
        orig = Member("original", run.variant(m.protocol), m.index)
        model = load_state(member_path(run, orig), run.make_model(seed))
        ctx = Context(seed=seed, recipe=run.suite.recipe, make_model=run.make_model, n_train=run.n_train,
                      budget_s=run.suite.budget_s, device=run.device)  # fmt: skip
        torch.manual_seed(seed)
        try:
            method = get_unlearner(m.method)(**dict(m.hparams))
            reason = method.skip(run.n_params)
            if reason:
                status, error = Status.SKIPPED, reason
            else:
                for step in run.steps(m.protocol):
                    ctx.counters.reset()
                    ctx.info = {}
                    model = method.unlearn(model, run.request(m.protocol, POP, step), ctx)
                    ctx.check_budget()
                if not finite_state(model):
                    status, error = Status.NAN, "non-finite weights or buffers after the update"
        except Exception as exc:  # a failing method fails its member, not the stage
            status = Status.TIMEOUT if isinstance(exc, BudgetExceeded) else Status.FAILED
            where = traceback.format_exc(limit=-1).strip().splitlines()[-3].strip()  # the raising line
            error = f"{type(exc).__name__}: {exc} | {where}"
    meta = {"key": key, "kind": m.kind, "protocol": m.protocol, "index": m.index, "method": m.method,
            "params_id": m.params_id, "status": status, "error": error,
            "wall_s": time.perf_counter() - t0}  # fmt: skip
    if status == Status.OK:
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
        if res.ok and res.value["status"] not in (Status.OK, Status.SKIPPED):
            m = res.unit.args["member"]
            print(f"[{run.suite.name}] population {m.params_id} {m.protocol} #{m.index}: "
                  f"{res.value['status']}: {res.value['error']}", flush=True)  # fmt: skip

    for wave in ([m for m in todo if m.kind != "unlearned"], [m for m in todo if m.kind == "unlearned"]):
        units = [Unit(m.kind, f"population/{m.kind}/{m.protocol}/{m.params_id}/{m.index}", run.suite.name,
                      {"member": m}) for m in wave]  # fmt: skip
        run_stage(run, units, population_unit, desc, executor, on_result=report)
    return {"run": len(todo), "cached": len(members) - len(todo)}


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
            name, params_id, hp = _method_config(run, method, p)
            hpt = tuple(sorted(hp.items()))
            members = [Member("unlearned", p, i, name, params_id, hpt) for i in range(pop.models)]
            groups.append((name, params_id, members))
    return groups
