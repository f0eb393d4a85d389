"""Stage ``unlearn``: the grid of cells (suite × protocol × seed × method × params), each run over K requests.

A cell writes ``result.json`` + one model per request into its own folder, atomically. Its cache key
hashes the method's code, its parameters, the suite config, the data checksums and the original model,
so adding or changing one method re-runs only that method's cells. A method that raises, returns
non-finite weights or runs past the budget yields a failed row with the reason; the grid goes on.
"""

from __future__ import annotations

import copy
import math
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark.config import ExecutorConfig
from benchmark.core.status import Status
from benchmark.provenance import provenance
from benchmark.runner.artifacts import (
    file_hash,
    finite_state,
    load_state,
    read_json,
    save_state,
    stable_hash,
    write_json,
)
from benchmark.runner.executor import Unit, UnitResult, run_stage
from benchmark.runner.method_code import method_code_hash
from benchmark.runner.sandbox import GRACE_S, isolated, sandbox
from benchmark.runner.suite import SuiteRun
from benchmark.unlearners.base import BudgetExceeded, Context, get_unlearner


@dataclass(frozen=True)
class Cell:
    protocol: str
    seed: int
    method: str
    hparams: dict[str, Any]
    params_id: str  # method name, plus the values that differ from its base configuration (config_label)
    selected: bool = False  # the configuration the tuning stage selected for this protocol
    tuning_trials: int | None = None  # its tuning budget (selected cells only)
    tuning_s: float | None = None
    tuning_feasible: bool | None = None  # met the utility constraint (selected cells)


def configured_grid(run: SuiteRun, method: str) -> list[dict[str, Any]]:
    """The configurations ``methods:`` lists for ``method`` (a union of grids, in order, or the built-in
    grids with ``grid: full``); just the built-in default when it lists none. The first is the method's
    *base* configuration in this suite: trial 0 of its tuning study, and the values of the parameters the
    study does not search (e.g. ``fisher: empirical``)."""
    cls = get_unlearner(method)
    configs: list[dict[str, Any]] = []
    for overrides in run.params.method_grids.get(method) or [{}]:  # a union of grids
        configs += [hp for hp in cls.grid(overrides, full=run.params.grid == "full") if hp not in configs]
    return configs


def base_config(run: SuiteRun, method: str) -> dict[str, Any]:
    """The method's base configuration in this suite (see :func:`configured_grid`), the one its bare name
    denotes: the built-in default with ``grid: full`` (every grid point is then a row of its own)."""
    if run.params.grid == "full":
        return next(get_unlearner(method).grid(full=False))
    return configured_grid(run, method)[0]


def config_label(method: str, hp: dict[str, Any], base: dict[str, Any]) -> str:
    """The params_id of a configured configuration: the method's name for its base configuration
    (:func:`base_config`), otherwise the name with the values that differ from the base
    (``cure_newton_krylov[iters=2,k=10]``), so adding or removing another configuration never renames this
    one (nor re-runs its cells)."""
    diff = sorted(k for k in hp if k not in base or repr(hp[k]) != repr(base[k]))
    return f"{method}[{','.join(f'{k}={hp[k]}' for k in diff)}]" if diff else method


def expand_cells(run: SuiteRun, tuned: bool = True) -> list[Cell]:
    """Every cell of the suite, in a stable order.

    With a ``tuning:`` section, the configuration selected for (protocol, method) in ``tuning/<suite>.yaml``
    replaces the method's base configuration (the first one ``methods:`` lists, else its built-in default;
    the selection searched only around it); further configurations ``methods:`` lists (or all of them with
    ``grid: full``) still run, as extra rows. The selected cells are flagged ``selected`` (one equal to a
    configured one flags that one). ``tuned=False``: the grid without the selection."""
    from benchmark.runner.selection import load_selection

    picks = {}
    layout = getattr(run, "layout", None)  # a bare run (params and suite only) has no files: no selection
    if tuned and run.params.tuning is not None and layout is not None:
        picks = load_selection(layout.tuning_path(run.suite.name))
    replace_base = run.params.grid != "full"
    cells = []
    for method in run.suite.methods:
        configs, ids = _labelled_grid(run, method)
        for i, (hp, params_id) in enumerate(zip(configs, ids, strict=True)):
            for protocol in run.suite.protocols:
                pick = picks.get((protocol, method))
                if pick is not None and i == 0 and replace_base and pick.hparams != hp:
                    continue  # the selected configuration runs instead of the base one
                for seed in run.suite.seeds:
                    cells.append(_cell(protocol, seed, method, hp, params_id, pick))
        for protocol in run.suite.protocols:
            pick = picks.get((protocol, method))
            if pick is not None and pick.hparams not in configs:
                params_id = _selected_id(method, pick, configs, ids)
                for seed in run.suite.seeds:
                    cells.append(_cell(protocol, seed, method, pick.hparams, params_id, pick))
    return cells


def selected_config(run: SuiteRun, method: str, protocol: str) -> tuple[str, dict[str, Any]] | None:
    """(params_id, hparams) of the configuration selected for (``protocol``, ``method``) in
    ``tuning/<suite>.yaml``, labelled as :func:`expand_cells` labels its selected cells (without expanding the
    whole grid); None when there is no selection for it."""
    from benchmark.runner.selection import load_selection

    pick = load_selection(run.layout.tuning_path(run.suite.name)).get((protocol, method))
    if pick is None:
        return None
    return _selected_id(method, pick, *_labelled_grid(run, method)), dict(pick.hparams)


def _labelled_grid(run: SuiteRun, method: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The method's configured grid and each configuration's params_id (:func:`config_label`)."""
    configs = configured_grid(run, method)
    base = base_config(run, method)
    return configs, [config_label(method, hp, base) for hp in configs]


def _selected_id(method: str, pick: Any, configs: list[dict[str, Any]], ids: list[str]) -> str:
    """The params_id of a selected configuration: that of the grid configuration it equals, else
    :func:`~benchmark.runner.selection.selected_label`."""
    from benchmark.runner.selection import selected_label

    if pick.hparams in configs:
        return ids[configs.index(pick.hparams)]
    return selected_label(method, pick, set(ids))


def _cell(protocol: str, seed: int, method: str, hp: dict[str, Any], params_id: str, pick: Any) -> Cell:
    if pick is None or pick.hparams != hp:
        return Cell(protocol, seed, method, hp, params_id)
    return Cell(protocol, seed, method, hp, params_id, True, pick.trials, pick.wall_s, pick.feasible)


def cell_key(run: SuiteRun, cell: Cell) -> str:
    """What a cell's result depends on: the method (code, configuration), the data, the model and recipe,
    the original it starts from, the budget, and its own forget sets (the K requests of its protocol and
    seed). Not the suite's lists of protocols and seeds: adding a protocol or a seed to a suite leaves its
    other cells cached. The forget sets themselves, not only the protocol's settings, because they also
    depend on things outside the protocol (the memorisation scores of a ``memorized`` protocol: a new
    ``memorization`` setting draws other forget sets under the same protocol settings)."""
    cls = get_unlearner(cell.method)
    orig = run.original_path(cell.seed, cell.protocol)
    return stable_hash(
        {
            "code": method_code_hash(cls),
            "method": cell.method,
            "hparams": cell.hparams,
            "suite": run.suite.key_fields(),
            "protocol": run.protocol(cell.protocol).key_fields(),
            "forget": stable_hash([r.tolist() for r in run.requests(cell.protocol, cell.seed)]),
            "seed": cell.seed,
            "data": run.data_key,
            "original": file_hash(orig),
            "budget_s": run.suite.budget_s,
        }
    )


def cell_dir(run: SuiteRun, cell: Cell) -> Path:
    return run.layout.cell_dir(run.suite.name, cell.protocol, cell.params_id, cell.seed)


def is_cached(run: SuiteRun, cell: Cell, key: str) -> bool:
    """True when the cell's ``result.json`` holds ``key`` and is not the mark of an interrupted run."""
    path = cell_dir(run, cell) / "result.json"
    if not path.exists():
        return False
    result = read_json(path)
    return result.get("key") == key and not result.get("interrupted", False)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _base(run: SuiteRun, cell: Cell, key: str) -> dict[str, Any]:
    cls = get_unlearner(cell.method)
    return {
        "key": key,
        "suite": run.suite.name,
        "protocol": cell.protocol,
        "seed": cell.seed,
        "method": cell.method,
        "params_id": cell.params_id,
        "hparams": cell.hparams,
        "code_hash": method_code_hash(cls),
        "origin": cls.origin,
        "device": str(run.device),
        **provenance(),
    }


def run_cell(
    run: SuiteRun, cell: Cell, key: str, on_row: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Apply the method over the K requests of the cell's protocol; write models and result.json.

    ``on_row`` is called with each request's row as soon as it is finished (the sandbox reports progress
    through it, so a killed cell keeps its finished requests)."""
    cls = get_unlearner(cell.method)
    out = cell_dir(run, cell)
    base = _base(run, cell, key)
    steps = list(run.steps(cell.protocol))
    try:
        method = cls(**cell.hparams)
        reason = method.skip(run.n_params)
    except Exception as exc:  # bad hyper-parameters: the whole cell fails, the grid goes on
        return _finish(out, base, [_row(k, Status.FAILED, f"{type(exc).__name__}: {exc}") for k in steps])
    if reason:
        return _finish(out, base, [_row(k, Status.SKIPPED, reason) for k in steps])

    torch.manual_seed(cell.seed)
    ctx = Context(
        seed=cell.seed,
        recipe=run.suite.recipe,
        make_model=run.make_model,
        n_train=run.n_train,
        budget_s=run.suite.budget_s,
        device=run.device,
    )
    model = run.make_model(cell.seed)
    load_state(run.original_path(cell.seed, cell.protocol), model)
    rows: list[dict[str, Any]] = []
    for step in steps:
        if rows and rows[-1]["status"] != Status.OK:
            rows.append(_not_run(step, rows[-1]))
            continue
        request = run.request(cell.protocol, cell.seed, step)
        ctx.counters.reset()
        ctx.info = {}
        before = copy.deepcopy(model)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            model = method.unlearn(model, request, ctx)
            ctx.check_budget()
            status, error = Status.OK, ""
            if not finite_state(model):
                status, error = Status.NAN, "non-finite weights or buffers after the update"
        except BudgetExceeded as exc:
            status, error = Status.TIMEOUT, str(exc)
        except Exception as exc:
            status, error = Status.FAILED, f"{type(exc).__name__}: {exc}"
            error += " | " + traceback.format_exc(limit=-1).strip().splitlines()[-3].strip()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        row = _row(step, status, error)
        cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else float("nan")
        row.update(
            cuda_peak_mb=cuda_mb,
            wall_s=wall,
            cpu_s=cpu,
            peak_rss_mb=_peak_rss_mb(),
            **ctx.counters.as_dict(),
            info={k: v for k, v in ctx.info.items() if not (isinstance(v, float) and math.isnan(v))},
        )
        if status == Status.OK:
            row["update_norm"] = _distance(model, before)
            path = out / f"step{step}.pt"
            try:
                save_state(path, model)
            except OSError as exc:  # a full disk or a read-only folder fails this cell, not the grid
                row.update(status=Status.FAILED, error=f"could not write {path}: {type(exc).__name__}: {exc}")
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return _finish(out, base, rows)


def write_timeout(run: SuiteRun, cell: Cell, key: str, rows: list[dict[str, Any]], reason: str,
                  status: Status = Status.TIMEOUT, interrupted: bool = False) -> dict[str, Any]:  # fmt: skip
    """The result of a cell stopped from outside (killed at its hard time limit, or its process died):
    the requests it finished, ``status`` with ``reason`` for the one it was running, ``not run`` after.
    ``interrupted``: the run itself was stopped; the result is marked so that it is never reused
    (:func:`is_cached`)."""
    rows = list(rows)
    for step in run.steps(cell.protocol):
        if step > len(rows):
            first = len(rows) == 0 or rows[-1]["status"] == Status.OK
            rows.append(_row(step, status, reason) if first else _not_run(step, rows[-1]))
    base = _base(run, cell, key)
    if interrupted:
        base["interrupted"] = True
    return _finish(cell_dir(run, cell), base, rows)


def _not_run(step: int, last: dict[str, Any]) -> dict[str, Any]:
    return _row(step, last["status"], f"not run: request {last['step']} did not finish")


@torch.no_grad()
def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return float(
        sum(
            ((p.double() - q.double()) ** 2).sum()
            for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
        ** 0.5
    )


def _row(step: int, status: Status, error: str) -> dict[str, Any]:
    return {"step": step, "status": status, "error": error}


def _finish(out: Path, base: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    result = {**base, "requests": rows}
    write_json(out / "result.json", result)
    return result


def cell_unit(run: SuiteRun, cell: Cell, key: str) -> Unit:
    return Unit(
        "cell",
        f"cell/{cell.protocol}/{cell.params_id}/seed{cell.seed}",
        run.suite.name,
        {"cell": cell, "key": key},
    )


def run_cell_unit(run: SuiteRun, unit: Unit) -> dict[str, Any]:
    """The executor's entry point for one cell (a top-level function, so Ray can ship it).

    The cell runs in this process's sandbox (:mod:`benchmark.runner.sandbox`), killed ``budget_s`` + 2 s
    after it starts or when its process holds more than ``memory_mb`` resident; with
    ``UNLEARN_BENCH_ISOLATE=0`` in-process, with the cooperative budget only."""
    cell, key = unit.args["cell"], unit.args["key"]
    if not isolated():
        return run_cell(run, cell, key)
    budget = run.suite.budget_s
    limit_s = None if budget is None else budget + GRACE_S
    outcome = sandbox().run_cell(run, cell, key, limit_s, run.suite.memory_mb)
    if outcome.result is not None:
        return outcome.result
    status = Status.TIMEOUT if outcome.timed_out else Status.FAILED
    return write_timeout(run, cell, key, outcome.rows, outcome.reason, status, outcome.interrupted)


RETRIED = (Status.FAILED, Status.NAN, Status.TIMEOUT)  # re-run by ``retry_failed`` (not skipped)


def needs_retry(run: SuiteRun, cell: Cell) -> bool:
    """True when the cell's cached result has a request that ended ``failed``, ``nan`` or ``timeout``."""
    return any(r["status"] in RETRIED for r in read_json(cell_dir(run, cell) / "result.json")["requests"])


def check_inputs(run: SuiteRun, cells: list[Cell]) -> None:
    """One-line :class:`MissingInputError` when the stages before ``unlearn`` have not run."""
    for cell in cells:
        path = run.original_path(cell.seed, cell.protocol)
        if not path.exists():
            command = f"unlearn-bench train --suite {run.suite.name}"
            raise MissingInputError(f"{path}: missing; run `{command}` first")


class MissingInputError(RuntimeError):
    """An input of the stage (an original model) is missing: a stage before it has not run."""


def run_unlearning(
    run: SuiteRun,
    methods: list[str] | None = None,
    executor: ExecutorConfig | None = None,
    retry_failed: bool = False,
) -> dict[str, int]:
    """Run every cell not already cached. Returns counts of cells run and reused.

    A cell is cached when its ``result.json`` holds the current key (a changed method changes its code
    hash, hence the key, and re-runs). ``retry_failed``: also re-run cached cells with a ``failed``,
    ``nan`` or ``timeout`` request (e.g. after a transient fault or with a larger machine)."""
    cells = [c for c in expand_cells(run) if methods is None or c.method in methods]
    check_inputs(run, cells)
    units = []
    for cell in cells:
        key = cell_key(run, cell)
        if not is_cached(run, cell, key) or retry_failed and needs_retry(run, cell):
            units.append(cell_unit(run, cell, key))
    desc = f"{run.suite.name}: unlearning cells"

    def report(res: UnitResult) -> None:
        cell = res.unit.args["cell"]
        if not res.ok:
            tqdm.write(f"[{run.suite.name}] {cell.params_id} {cell.protocol} seed {cell.seed}: {res.error}")
            return
        bad = [r for r in res.value["requests"] if r["status"] not in (Status.OK, Status.SKIPPED)]
        if bad:
            tqdm.write(
                f"[{run.suite.name}] {cell.params_id} {cell.protocol} seed {cell.seed}: "
                f"{bad[0]['status']} at request {bad[0]['step']}: {bad[0]['error']}"
            )

    results = run_stage(run, units, run_cell_unit, desc, executor, on_result=report)
    return {"run": len(results), "cached": len(cells) - len(units)}
