"""Does a configuration's retain damage on the tuning data transfer to the evaluation's? (README, Tuning)

    python scripts/tuning_transfer.py --suite digits-mlp --protocol class --method delete
    python scripts/tuning_transfer.py --suite mnist5k-mlp --protocol memorized --method ssd \
        --hparams '{"alpha": 36.46, "lambda": 5.869}'
    python scripts/tuning_transfer.py --suite digits-mlp --protocol memorized --method ssd \
        --hparams '{"alpha": 96.68, "lambda": 0.1231}' --swap-seed 3

Prints, for the configuration (the method's base configuration with ``--hparams`` over it), the largest retain
drop (tuning gold's retain accuracy minus the unlearned model's, over the K requests) on each tuning seed
separately: the tuning constraint takes the largest of these. With ``--swap-seed S`` it also applies one
request to each tuning original whose forget set is evaluation seed S's request ``--swap-request`` (its
examples inside the tuning training set T), and prints the retain accuracy on T minus them before and after:
whether the damage follows the forget examples or the model. A diagnostic: tuning itself never reads an
evaluation forget set. With ``--with-validation`` it applies each tuning seed's own request 1 to its
tuning original twice, with the retained data (what the method's importances and the retain accuracy see) T
minus the request and T plus the validation split minus it: whether the configuration is a stable
function of the data (the ``ssd`` docstring's figures). Run it in a checkout whose pipeline has run (the
tuning models and forget sets under ``runs/``).

    python scripts/tuning_transfer.py --suite digits-mlp --protocol memorized --method ssd \
        --hparams '{"alpha": 96.68, "lambda": 0.1231, "importance": "batch"}' --with-validation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.config import load_params
from benchmark.metrics.accuracy import accuracy_from_probs, predict_proba
from benchmark.runner.cells import base_config
from benchmark.runner.suite import SuiteRun, open_suite
from benchmark.runner.tuning import run_trial
from benchmark.runner.tuning_data import TuningData, tuning_data
from benchmark.unlearners.base import Context, Request, get_unlearner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--hparams", default="{}", help="JSON object over the method's base configuration")
    ap.add_argument("--swap-seed", type=int, default=None, help="evaluation seed of the forget set")
    ap.add_argument("--swap-request", type=int, default=1)
    ap.add_argument("--with-validation", action="store_true", help="request 1 with and without V in the data")
    ap.add_argument("--root", default=".")
    args = ap.parse_args()

    params = load_params(Path(args.root) / "params.yaml")
    run = open_suite(params, args.suite, Path(args.root))
    td = tuning_data(run)
    hp = {**base_config(run, args.method), **json.loads(args.hparams)}
    record = run_trial(run, td, args.protocol, args.method, hp)
    print(f"{args.suite} {args.protocol} {args.method} {json.dumps(json.loads(args.hparams))}")
    if record["status"] != "ok":
        raise SystemExit(f"  the trial failed: {record['reason']}")
    print("  largest retain drop per tuning seed: " + ", ".join(
        f"{s}: {d:.3f}" for s, d in zip(td.cfg.seeds, record["retain_drop_by_seed"], strict=True)))
    if args.with_validation:
        both = np.union1d(td.train_idx, td.val_idx)
        for seed in td.cfg.seeds:
            forget = td.requests(args.protocol, seed)[0]
            drops = [_apply(run, td, args, hp, seed, forget, np.setdiff1d(data, forget))
                     for data in (td.train_idx, both)]  # fmt: skip
            print(f"  tuning seed {seed} request 1: retain drop {drops[0]:.3f} on T, {drops[1]:.3f} on T + V")
    if args.swap_seed is None:
        return
    forget = np.intersect1d(run.requests(args.protocol, args.swap_seed)[args.swap_request - 1], td.train_idx)
    keep = np.setdiff1d(td.train_idx, forget)
    print(f"  evaluation seed {args.swap_seed} request {args.swap_request}: {len(forget)} examples in T")
    for seed in td.cfg.seeds:
        _apply(run, td, args, hp, seed, forget, keep, verbose=True)


def _apply(run: SuiteRun, td: TuningData, args: argparse.Namespace, hp: dict[str, Any], seed: int,
           forget: np.ndarray, keep: np.ndarray, verbose: bool = False) -> float:  # fmt: skip
    """Request 1 = ``forget`` on tuning original ``seed`` with ``keep`` as the retained data; the retain
    accuracy lost."""
    y = td.train_labels(args.protocol, seed)  # the tuning original's labels (flipped ones included)
    retain = td.view(keep, y)
    request = Request(step=1, forget=td.view(forget, y), forget_all=td.view(forget, y), retain=retain,
                      num_classes=run.snapshot.num_classes)  # fmt: skip
    ctx = Context(seed=seed, recipe=run.suite.recipe, make_model=td.make_model, n_train=td.n_train,
                  budget_s=run.suite.budget_s)  # fmt: skip
    ctx.info = {}
    model = td.load_original(seed, args.protocol)
    before = accuracy_from_probs(predict_proba(model, retain.x), retain.y)
    model = get_unlearner(args.method)(**hp).unlearn(model, request, ctx)
    after = accuracy_from_probs(predict_proba(model, retain.x), retain.y)
    if verbose:
        print(f"  tuning original {seed}: retain accuracy {before:.3f} -> {after:.3f}  {ctx.info}")
    return before - after


if __name__ == "__main__":
    main()
