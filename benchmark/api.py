"""A small Python API for notebooks (docs/api.md): results as a DataFrame, one method on one request.

    from benchmark import api
    df = api.load_results("digits-mlp")                         # results/<suite>.csv, typed
    suite = api.open_suite("digits-mlp", overrides={"seeds": [0]})
    out = suite.unlearn("finetune", protocol="class", seed=0, step=1, epochs=2)
    out.scores["tow"], out.scores["acc_forget"], out.scores["gold_pop_forget"]

:meth:`Suite.unlearn` runs requests 1..``step`` of the protocol in sequence from the cached original model
(``runs/<suite>/originals``) exactly as a pipeline cell does, and scores the final model with the
``evaluate`` stage's :func:`benchmark.runner.scoring.judge` against the gold retrain of (protocol, seed,
step) and the gold population (one gold model per suite seed). Missing inputs (the dataset snapshot, the
forget sets, the original, the gold models) are built on the fly under ``root`` as the pipeline stages
would build them, and a line says so; the ``memorized`` protocol's memorisation scores are not (run
``unlearn-bench memorize``). Relearn time is not computed (``evaluate`` adds it).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from benchmark.config import parse_params, read_yaml
from benchmark.runner.artifacts import Layout, load_state
from benchmark.runner.cells import Cell
from benchmark.runner.gold_reference import GoldReference
from benchmark.runner.scoring import EvalConfig, judge
from benchmark.runner.suite import SuiteRun
from benchmark.unlearners.base import Context, get_unlearner

__all__ = ["Outcome", "Suite", "load_results", "open_suite"]


def load_results(suite: str | None = None, root: str | Path = ".") -> pd.DataFrame:
    """The per-request result rows of ``results/<suite>.csv`` (every suite's when ``suite`` is None),
    read and typed as the leaderboard reads them (:func:`benchmark.leaderboard.aggregate.normalise`)."""
    from benchmark.leaderboard.aggregate import normalise, read_results

    folder = Path(root) / "results"
    if suite is not None:
        files = [folder / f"{suite}.csv"]
    else:
        files = sorted(f for f in folder.glob("*.csv") if "_population" not in f.name)
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        why = missing or folder
        raise FileNotFoundError(f"no results: {why} (run `dvc repro` or `unlearn-bench evaluate`)")
    return normalise(pd.concat([read_results(f) for f in files], ignore_index=True))


@dataclass
class Outcome:
    """One method run over requests 1..``step``: the final ``model``, its ``scores`` (the result row's
    metric columns: ``acc_*``, ``gold_*``-relative gaps, ``tow``, divergences, MIA...) and each request's
    work (``wall_s`` and the method's counters)."""

    model: torch.nn.Module
    scores: dict[str, Any]
    requests: list[dict[str, Any]] = field(default_factory=list)


class Suite:
    """One suite of params.yaml opened under ``root`` (see :func:`open_suite`)."""

    def __init__(self, run: SuiteRun) -> None:
        self.run = run

    @property
    def name(self) -> str:
        return self.run.suite.name

    def unlearn(self, method: str, protocol: str, seed: int = 0, step: int = 1, **hparams: Any) -> Outcome:
        """Run ``method`` (its default configuration, ``hparams`` overriding) on requests 1..``step`` of
        ``protocol`` for model ``seed``, then score it against the gold model (module docstring)."""
        suite = self.run.suite
        if protocol not in suite.protocols or seed not in suite.seeds:
            raise ValueError(f"{self.name}: protocol {protocol!r} / seed {seed} not in {suite.protocols} / "
                             f"{suite.seeds}")
        run = SuiteRun(self.run.params, dataclasses.replace(suite, protocols=(protocol,), population=None),
                       self.run.layout)
        if not 1 <= step <= run.protocol(protocol).requests:
            k = run.protocol(protocol).requests
            raise ValueError(f"step {step}: protocol {protocol!r} has requests 1..{k}")
        _ensure_inputs(run, protocol, seed, step)
        cls = get_unlearner(method)
        hp = {**next(cls.grid(full=False)), **hparams}
        unlearner = cls(**hp)
        torch.manual_seed(seed)
        ctx = Context(seed=seed, recipe=suite.recipe, make_model=run.make_model, n_train=run.n_train,
                      budget_s=suite.budget_s, device=run.device)
        model = load_state(run.original_path(seed, protocol), run.make_model(seed))
        requests = []
        for k in range(1, step + 1):
            ctx.counters.reset()
            ctx.info = {}
            t0 = time.perf_counter()
            model = unlearner.unlearn(model, run.request(protocol, seed, k), ctx)
            requests.append({"step": k, "wall_s": time.perf_counter() - t0, **ctx.counters.as_dict()})
        ref = GoldReference(run, EvalConfig(relearn=False))
        cell = Cell(protocol, seed, method, hp, method)
        return Outcome(model, judge(ref, cell, step, model, requests[-1]), requests)


def open_suite(
    name: str,
    root: str | Path = ".",
    params: str | Path = "params.yaml",
    overrides: dict[str, Any] | None = None,
) -> Suite:
    """Open suite ``name`` of ``params`` (relative to ``root``), its keys replaced by ``overrides`` (e.g.
    ``{"seeds": [0]}``: a one-model gold population, so only one gold model per step is needed). The
    dataset snapshot is built (``unlearn-bench fetch``) if ``root`` has none."""
    from benchmark.runner.prepare import fetch_dataset

    root = Path(root)
    path = Path(params) if Path(params).is_absolute() else root / params
    raw = read_yaml(path)
    raw["suites"][name].update(overrides or {})
    cfg = parse_params(raw)
    layout = Layout(root)
    dataset = cfg.suite(name).dataset
    if not (Path(layout.dataset_dir(dataset)) / "manifest.json").is_file():
        print(f"{dataset}: no snapshot under {root}: building it (unlearn-bench fetch --dataset {dataset})")
        fetch_dataset(cfg, dataset, layout)
    return Suite(SuiteRun(cfg, cfg.suite(name), layout))


def _ensure_inputs(run: SuiteRun, protocol: str, seed: int, step: int) -> None:
    """Build the forget sets, the original of ``seed`` and the gold models of steps 1..``step`` (every
    suite seed: the gold population) that are missing or stale, saying so."""
    from benchmark.runner.prepare import write_protocols
    from benchmark.runner.training import gold_units, original_units, train_gold_unit, train_original

    if not all(run.protocol_file(protocol, s).is_file() for s in run.suite.seeds):
        print(f"{run.suite.name}: forget sets of {protocol!r} missing: drawing them "
              "(unlearn-bench protocols)")
        write_protocols(run)
    for unit in original_units(run):
        if unit.args["seed"] == seed:
            print(f"{run.suite.name}: {unit.key} not cached: training it (unlearn-bench train)")
            train_original(run, unit)
    for unit in gold_units(run):
        if unit.args["step"] <= step:
            print(f"{run.suite.name}: {unit.key} not cached: training it (unlearn-bench gold)")
            train_gold_unit(run, unit)
