"""PINV-Newton and damped Newton steps equal a float64 brute-force solve on a tiny network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from benchmark.curvature import flat_params
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

WD = 1e-3


def tiny_setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(40, 4, dtype=torch.float64), torch.randint(0, 3, (40,))
    keep = torch.arange(8, 40)
    view = DataView(x[keep], y[keep], keep)
    forget = DataView(x[:8], y[:8], torch.arange(8))
    request = Request(step=1, forget=forget, forget_all=forget, retain=view, num_classes=3)
    ctx = Context(
        seed=0, recipe=TrainRecipe(1, 8, 0.1, weight_decay=WD), make_model=lambda s: model, n_train=40
    )
    return model, request, ctx


def brute_force(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient and Hessian of mean CE + (WD/2)‖w‖² by torch.autograd.functional on an unflattened call."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    w0 = flat_params(model).double()

    def f(w: torch.Tensor) -> torch.Tensor:
        parts, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            parts[n] = w[i : i + s.numel()].view(s)
            i += s.numel()
        logits = functional_call(model, parts, (x,))
        return nn.functional.cross_entropy(logits, y) + WD / 2 * (w * w).sum()

    g = torch.autograd.functional.jacobian(f, w0)
    H = torch.autograd.functional.hessian(f, w0)
    return g, H


def test_newton_pinv_matches_pseudo_inverse():
    model, request, ctx = tiny_setup()
    g, H = brute_force(model, request.retain.x, request.retain.y)
    expected = flat_params(model) - torch.linalg.pinv(H, rtol=1e-6) @ g
    out = get_unlearner("newton_pinv")(hessian_dtype="float64").unlearn(model, request, ctx)
    torch.testing.assert_close(flat_params(out), expected, rtol=1e-8, atol=1e-8)
    assert ctx.counters.hessians == 1


@pytest.mark.parametrize("gamma", [1e-4, 1e-2, 1.0])
def test_newton_damped_matches_linear_solve(gamma):
    model, request, ctx = tiny_setup()
    g, H = brute_force(model, request.retain.x, request.retain.y)
    step = -torch.linalg.solve(H + gamma * torch.eye(len(g), dtype=H.dtype), g)
    expected = flat_params(model) + step
    out = get_unlearner("newton_damped")(gamma=gamma, hessian_dtype="float64").unlearn(model, request, ctx)
    torch.testing.assert_close(flat_params(out), expected, rtol=1e-8, atol=1e-8)
    assert ctx.info["step_norm"] == pytest.approx(float(step.norm()), rel=1e-8)
