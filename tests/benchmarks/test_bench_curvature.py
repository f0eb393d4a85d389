"""Benchmarks of the second-order plumbing and of one unlearning request (pytest-benchmark).

In the normal test run they execute once, as smoke tests. With timings, and the ratio gate of CI::

    pytest tests/benchmarks --benchmark-enable --benchmark-only --benchmark-json=.benchmarks/run.json
    python scripts/perf_gate.py .benchmarks/run.json        # ratios vs tests/benchmarks/targets.yaml

Targets are ratios of timings from the same run (HVP / gradient, forward / gradient, a budget Krylov
request / a gold retrain), never absolute seconds: the machines are shared and differ.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from benchmark.curvature import (
    fisher_diag,
    flat_params,
    gradient,
    hessian,
    hvp,
    loss_value,
    make_hvp,
    make_loss_fn,
    solve_cubic,
)
from benchmark.models.training import train_model
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

torch.manual_seed(0)
MNIST_MLP = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
X, Y = torch.rand(4000, 1, 28, 28), torch.randint(0, 10, (4000,))
LOSS = make_loss_fn(MNIST_MLP.eval(), X, Y, weight_decay=1e-4)
W = flat_params(MNIST_MLP)
V = torch.randn_like(W)


@pytest.mark.benchmark(group="mnist-mlp-4k: gradient vs HVP")
def test_gradient(benchmark):
    g = benchmark(gradient, LOSS, W)
    assert g.shape == W.shape


@pytest.mark.benchmark(group="mnist-mlp-4k: gradient vs HVP")
def test_forward(benchmark):
    value = benchmark(loss_value, LOSS, W)
    assert value > 0


@pytest.mark.benchmark(group="mnist-mlp-4k: gradient vs HVP")
@pytest.mark.parametrize("mode", ["rev_rev", "fwd_rev"])
def test_hvp(benchmark, mode):
    hv = benchmark(hvp, LOSS, W, V, mode=mode)
    assert torch.isfinite(hv).all()


@pytest.mark.benchmark(group="mnist-mlp-4k: gradient vs HVP")
def test_fisher_diag(benchmark):
    """The diagonal empirical Fisher of the 4,000 samples (ssd, fisher_forgetting): the linear layers' closed
    form, one batched backward pass in chunks of 256, instead of 4,000 per-sample gradients."""
    f = benchmark(fisher_diag, MNIST_MLP, X, Y)
    assert f.shape == W.shape and bool((f >= 0).all())


@pytest.mark.benchmark(group="mnist-mlp-4k: gradient vs HVP")
def test_hvp_ten_products(benchmark):
    """What the Lanczos solver pays for k = 10 HVPs: the gradient graph built once, 10 backward passes."""

    def ten() -> torch.Tensor:
        op = make_hvp(LOSS, W)
        out = V
        for _ in range(10):
            out = op(V)
        return out

    hv = benchmark(ten)
    assert torch.isfinite(hv).all()


@pytest.mark.benchmark(group="digits-mlp: exact curvature")
def test_hessian_and_cubic_solve_digits_mlp(benchmark):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x, y = torch.rand(1437, 1, 8, 8), torch.randint(0, 10, (1437,))
    loss = make_loss_fn(model, x, y, weight_decay=5e-4)
    w = flat_params(model)

    def newton_step():
        H = hessian(loss, w, rows_per_batch=32).double()
        return solve_cubic(H, gradient(loss, w).double(), L=1.0)

    step = benchmark.pedantic(newton_step, rounds=1, iterations=1)
    assert step.alpha >= 0


# one request of a matrix-free cubic method vs the gold retrain it replaces (mnist5k-mlp recipe, 30 epochs)
RECIPE = TrainRecipe(epochs=30, batch_size=64, lr=0.002, weight_decay=1e-4, optimizer="adam")
N_FORGET = 40  # a 1 % deletion request


def _request() -> Request:
    def view(lo: int, hi: int) -> DataView:
        return DataView(X[lo:hi], Y[lo:hi], torch.arange(lo, hi))

    return Request(1, view(0, N_FORGET), view(0, N_FORGET), view(N_FORGET, len(Y)), 10)


@pytest.mark.benchmark(group="mnist-mlp-4k: request vs retrain")
def test_gold_retrain_epoch(benchmark):
    """One epoch of the gold retrain on D_r (the gate multiplies by the recipe's 30 epochs)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = X[N_FORGET:], Y[N_FORGET:]
    out = benchmark(train_model, model, x, y, RECIPE, 0, epochs=1)
    assert out is model


@pytest.mark.benchmark(group="mnist-mlp-4k: request vs retrain")
@pytest.mark.parametrize(
    "method,hp",
    [
        # the budget preset of params.yaml (one ARC iteration of it)
        (
            "cure_newton_krylov",
            {"iters": 1, "hvp_batch": 32, "check_batch": 256, "precision": "model", "k": 10,
             "krylov_tol": 0.0},  # fmt: skip
        ),
        ("cure_newton_stochastic", {}),  # CuReNUS, the paper's settings
    ],
    ids=["krylov_budget", "curenus"],
)
def test_request(benchmark, method, hp):
    request = _request()
    state: dict = {}  # the ARC weight L carries across requests, as in a cell

    def one() -> Context:
        ctx = Context(seed=0, recipe=RECIPE, make_model=lambda s: None, n_train=len(Y), state=state)
        get_unlearner(method)(**hp).unlearn(copy.deepcopy(MNIST_MLP), request, ctx)
        return ctx

    ctx = benchmark(one)
    assert ctx.counters.hessians == 0 and ctx.counters.grad_samples > 0
