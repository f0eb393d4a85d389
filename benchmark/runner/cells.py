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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark.config import ExecutorConfig
from benchmark.provenance import provenance
from benchmark.runner.artifacts import file_hash, load_state, read_json, save_state, stable_hash, write_json
from benchmark.runner.executor import Unit, UnitResult, run_stage
from benchmark.runner.suite import SuiteRun
from benchmark.unlearners.base import BudgetExceeded, Context, get_unlearner


@dataclass(frozen=True)
class Cell:
    protocol: str
    seed: int
    method: str
    hparams: dict[str, Any]
    params_id: str  # method name, plus the values of the parameters that vary in its grid
    selected: bool = False  # the configuration the tuning stage selected for this protocol
    tuning_trials: int | None = None  # its tuning budget (selected cells only)
    tuning_s: float | None = None


def expand_cells(run: SuiteRun, tuned: bool = True) -> list[Cell]:
    """Every cell of the suite, in a stable order.

    With a ``tuning:`` section, the configuration selected for (protocol, method) in ``tuning/<suite>.yaml``
    replaces the built-in default of a method that ``methods:`` does not list (``grid: default``); the
    configurations ``methods:`` lists (or ``grid: full``) still run, as extra rows. The selected cells are
    flagged ``selected`` (one equal to a configured one flags that one). ``tuned=False``: the grid without
    the selection (the population stage, which runs before tuning)."""
    from benchmark.runner.selection import load_selection, selected_label

    picks = {}
    layout = getattr(run, "layout", None)  # a bare run (params and suite only) has no files: no selection
    if tuned and run.params.tuning is not None and layout is not None:
        picks = load_selection(layout.tuning_path(run.suite.name))
    cells = []
    for method in run.suite.methods:
        cls = get_unlearner(method)
        configs: list[dict[str, Any]] = []
        for overrides in run.params.method_grids.get(method) or [{}]:  # a union of grids
            configs += [hp for hp in cls.grid(overrides, full=run.params.grid == "full") if hp not in configs]
        varying = sorted(k for k in configs[0] if len({repr(hp[k]) for hp in configs}) > 1)
        default = next(cls.grid(full=False))
        implicit = method not in run.params.method_grids and run.params.grid != "full"  # only the default
        ids = []
        for hp in configs:
            # the method's default configuration keeps the bare name (the leaderboard's headline row)
            label = "" if hp == default else ",".join(f"{k}={hp[k]}" for k in varying)
            ids.append(f"{method}[{label}]" if label else method)
        for hp, params_id in zip(configs, ids, strict=True):
            for protocol in run.suite.protocols:
                pick = picks.get((protocol, method))
                if pick is not None and implicit and pick.hparams != hp:
                    continue  # the selected configuration runs instead of the built-in default
                for seed in run.suite.seeds:
                    cells.append(_cell(protocol, seed, method, hp, params_id, pick))
        for protocol in run.suite.protocols:
            pick = picks.get((protocol, method))
            if pick is not None and pick.hparams not in configs:
                params_id = selected_label(method, pick, set(ids))
                for seed in run.suite.seeds:
                    cells.append(_cell(protocol, seed, method, pick.hparams, params_id, pick))
    return cells


def _cell(protocol: str, seed: int, method: str, hp: dict[str, Any], params_id: str, pick: Any) -> Cell:
    if pick is None or pick.hparams != hp:
        return Cell(protocol, seed, method, hp, params_id)
    return Cell(protocol, seed, method, hp, params_id, True, pick.trials, pick.wall_s)


def cell_key(run: SuiteRun, cell: Cell) -> str:
    cls = get_unlearner(cell.method)
    orig = run.original_path(cell.seed, cell.protocol)
    return stable_hash(
        {
            "code": cls.code_hash(),
            "method": cell.method,
            "hparams": cell.hparams,
            "suite": run.suite.as_dict(),
            "protocol": vars(run.protocol(cell.protocol)),
            "seed": cell.seed,
            "data": run.data_key,
            "original": file_hash(orig),
            "budget_s": run.suite.budget_s,
        }
    )


def cell_dir(run: SuiteRun, cell: Cell) -> Path:
    return run.layout.cell_dir(run.suite.name, cell.protocol, cell.params_id, cell.seed)


def is_cached(run: SuiteRun, cell: Cell, key: str) -> bool:
    result = cell_dir(run, cell) / "result.json"
    return result.exists() and read_json(result).get("key") == key


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_cell(run: SuiteRun, cell: Cell, key: str) -> dict[str, Any]:
    """Apply the method over the K requests of the cell's protocol; write models and result.json."""
    cls = get_unlearner(cell.method)
    out = cell_dir(run, cell)
    base = {
        "key": key,
        "suite": run.suite.name,
        "protocol": cell.protocol,
        "seed": cell.seed,
        "method": cell.method,
        "params_id": cell.params_id,
        "hparams": cell.hparams,
        "code_hash": cls.code_hash(),
        "origin": cls.origin,
        **provenance(),
    }
    steps = list(run.steps(cell.protocol))
    try:
        method = cls(**cell.hparams)
        reason = method.skip(run.n_params)
    except Exception as exc:  # bad hyper-parameters: the whole cell fails, the grid goes on
        return _finish(out, base, [_row(k, "failed", f"{type(exc).__name__}: {exc}") for k in steps])
    if reason:
        return _finish(out, base, [_row(k, "skipped", reason) for k in steps])

    torch.manual_seed(cell.seed)
    ctx = Context(
        seed=cell.seed,
        recipe=run.suite.recipe,
        make_model=run.make_model,
        n_train=run.n_train,
        budget_s=run.suite.budget_s,
    )
    model = run.make_model(cell.seed)
    load_state(run.original_path(cell.seed, cell.protocol), model)
    rows: list[dict[str, Any]] = []
    for step in steps:
        if rows and rows[-1]["status"] != "ok":
            rows.append(_row(step, rows[-1]["status"], f"not run: request {rows[-1]['step']} did not finish"))
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
            status, error = ("ok", "") if _finite(model) else ("nan", "non-finite weights after the update")
        except BudgetExceeded as exc:
            status, error = "timeout", str(exc)
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
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
        if status == "ok":
            row["update_norm"] = _distance(model, before)
            save_state(out / f"step{step}.pt", model)
        rows.append(row)
    return _finish(out, base, rows)


@torch.no_grad()
def _distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return float(
        sum(
            ((p.double() - q.double()) ** 2).sum()
            for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
        ** 0.5
    )


def _row(step: int, status: str, error: str) -> dict[str, Any]:
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
    """The executor's entry point for one cell (a top-level function, so Ray can ship it)."""
    return run_cell(run, unit.args["cell"], unit.args["key"])


def run_unlearning(
    run: SuiteRun, methods: list[str] | None = None, executor: ExecutorConfig | None = None
) -> dict[str, int]:
    """Run every cell not already cached. Returns counts of cells run and reused."""
    cells = [c for c in expand_cells(run) if methods is None or c.method in methods]
    units = []
    for cell in cells:
        key = cell_key(run, cell)
        if not is_cached(run, cell, key):
            units.append(cell_unit(run, cell, key))
    desc = f"{run.suite.name}: unlearning cells"

    def report(res: UnitResult) -> None:
        cell = res.unit.args["cell"]
        if not res.ok:
            tqdm.write(f"[{run.suite.name}] {cell.params_id} {cell.protocol} seed {cell.seed}: {res.error}")
            return
        bad = [r for r in res.value["requests"] if r["status"] not in ("ok", "skipped")]
        if bad:
            tqdm.write(
                f"[{run.suite.name}] {cell.params_id} {cell.protocol} seed {cell.seed}: "
                f"{bad[0]['status']} at request {bad[0]['step']}: {bad[0]['error']}"
            )

    results = run_stage(run, units, run_cell_unit, desc, executor, on_result=report)
    return {"run": len(results), "cached": len(cells) - len(units)}
