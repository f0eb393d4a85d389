"""Wall-time speedup of cubic-Newton unlearning vs the gold retrain at paper scale (ResNet-18, CIFAR-sized).

One short script for a GPU machine (issue: "≥ 20× at paper scale, measured in one run"). Inputs are
synthetic (timing does not depend on pixel values); both sides run in the same process on the same device:

    gold retrain  = measured seconds of one training epoch on D_r × the recipe's epochs (default 30)
    request       = measured seconds of one `cure_newton_stochastic` request (and optionally
                    `cure_newton_krylov` with curvature on a retain subsample)

    python scripts/gpu_speedup.py --device cuda --n-train 50000 --out speedup.json
    python scripts/gpu_speedup.py --device cpu --n-train 64 --batch-size 16 --epochs 1   # smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from benchmark.models.training import train_model
from benchmark.models.zoo import build_model, count_parameters
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--forget-fraction", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the gold retrain recipe")
    ap.add_argument("--rounds", type=int, default=10, help="CuReNUS outer rounds")
    ap.add_argument("--inner-steps", type=int, default=10, help="CuReNUS inner gradient steps")
    ap.add_argument(
        "--krylov-subsample", type=int, default=0, help="also time cure_newton_krylov on this many"
    )
    ap.add_argument("--krylov-k", type=int, default=10)
    ap.add_argument("--krylov-iters", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.n_train, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (args.n_train,), generator=gen).to(device)
    n_forget = max(1, int(args.forget_fraction * args.n_train))
    retain, forget = view(x[n_forget:], y[n_forget:]), view(x[:n_forget], y[:n_forget])
    request = Request(step=1, forget=forget, forget_all=forget, retain=retain, num_classes=10)
    recipe = TrainRecipe(
        epochs=args.epochs, batch_size=args.batch_size, lr=0.01, weight_decay=5e-4, optimizer="sgd"
    )

    def make(seed: int) -> torch.nn.Module:
        return build_model({"arch": "resnet18"}, (3, 32, 32), 10, seed).to(device)

    model = make(0)
    train_model(model, retain.x[: 4 * args.batch_size], retain.y[: 4 * args.batch_size], recipe, 0, epochs=1)
    sync(device)  # warm-up (cuDNN autotuning, allocator)
    t0 = time.perf_counter()
    train_model(make(1), retain.x, retain.y, recipe, 1, epochs=1)
    sync(device)
    epoch_s = time.perf_counter() - t0
    result = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor(),
        "n_params": count_parameters(model),
        "n_train": args.n_train,
        "epoch_s": epoch_s,
        "gold_retrain_s": epoch_s * args.epochs,
        "gold_epochs": args.epochs,
        "methods": {},
    }

    methods = {"cure_newton_stochastic": {"rounds": args.rounds, "inner_steps": args.inner_steps}}
    if args.krylov_subsample:
        methods["cure_newton_krylov"] = {"iters": args.krylov_iters, "k": args.krylov_k}
    for name, hp in methods.items():
        req = request
        if name == "cure_newton_krylov":  # curvature on a retain subsample keeps HVPs affordable
            sub = view(retain.x[: args.krylov_subsample], retain.y[: args.krylov_subsample])
            req = Request(step=1, forget=forget, forget_all=forget, retain=sub, num_classes=10)
        ctx = Context(seed=0, recipe=recipe, make_model=make, n_train=args.n_train, device=device)
        m = make(0)
        sync(device)
        t0 = time.perf_counter()
        get_unlearner(name)(**hp).unlearn(m, req, ctx)
        sync(device)
        wall = time.perf_counter() - t0
        result["methods"][name] = {
            "params": hp,
            "wall_s": wall,
            "speedup": result["gold_retrain_s"] / wall,
            **ctx.counters.as_dict(),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
