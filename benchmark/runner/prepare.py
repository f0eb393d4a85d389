"""Stages ``fetch`` (dataset snapshots) and ``protocols`` (forget sets written to disk)."""

from __future__ import annotations

from pathlib import Path

from benchmark.config import Params
from benchmark.data.protocols import make_requests, protocol_path, save_requests
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
    """One JSON of K forget sets per (protocol, model seed) of the suite.

    With ``protocols.<name>.seed`` set, every model seed gets the same forget sets, so the gold models of
    all seeds form a population of retrains on the same data (needed by the population metrics).
    """
    labels = run.snapshot.y_train.numpy()
    written = []
    for name in run.suite.protocols:
        cfg = run.protocol(name)
        for seed in run.suite.seeds:
            path = protocol_path(run.layout.protocols_dir(run.suite.name), name, seed)
            forget_seed = seed if cfg.seed is None else cfg.seed
            save_requests(path, make_requests(cfg, labels, forget_seed), cfg, seed, labels)
            written.append(path)
    return written
