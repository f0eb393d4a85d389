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
evaluation forget set. Run it in a checkout whose pipeline has run (the tuning models and forget sets under
``runs/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from benchmark.config import load_params
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import base_config
from benchmark.runner.suite import SuiteRun
from benchmark.runner.tuning import run_trial
from benchmark.runner.tuning_data import tuning_data
from benchmark.unlearners.base import Context, DataView, Request, get_unlearner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", required=True)
    ap.add_argument("--protocol", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--hparams", default="{}", help="JSON object over the method's base configuration")
    ap.add_argument("--swap-seed", type=int, default=None, help="evaluation seed of the forget set")
    ap.add_argument("--swap-request", type=int, default=1)
    ap.add_argument("--root", default=".")
    args = ap.parse_args()

    params = load_params(Path(args.root) / "params.yaml")
    run = SuiteRun(params, params.suite(args.suite), Layout(Path(args.root)))
    td = tuning_data(run)
    hp = {**base_config(run, args.method), **json.loads(args.hparams)}
    every = td.cfg
    drops = []
    for seed in every.seeds:
        td.cfg = dataclasses.replace(every, seeds=(seed,))
        record = run_trial(run, td, args.protocol, args.method, hp)
        drops.append(record["retain_drop"] if record["status"] == "ok" else float("nan"))
    td.cfg = every
    print(f"{args.suite} {args.protocol} {args.method} {json.dumps(json.loads(args.hparams))}")
    print("  largest retain drop per tuning seed: "
          + ", ".join(f"{s}: {d:.3f}" for s, d in zip(every.seeds, drops, strict=True)))
    if args.swap_seed is None:
        return
    x, y = run.snapshot.x_train, run.snapshot.y_train
    forget = np.intersect1d(run.requests(args.protocol, args.swap_seed)[args.swap_request - 1], td.train_idx)
    keep = np.setdiff1d(td.train_idx, forget)

    def view(idx: np.ndarray) -> DataView:
        return DataView(x[idx], y[idx], torch.as_tensor(idx))

    def accuracy(model: torch.nn.Module) -> float:
        with torch.no_grad():
            return float((model(x[keep]).argmax(1) == y[keep]).float().mean())

    print(f"  evaluation seed {args.swap_seed} request {args.swap_request}: {len(forget)} examples in T")
    for seed in every.seeds:
        model = td.load_original(seed, args.protocol)
        before = accuracy(model)
        request = Request(step=1, forget=view(forget), forget_all=view(forget), retain=view(keep),
                          num_classes=run.snapshot.num_classes)  # fmt: skip
        ctx = Context(seed=seed, recipe=run.suite.recipe, make_model=td.make_model, n_train=td.n_train,
                      budget_s=run.suite.budget_s)  # fmt: skip
        ctx.info = {}
        model = get_unlearner(args.method)(**hp).unlearn(model, request, ctx)
        print(f"  tuning original {seed}: retain accuracy {before:.3f} -> {accuracy(model):.3f}  {ctx.info}")


if __name__ == "__main__":
    main()
