"""Stages ``fetch`` (dataset snapshots) and ``protocols`` (forget sets written to disk)."""

from __future__ import annotations

from pathlib import Path

from benchmark.config import Params
from benchmark.data.protocols import corrupt_labels, make_requests, save_requests
from benchmark.data.snapshot import write_snapshot
from benchmark.data.sources import load_source
from benchmark.runner.artifacts import Layout
from benchmark.runner.suite import SuiteRun


def fetch_dataset(params: Params, name: str, layout: Layout) -> dict:
    """Load dataset ``name`` from its source and write ``datasets/<name>/`` (parquet + manifest)."""
    cfg = params.dataset(name)
    raw = load_source(
        cfg.source,
        split_seed=cfg.split_seed,
        test_fraction=cfg.test_fraction,
        max_train=cfg.max_train,
        max_test=cfg.max_test,
        hf_path=cfg.hf_path,
    )
    return write_snapshot(raw, Path(layout.dataset_dir(name)), split_seed=cfg.split_seed)


def write_protocols(run: SuiteRun) -> list[Path]:
    """One JSON of K forget sets per (protocol, model seed) of the suite, plus the population's.

    With ``protocols.<name>.seed`` set, every model seed gets the same forget sets, so the gold models of
    all seeds form a population of retrains on the same data. Without it each model seed draws its own
    (forget seed = model seed), so the seeds sample variation over forget sets as well as over models.
    The population (``suites.<name>.population``) always uses one shared forget set per protocol
    (``<protocol>_pop.json``): the protocol's ``seed`` if set, else the population's ``forget_seed``.
    """
    from benchmark.runner.memorization import load_memorization
    from benchmark.runner.suite import POP

    labels = run.snapshot.y_train.numpy()
    classes = run.snapshot.num_classes
    needs_memo = any(run.protocol(p).needs_memorization for p in run.suite.protocols)
    memo = load_memorization(run) if needs_memo else None
    pop = run.suite.population
    written = []
    for name in run.suite.protocols:
        cfg = run.protocol(name)
        jobs: list[tuple[int | str, int]] = [
            (s, s if cfg.seed is None else cfg.seed) for s in run.suite.seeds
        ]
        if pop is not None and name in pop.protocols:
            jobs.append((POP, pop.forget_seed if cfg.seed is None else cfg.seed))
        for fid, forget_seed in jobs:
            path = run.protocol_file(name, fid)
            reqs = make_requests(cfg, labels, forget_seed, memorization=memo, num_classes=classes)
            bad = corrupt_labels(cfg, labels, forget_seed, classes) if cfg.corrupts_labels else None
            save_requests(path, reqs, cfg, forget_seed, labels, corrupted=bad)
            written.append(path)
    return written
