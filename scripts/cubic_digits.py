"""Measure a cubic-Newton unlearner on the digits-mlp suite: ToW, iterations and seconds per request.

Builds the suite the way the pipeline does (``benchmark.data.sources.load_source("digits")`` split by
``split_seed`` 0, MLP 64-32-10 relu, Adam 60 epochs, lr 0.003, wd 5e-4, batch 64, trained from
``make_model(seed)`` with ``seed``), draws the sequential protocol with ``make_requests`` (forget seed 0) and,
for each request k, compares the sequentially unlearned model with the gold model retrained on the retain set
of step k from the same seed (``benchmark.metrics.tow``). Single-threaded CPU.

    python scripts/cubic_digits.py --method cure_newton --protocol class --steps 1 --hparams '{}'
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benchmark.config import ProtocolConfig
from benchmark.data.protocols import make_requests, retain_indices
from benchmark.data.sources import load_source
from benchmark.metrics.accuracy import tow
from benchmark.models.training import evaluate_accuracy, train_model
from benchmark.models.zoo import build_model
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

RECIPE = TrainRecipe(epochs=60, batch_size=64, lr=0.003, weight_decay=5e-4, optimizer="adam")
SPEC = {"arch": "mlp", "hidden": [32], "activation": "relu"}
PROTOCOLS = {
    "class": ProtocolConfig("class", "class", 5, classes_per_request=1, seed=0),
    "random": ProtocolConfig("random", "random", 5, fraction=0.01, seed=0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="cure_newton")
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=1)
    # --params is the deprecated spelling (in unlearn-bench, --params names the params.yaml file)
    ap.add_argument(
        "--hparams", "--params", dest="hparams", default="{}", help="method hyper-parameters as JSON"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    raw = load_source("digits", split_seed=0)
    x = torch.from_numpy(raw.x_train[:, None].astype(np.float32) / np.float32(raw.pixel_max))
    xt = torch.from_numpy(raw.x_test[:, None].astype(np.float32) / np.float32(raw.pixel_max))
    y, yt = torch.from_numpy(raw.y_train), torch.from_numpy(raw.y_test)
    shape, k = tuple(x.shape[1:]), raw.num_classes

    def make_model(seed: int) -> torch.nn.Module:
        return build_model(SPEC, shape, k, seed)

    def view(idx: np.ndarray) -> DataView:
        t = torch.from_numpy(idx)
        return DataView(x[t], y[t], t)

    seed = args.seed
    model = train_model(make_model(seed), x, y, RECIPE, seed)
    requests = make_requests(PROTOCOLS[args.protocol], raw.y_train, int(PROTOCOLS[args.protocol].seed))
    method = get_unlearner(args.method)(**json.loads(args.hparams))
    ctx = Context(seed=seed, recipe=RECIPE, make_model=make_model, n_train=len(y))
    rows = []
    for step in range(1, args.steps + 1):
        forget_all = np.sort(np.concatenate(requests[:step]))
        retain = retain_indices(len(y), requests, step)
        req = Request(step, view(requests[step - 1]), view(forget_all), view(retain), k)
        gold = train_model(make_model(seed), x[retain], y[retain], RECIPE, seed)
        ctx.info.clear()
        ctx.counters.reset()
        t0 = time.perf_counter()
        model = method.unlearn(model, req, ctx)
        secs = time.perf_counter() - t0

        def accs(m: torch.nn.Module, fa=forget_all, re=retain) -> tuple[float, float, float]:
            return (
                evaluate_accuracy(m, x[fa], y[fa]),
                evaluate_accuracy(m, x[re], y[re]),
                evaluate_accuracy(m, xt, yt),
            )

        au, ar = accs(model), accs(gold)
        keys = ("iters", "arc_tries", "stop", "L", "step_norm", "grad_norm")
        info = {key: ctx.info.get(key) for key in keys}
        row = dict(step=step, tow=tow(*au, *ar), acc_forget=au[0], gold_forget=ar[0], secs=secs)
        rows.append({**row, **info, "hvps": ctx.counters.hvps})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
