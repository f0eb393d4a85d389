"""The ``evaluate`` stage's judging as units of work on the executor (both cores of a 2-core machine).

:func:`benchmark.runner.evaluate.write_results` judges the cells one after another in one process and keeps
each cell's rows in the evaluation cache (:mod:`benchmark.runner.eval_cache`) under a key of everything they
are computed from. :func:`judge_pending` fills that cache first, in parallel, for the cells it does not hold:

1. the gold references those cells are judged against (a gold model's predictions, accuracies and MIA
   numbers, and at the final request its relearn time), one unit per (protocol, seed, step) of their
   protocols, every seed (the population references use them all), into the reference cache
   (:mod:`benchmark.runner.reference_cache`);
2. one unit per cell: judge it (:func:`benchmark.runner.evaluate.judge_cell`, against a
   :class:`~benchmark.runner.gold_reference.GoldReference` over that reference cache, one per worker
   process) and write its rows under the key the driver computed.

The stage then assembles the table from the cache exactly as a re-run would. A value that went through either
cache is the value read back from it, which is also what a serial evaluation tabulates, so the table is
byte-identical to one judged in a single process (``tests/unit/test_evaluate.py`` compares them). Where a
unit runs never changes what it computes, so this module enters no cache key and is not a DVC dependency of
the stage (like the executor settings).
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.runner import eval_cache
from benchmark.runner.cells import Cell, expand_cells
from benchmark.runner.evaluate import judge_cell, read_cell_result
from benchmark.runner.executor import ExecutorConfig, Unit, run_stage
from benchmark.runner.gold_reference import GoldReference
from benchmark.runner.reference_cache import ReferenceCache
from benchmark.runner.scoring import EvalConfig
from benchmark.runner.suite import SuiteRun

__all__ = ["Judged", "gold_reference_unit", "judge_cell_unit", "judge_pending"]


@dataclass(frozen=True)
class Judged:
    """What :func:`judge_pending` did: cells judged, gold references read from / computed into the cache."""

    cells: int = 0
    references_read: int = 0
    references_computed: int = 0


_REFERENCES: list[tuple[SuiteRun, EvalConfig, GoldReference]] = []  # per process: the stage's suite


def _reference(run: SuiteRun, cfg: EvalConfig) -> GoldReference:
    """This process's gold reference of ``run`` over the on-disk reference cache, kept across its units (a
    worker serves one stage at a time: only the latest is kept, with the suite object it belongs to)."""
    if not (_REFERENCES and _REFERENCES[0][0] is run and _REFERENCES[0][1] == cfg):
        _REFERENCES[:] = [(run, cfg, GoldReference(run, cfg, ReferenceCache(run, cfg)))]
    return _REFERENCES[0][2]


def gold_reference_unit(run: SuiteRun, unit: Unit) -> tuple[int, int]:
    """One unit: the gold references of (protocol, seed, step) into the reference cache. Returns the look-ups
    it read from and computed into the cache."""
    cfg: EvalConfig = unit.args["config"]
    protocol, seed, step = unit.args["protocol"], unit.args["seed"], unit.args["step"]
    ref = _reference(run, cfg)
    cache = ref.cache
    assert cache is not None
    hits, misses = cache.hits, cache.misses
    ref.gold(protocol, seed, step)
    if cfg.relearn and step == run.protocol(protocol).requests:
        ref.gold_relearn(protocol, seed, step)
    return cache.hits - hits, cache.misses - misses


def judge_cell_unit(run: SuiteRun, unit: Unit) -> None:
    """One unit: judge a cell and write its rows into the evaluation cache under the driver's key."""
    cell: Cell = unit.args["cell"]
    ref = _reference(run, unit.args["config"])
    rows = judge_cell(run, ref, cell, read_cell_result(run, cell))
    eval_cache.store_rows(run, cell, unit.args["key"], rows)


def judge_pending(run: SuiteRun, executor: ExecutorConfig, config: EvalConfig | None = None) -> Judged:
    """Judge every cell of the suite whose rows the evaluation cache does not hold, through ``executor``
    (module docstring), and leave the rows there. Checks first, as the stage does, that every cell's result
    and every gold and original model is current (one-line errors naming the command that rebuilds it)."""
    cfg = config or EvalConfig()
    ref = GoldReference(run, cfg)  # the keys' inputs only (sidecars): no gold model is loaded here
    pending: list[tuple[Cell, str]] = []
    for cell in expand_cells(run):
        read_cell_result(run, cell)  # StaleCellError for a missing or outdated cell, before any work
        key = eval_cache.cell_eval_key(run, ref, cell)
        if eval_cache.load_rows(run, cell, key) is None:
            pending.append((cell, key))
    if not pending:
        return Judged()
    name = run.suite.name
    protocols = list(dict.fromkeys(cell.protocol for cell, _ in pending))
    golds = [
        Unit("gold_reference", f"{p}/seed{seed}/step{step}", name,
             {"config": cfg, "protocol": p, "seed": seed, "step": step})  # fmt: skip
        for p in protocols
        for seed in run.suite.seeds
        for step in run.steps(p)
    ]
    found = run_stage(run, golds, gold_reference_unit, f"{name}: gold references", executor)
    cells = [
        Unit("judge", f"{c.protocol}/{c.params_id}/seed{c.seed}", name, {"config": cfg, "cell": c, "key": k})
        for c, k in pending
    ]
    run_stage(run, cells, judge_cell_unit, f"{name}: judging cells", executor)
    return Judged(len(pending), sum(r.value[0] for r in found), sum(r.value[1] for r in found))
