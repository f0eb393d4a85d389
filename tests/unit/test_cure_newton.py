"""CuReNU on a strongly convex problem converges to the retain optimum of an independent solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from convex_reference import logreg_objective
from scipy.optimize import minimize
from sklearn.datasets import load_digits
from torch import nn

from benchmark.curvature import flat_params
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

WD = 1e-2


def numpy_objective(w: np.ndarray, x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy + (WD/2)‖w‖² of a linear model, with its gradient (see convex_reference)."""
    return logreg_objective(w, x, y, k, WD)


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


@pytest.mark.parametrize(("mode", "L"), [("fixed", 0.1), ("adaptive", 1.0)])
def test_cubic_newton_reaches_the_retain_optimum_of_logistic_regression(mode, L):
    digits = load_digits()
    x_np, y_np = digits.data[:240] / 16.0, digits.target[:240]
    x, y = torch.tensor(x_np, dtype=torch.float64), torch.tensor(y_np)
    k, d = 10, x.shape[1]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(d, k)).double()

    full = minimize(
        numpy_objective,
        np.zeros(k * d + k),
        args=(x_np, y_np, k),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0, "maxiter": 5000},
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor(full.x[: k * d].reshape(k, d)))
        model[1].bias.copy_(torch.tensor(full.x[k * d :]))

    forget = np.arange(0, 240, 8)  # delete 30 samples
    retain = np.setdiff1d(np.arange(240), forget)
    target = minimize(
        numpy_objective,
        full.x,
        args=(x_np[retain], y_np[retain], k),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-12, "ftol": 0, "maxiter": 5000},
    ).x

    request = Request(
        step=1,
        forget=view(x[forget], y[forget]),
        forget_all=view(x[forget], y[forget]),
        retain=view(x[retain], y[retain]),
        num_classes=k,
    )
    recipe = TrainRecipe(epochs=1, batch_size=32, lr=0.1, weight_decay=WD)
    ctx = Context(seed=0, recipe=recipe, make_model=lambda s: model, n_train=240)
    method = get_unlearner("cure_newton")(L=L, iters=12, mode=mode, hessian_dtype="float64")

    start_gap = np.linalg.norm(full.x - target)
    out = method.unlearn(model, request, ctx)
    w = flat_params(out).numpy()
    assert start_gap > 1e-2  # the deletion moves the optimum
    assert np.linalg.norm(w - target) < 1e-6 * max(1.0, np.linalg.norm(target))
    assert ctx.counters.hessians == 12
    assert ctx.info["lambda_min"] > 0  # strongly convex: H ⪰ WD·I


def test_skip_beyond_max_params():
    method = get_unlearner("cure_newton")(max_params=1000)
    assert method.skip(999) is None
    assert "exceeds max_params=1000" in method.skip(50_890)
