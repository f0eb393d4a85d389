"""Micro-benchmarks of the second-order plumbing (pytest-benchmark).

Run with timings: ``pytest tests/benchmarks --benchmark-enable``. In the normal test run they execute once,
as smoke tests. Compare HVP and gradient costs as ratios from the same run (``--benchmark-compare``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.curvature import flat_params, gradient, hessian, hvp, make_loss_fn, solve_cubic

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
@pytest.mark.parametrize("mode", ["rev_rev", "fwd_rev"])
def test_hvp(benchmark, mode):
    hv = benchmark(hvp, LOSS, W, V, mode=mode)
    assert torch.isfinite(hv).all()


@pytest.mark.benchmark(group="digits-mlp: exact curvature")
def test_hessian_and_cubic_solve_digits_mlp(benchmark):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x, y = torch.rand(1437, 1, 8, 8), torch.randint(0, 10, (1437,))
    loss = make_loss_fn(model, x, y, weight_decay=5e-4)
    w = flat_params(model)

    def newton_step():
        H = hessian(loss, w, chunk_size=32).double()
        return solve_cubic(H, gradient(loss, w).double(), L=1.0)

    step = benchmark.pedantic(newton_step, rounds=1, iterations=1)
    assert step.alpha >= 0
