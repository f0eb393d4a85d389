"""CuReNU on a strongly convex problem converges to the retain optimum of an independent solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from convex_reference import digits_deletion
from torch import nn

from benchmark.curvature import flat_params, load_flat_params_
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

WD = 1e-2


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


@pytest.mark.parametrize(("mode", "L"), [("fixed", 0.1), ("adaptive", 1.0)])
def test_cubic_newton_reaches_the_retain_optimum_of_logistic_regression(mode, L):
    p = digits_deletion(WD)  # delete 30 of 240 samples; full-data and retain optima by L-BFGS
    x, y, k, forget, retain, target = torch.tensor(p.x), torch.tensor(p.y), p.k, p.forget, p.retain, p.target
    model = nn.Sequential(nn.Flatten(), nn.Linear(x.shape[1], k)).double()
    load_flat_params_(model, torch.tensor(p.full))

    request = Request(
        step=1,
        forget=view(x[forget], y[forget]),
        forget_all=view(x[forget], y[forget]),
        retain=view(x[retain], y[retain]),
        num_classes=k,
    )
    recipe = TrainRecipe(epochs=1, batch_size=32, lr=0.1, weight_decay=WD)
    ctx = Context(seed=0, recipe=recipe, make_model=lambda s: model, n_train=240)
    # gtol = 0: no early stop, exactly 12 iterations (the default configuration is tested in
    # test_cubic_defaults_convex.py)
    method = get_unlearner("cure_newton")(L=L, iters=12, mode=mode, hessian_dtype="float64", gtol=0.0)

    start_gap = np.linalg.norm(p.full - target)
    out = method.unlearn(model, request, ctx)
    w = flat_params(out).numpy()
    assert start_gap > 1e-2  # the deletion moves the optimum
    assert np.linalg.norm(w - target) < 1e-6 * max(1.0, np.linalg.norm(target))
    assert ctx.counters.hessians == 12
    n_r = len(retain)
    assert ctx.counters.grad_samples == 12 * n_r  # f(w) comes with each gradient
    if mode == "fixed":  # every step accepted: no loss evaluation
        assert ctx.counters.fwd_samples == 0
    else:  # one forward pass over D_r per trial step, at least one per iteration
        assert ctx.counters.fwd_samples >= 12 * n_r and ctx.counters.fwd_samples % n_r == 0
    assert ctx.info["lambda_min"] > 0  # strongly convex: H ⪰ WD·I


def test_skip_beyond_max_params():
    method = get_unlearner("cure_newton")(max_params=1000)
    assert method.skip(999) is None
    assert "exceeds max_params=1000" in method.skip(50_890)
