"""Paper-scale cost of cubic-Newton unlearning on one accelerator (ResNet-18, CIFAR-10-sized inputs).

One short script for a GPU machine (issue: "≥ 20× wall-time speedup vs the gold retrain at paper scale,
measured in one run"; "peak memory of the Krylov variant O(d·k), never O(d²)"). Everything runs in one
process on one device, on synthetic CIFAR-sized data (timing does not depend on pixel values; the classes
are made learnable — a fixed per-class pattern plus noise — so that the unlearned model is a trained one):

1. ``gold``: seconds of one training epoch on D_r (after a warm-up), × the recipe's epochs = the gold
   retrain (``--epochs``, default 30; the epoch time is measured, the product extrapolated).
2. ``ratios``: forward, gradient and HVP (reverse-over-reverse, standalone and linearised once;
   forward-over-reverse) on one batch in eval mode, as multiples of the gradient.
3. ``methods``: one timed request of ``cure_newton_stochastic`` (CuReNUS, the paper's settings) and of
   ``cure_newton_krylov`` (the budget preset: exact gradient on all of D_r, Lanczos HVPs and the ARC test
   on retain subsamples),
   each after an untimed warm-up request on a retain subsample (which also adapts the ARC weight L,
   carried into the timed request as the suite carries it across a cell's K requests); wall seconds,
   speedup = gold / wall, work counters, epoch-equivalents, peak accelerator memory.
4. ``memory``: peak memory of the Lanczos solve alone for several k, and its slope per Lanczos vector
   against d · 8 bytes (one float64 vector): O(d·k); the d × d Hessian would need d² · 4 bytes.

    python scripts/gpu_speedup.py --device cuda --out speedup.json
    python scripts/gpu_speedup.py --device cpu --n-train 64 --batch-size 16 --epochs 1   # smoke run

Results are written to ``--out`` after every section, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.config import load_params
from benchmark.curvature import flat_params, hvp, loss_value, make_hvp, make_loss_fn, value_and_gradient
from benchmark.curvature.lanczos import krylov_subproblem
from benchmark.models.training import train_model
from benchmark.models.zoo import build_model, count_parameters
from benchmark.unlearners.base import Context, Counters, DataView, Request, TrainRecipe, get_unlearner

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"  # its `cost` ratios give epoch-equivalents


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def peak_mb(device: torch.device, base: int) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def timed(device: torch.device, fn: Callable[[], Any], reps: int = 1, warmup: int = 0) -> float:
    """Mean seconds of ``fn`` over ``reps`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


def synthetic_cifar(n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.rand(10, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = 0.5 * torch.rand(n, 3, 32, 32, generator=gen) + 0.5 * patterns[y]
    return x.to(device), y.to(device)


def section(into: dict[str, Any], name: str, fn: Callable[[], Any], save: Callable[[], None]) -> None:
    """``into[name] = fn()`` (an error entry if it raises: the other sections still run), then ``save()``."""
    t0 = time.perf_counter()
    try:
        into[name] = fn()
    except Exception as exc:
        into[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    print(f"[{name}] {time.perf_counter() - t0:.1f}s", flush=True)
    save()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--forget-fraction", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the gold retrain recipe")
    ap.add_argument("--rounds", type=int, default=10, help="CuReNUS outer rounds")
    ap.add_argument("--inner-steps", type=int, default=10, help="CuReNUS inner gradient steps")
    ap.add_argument("--krylov-k", type=int, default=10)
    ap.add_argument("--krylov-iters", type=int, default=1)
    ap.add_argument("--krylov-hvp-batch", type=int, default=512, help="retain samples behind the HVPs")
    ap.add_argument("--krylov-check-batch", type=int, default=1024, help="retain samples of the ARC test")
    ap.add_argument("--chunk", type=int, default=1024, help="samples per chunk of the exact D_r passes")
    ap.add_argument("--ratio-batch", type=int, default=512)
    ap.add_argument("--ratio-reps", type=int, default=10)
    ap.add_argument("--memory-ks", default="5,10,20")
    ap.add_argument("--memory-batch", type=int, default=256)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cost = load_params(PARAMS)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides: the gold retrain and the unlearners
    x, y = synthetic_cifar(args.n_train, device)
    n_forget = max(1, int(args.forget_fraction * args.n_train))
    retain, forget = view(x[n_forget:], y[n_forget:]), view(x[:n_forget], y[:n_forget])
    request = Request(step=1, forget=forget, forget_all=forget, retain=retain, num_classes=10)
    recipe = TrainRecipe(
        epochs=args.epochs, batch_size=args.batch_size, lr=0.01, weight_decay=5e-4, optimizer="sgd"
    )

    def make(seed: int) -> torch.nn.Module:
        return build_model({"arch": "resnet18"}, (3, 32, 32), 10, seed).to(device)

    original = make(0)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "n_params": count_parameters(original),
        "n_train": args.n_train,
        "n_retain": len(retain),
        "args": vars(args),
    }

    def gold() -> dict[str, Any]:
        warm = 4 * args.batch_size
        train_model(make(1), retain.x[:warm], retain.y[:warm], recipe, 0, epochs=1)  # cuDNN autotuning
        sync(device)
        t0 = time.perf_counter()
        train_model(original, retain.x, retain.y, recipe, 1, epochs=1)  # also "the original" below
        sync(device)
        epoch_s = time.perf_counter() - t0
        with torch.no_grad():
            acc = float((original(x[:2048]).argmax(1) == y[:2048]).float().mean())
        return {
            "epoch_s": epoch_s,
            "epochs": args.epochs,
            "gold_retrain_s": epoch_s * args.epochs,
            "epochs_equiv": args.epochs * len(retain) / args.n_train,
            "train_acc_after_1_epoch": acc,
        }

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    section(result, "gold", gold, save)

    def ratios() -> dict[str, Any]:
        original.eval()
        b = min(args.ratio_batch, len(retain))
        f = make_loss_fn(original, retain.x[:b], retain.y[:b], recipe.weight_decay)
        w = flat_params(original)
        v = torch.randn_like(w)
        reps = args.ratio_reps
        out: dict[str, Any] = {"batch": b}
        out["grad_s"] = timed(device, lambda: value_and_gradient(f, w), reps, 2)
        out["fwd_s"] = timed(device, lambda: loss_value(f, w), reps, 2)
        out["hvp_rev_rev_s"] = timed(device, lambda: hvp(f, w, v, mode="rev_rev"), reps, 2)
        lin = make_hvp(f, w, mode="rev_rev")
        out["hvp_linearised_s"] = timed(device, lambda: lin(v), reps, 2)
        try:
            out["hvp_fwd_rev_s"] = timed(device, lambda: hvp(f, w, v, mode="fwd_rev"), reps, 2)
        except Exception as exc:  # forward-mode AD may lack a rule for a kernel
            out["hvp_fwd_rev_error"] = f"{type(exc).__name__}: {exc}"
        for key in ("fwd_s", "hvp_rev_rev_s", "hvp_linearised_s", "hvp_fwd_rev_s"):
            if key in out:
                out[key.replace("_s", "_over_grad")] = out[key] / out["grad_s"]
        return out

    section(result, "ratios", ratios, save)

    methods: dict[str, dict[str, Any]] = {
        "cure_newton_stochastic": {"rounds": args.rounds, "inner_steps": args.inner_steps},
        "cure_newton_krylov": {
            "iters": args.krylov_iters,
            "k": args.krylov_k,
            "hvp_batch": args.krylov_hvp_batch,
            "check_batch": args.krylov_check_batch,
            "chunk_size": args.chunk,
            "precision": "model",
        },
    }
    gold_s = result["gold"].get("gold_retrain_s", float("nan")) if isinstance(result["gold"], dict) else None
    original_state = {k: t.detach().clone() for k, t in original.state_dict().items()}

    def run_method(name: str, hp: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = {}  # carried from the warm-up request, like L across a cell's K requests

        def one(req: Request) -> tuple[float, Context, float | None]:
            model = make(0)
            model.load_state_dict(original_state)
            ctx = Context(seed=0, recipe=recipe, make_model=make, n_train=args.n_train, device=device)
            ctx.state = state
            base = reset_peak(device)
            t0 = time.perf_counter()
            get_unlearner(name)(**hp).unlearn(model, req, ctx)
            sync(device)
            return time.perf_counter() - t0, ctx, peak_mb(device, base)

        small = min(len(retain), 2 * max(args.chunk, args.krylov_hvp_batch))
        warm_req = Request(1, forget, forget, view(retain.x[:small], retain.y[:small]), 10)
        _, warm_ctx, _ = one(warm_req)  # untimed: cuDNN autotuning; adapts L (ARC) as a first request would
        warm_info = dict(warm_ctx.info)
        wall, ctx, peak = one(request)
        counters = ctx.counters.as_dict()
        return {
            "params": hp,
            "wall_s": wall,
            "speedup": gold_s / wall if gold_s else None,
            "epochs_equiv": cost.epochs_equiv(counters, args.n_train),
            "peak_mem_mb": peak,
            **counters,
            "info": {k: v for k, v in ctx.info.items() if isinstance(v, int | float | bool | str)},
            "warmup_info": {k: v for k, v in warm_info.items() if isinstance(v, int | float | bool | str)},
        }

    result["methods"] = {}
    for name, hp in methods.items():
        section(result["methods"], name, lambda name=name, hp=hp: run_method(name, hp), save)

    def memory() -> dict[str, Any]:
        if device.type != "cuda":
            return {"skipped": "peak memory is read from the CUDA allocator"}
        original.eval()
        b = min(args.memory_batch, len(retain))
        f = make_loss_fn(original, retain.x[:b], retain.y[:b], recipe.weight_decay)
        w = flat_params(original)
        _, g = value_and_gradient(f, w)
        d = w.numel()
        rows = []
        for k in [int(s) for s in args.memory_ks.split(",")]:
            counter = Counters()
            hvp_fn = make_hvp(f, w, mode="rev_rev", counter=counter)
            base = reset_peak(device)
            t0 = time.perf_counter()
            sub = krylov_subproblem(hvp_fn, g, k)
            sub.solve(1.0)
            sync(device)
            rows.append({"k": k, "peak_mb": peak_mb(device, base), "s": time.perf_counter() - t0,
                         "hvps": counter.hvps})  # fmt: skip
            del hvp_fn, sub
        slope = (rows[-1]["peak_mb"] - rows[0]["peak_mb"]) / (rows[-1]["k"] - rows[0]["k"])
        return {
            "d": d,
            "batch": b,
            "rows": rows,
            "mb_per_lanczos_vector": slope,
            "float64_vector_mb": d * 8 / 2**20,
            "dense_hessian_gb": d * d * 4 / 2**30,
        }

    section(result, "memory", memory, save)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
