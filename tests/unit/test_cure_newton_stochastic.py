"""CuReNUS: the inner GD solves the cubic subproblem, full-batch rounds reach the retain optimum of an
independent solver, minibatches are deterministic per seed, and the work counters are exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from convex_reference import digits_deletion, logreg_objective
from torch import nn

from benchmark.curvature import flat_params, load_flat_params_, solve_cubic
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner
from benchmark.unlearners.cure_newton_stochastic import cubic_gd

WD = 1e-2
K = 10  # classes


# ----------------------------------------------------------------------------------------------------
# the inner loop: gradient descent on the cubic model (Carmon & Duchi 2019)


def random_symmetric(eigvals: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((eigvals.size, eigvals.size)))
    return torch.tensor(Q @ np.diag(eigvals) @ Q.T), torch.tensor(Q)


class CountingHvp:
    def __init__(self, H: torch.Tensor) -> None:
        self.H, self.calls = H, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.H @ v


@pytest.mark.parametrize("case", ["positive_definite", "indefinite"])
def test_cubic_gd_finds_the_global_minimiser_of_the_cubic_model(case):
    d, L = 20, 1.0
    rng = np.random.default_rng(1)
    if case == "positive_definite":
        lam = np.sort(rng.uniform(0.1, 1.0, d))
    else:
        lam = np.sort(np.concatenate([[-0.5], rng.uniform(-0.3, 1.0, d - 1)]))
    H, Q = random_symmetric(lam, seed=2)
    g = torch.tensor(rng.standard_normal(d))
    g = g / g.norm()
    if case == "indefinite":  # a clear component on the λ_min eigenvector (not the hard case)
        g = g + (0.5 - float(Q[:, 0] @ g)) * Q[:, 0]
    exact = solve_cubic(H, g, L)
    assert not exact.hard_case
    eta = 0.5 / (float(lam.max()) + L * exact.alpha)

    hvp = CountingHvp(H)
    delta = cubic_gd(g, hvp, L, eta, steps=3000)
    assert hvp.calls == 2999  # Δ₀ = 0: the first step needs no product
    assert torch.linalg.vector_norm(delta - exact.step) < 1e-6

    # without the cubic-gradient term the iteration solves another problem (or blows up)
    quad = cubic_gd(g, CountingHvp(H), L, eta, steps=3000, cubic=False)
    assert not torch.isfinite(quad).all() or torch.linalg.vector_norm(quad - exact.step) > 1e-2


def test_cubic_gd_zero_steps_and_one_step():
    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    hvp = CountingHvp(torch.eye(2, dtype=torch.float64))
    assert torch.equal(cubic_gd(g, hvp, 1.0, 0.1, steps=0), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(cubic_gd(g, hvp, 1.0, 0.1, steps=1), -0.1 * g)
    # second step by hand: Δ₂ = Δ₁ − η (g + HΔ₁ + (L/2)‖Δ₁‖Δ₁)
    d1 = -0.1 * g
    d2 = d1 - 0.1 * (g + d1 + 0.5 * d1.norm() * d1)
    assert torch.allclose(cubic_gd(g, hvp, 1.0, 0.1, steps=2), d2)
    assert hvp.calls == 1


# ----------------------------------------------------------------------------------------------------
# the method on L2-regularised multinomial logistic regression


def numpy_objective(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy + (WD/2)‖w‖² of a linear model, with its gradient (see convex_reference)."""
    return logreg_objective(w, x, y, K, WD)


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


def digits_problem(dtype: torch.dtype = torch.float64, n: int = 240):
    """A linear model at the full-data optimum, and the request deleting every 8th sample."""
    p = digits_deletion(WD, n)
    x, y = torch.tensor(p.x, dtype=dtype), torch.tensor(p.y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(p.x.shape[1], K)).to(dtype)
    load_flat_params_(model, torch.tensor(p.full))
    forget, retain = p.forget, p.retain
    request = Request(
        step=1,
        forget=view(x[forget], y[forget]),
        forget_all=view(x[forget], y[forget]),
        retain=view(x[retain], y[retain]),
        num_classes=K,
    )
    return model, request, p.full, (p.x[retain], p.y[retain])


def make_ctx(seed: int = 0) -> Context:
    recipe = TrainRecipe(epochs=1, batch_size=32, lr=1e-3, weight_decay=WD)
    return Context(seed=seed, recipe=recipe, make_model=lambda s: None, n_train=240)


def test_full_batch_rounds_reach_the_retain_optimum_of_logistic_regression():
    model, request, full, (x_r, y_r) = digits_problem(torch.float64)
    target = digits_deletion(WD).target  # L-BFGS on the retain samples, from the full-data optimum
    n_r = len(request.retain)
    rounds, inner = 30, 60
    method = get_unlearner("cure_newton_stochastic")(
        L=1.0, eta=1.0, sigma=0.0, rounds=rounds, inner_steps=inner, grad_batch=10_000, hess_batch=10_000
    )
    ctx = make_ctx()
    out = method.unlearn(model, request, ctx)
    w = flat_params(out).numpy()
    assert np.linalg.norm(full - target) > 1e-2  # the deletion moves the optimum
    assert np.linalg.norm(w - target) < 1e-4 * np.linalg.norm(target)
    assert np.linalg.norm(numpy_objective(w, x_r, y_r)[1]) < 1e-6
    assert next(out.parameters()).dtype == torch.float64
    assert ctx.counters.grad_samples == rounds * n_r
    assert ctx.counters.hvps == rounds * (inner - 1)
    assert ctx.counters.hvp_samples == rounds * (inner - 1) * n_r
    assert ctx.counters.hessians == 0
    assert ctx.info["rounds"] == rounds and ctx.info["L"] == 1.0
    assert ctx.info["step_norm"] == pytest.approx(np.linalg.norm(w - full), rel=1e-9)
    assert ctx.info["last_step_norm"] < 1e-6
    assert ctx.info["grad_norm"] < 1e-5  # g of the last round, at the optimum up to one step


@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_one_inner_step_is_minus_eta_times_the_perturbed_retain_gradient(scale):
    """T = J = 1, full batch: w⁺ = w − η(g + σζ) with g the hand-written retain gradient and ‖ζ‖ = 1;
    σ = ``sigma`` (the paper's absolute perturbation) or ``sigma``·‖g‖ (relative, the default)."""
    model, request, full, (x_r, y_r) = digits_problem(torch.float64)
    eta, sigma = 0.7, 0.3
    method = get_unlearner("cure_newton_stochastic")(
        eta=eta, sigma=sigma, sigma_scale=scale, rounds=1, inner_steps=1, grad_batch=10_000, hess_batch=10_000
    )
    ctx = make_ctx()
    w = flat_params(method.unlearn(model, request, ctx)).numpy()
    g = numpy_objective(full, x_r, y_r)[1]
    assert np.linalg.norm(g) > 1e-2
    zeta = -(w - full) / eta - g
    expected = sigma if scale == "absolute" else sigma * np.linalg.norm(g)
    assert np.linalg.norm(zeta) == pytest.approx(expected, rel=1e-9)
    assert ctx.counters.hvps == 0 and ctx.counters.grad_samples == len(request.retain)


def run_minibatch(seed: int, sigma: float = 0.1, **hparams):
    model, request, _, _ = digits_problem(torch.float32)
    hp = {"rounds": 3, "inner_steps": 4, "grad_batch": 32, "hess_batch": 16, "sigma": sigma, **hparams}
    ctx = make_ctx(seed)
    out = get_unlearner("cure_newton_stochastic")(**hp).unlearn(model, request, ctx)
    return flat_params(out), ctx


@pytest.mark.parametrize("sigma", [0.1, 0.0])
def test_minibatches_are_deterministic_under_the_cell_seed(sigma):
    w_a, ctx = run_minibatch(0, sigma)
    w_b, _ = run_minibatch(0, sigma)
    w_c, _ = run_minibatch(1, sigma)
    assert w_a.dtype == torch.float32 and torch.isfinite(w_a).all()
    assert torch.equal(w_a, w_b)
    assert not torch.allclose(w_a, w_c)  # other batches (and, with σ > 0, another perturbation)
    assert ctx.info["step_norm"] > 0 and "diverged" not in ctx.info


def test_each_round_and_request_draws_fresh_batches(monkeypatch):
    import benchmark.curvature.functional as mod  # make_subsampled_loss_fn builds through make_loss_fn

    calls = []  # (rows of x as a set, weight decay) for each loss built: B₁, B₂ of each round

    def spy(model, x, y, weight_decay=0.0, **kw):
        calls.append((frozenset(map(tuple, x.tolist())), len(y), weight_decay))
        return real(model, x, y, weight_decay=weight_decay, **kw)

    real = mod.make_loss_fn
    monkeypatch.setattr(mod, "make_loss_fn", spy)
    run_minibatch(0, rounds=3, grad_batch=32, hess_batch=16)
    assert [n for _, n, _ in calls] == [32, 16] * 3
    assert all(wd == WD for _, _, wd in calls)
    assert len({rows for rows, _, _ in calls}) == 6  # new B₁, B₂ every round
    first = calls[:]
    calls.clear()
    model, request, _, _ = digits_problem(torch.float32)
    later = Request(2, request.forget, request.forget_all, request.retain, K)
    get_unlearner("cure_newton_stochastic")(rounds=3, grad_batch=32, hess_batch=16).unlearn(
        model, later, make_ctx(0)
    )
    assert not {rows for rows, _, _ in first} & {rows for rows, _, _ in calls}  # request 2: other batches


def test_counters_with_minibatches():
    rounds, inner, b1, b2 = 3, 4, 32, 16
    _, ctx = run_minibatch(0, rounds=rounds, inner_steps=inner, grad_batch=b1, hess_batch=b2)
    assert ctx.counters.as_dict() == {
        "grad_samples": rounds * b1,
        "hvps": rounds * (inner - 1),
        "hvp_samples": rounds * (inner - 1) * b2,
        "hessians": 0,
        "fwd_samples": 0,
    }


def test_divergence_is_reported_and_the_model_stays_finite():
    w, ctx = run_minibatch(0, eta=1e6, L=1e6, inner_steps=20)
    assert torch.isfinite(w).all()
    assert ctx.info["diverged"] == 1


def test_grid_and_test_params():
    cls = get_unlearner("cure_newton_stochastic")
    (default,) = list(cls.grid())
    assert default == {
        "L": 1.0,
        "eta": None,
        "grad_batch": 128,
        "hess_batch": 64,
        "inner_steps": 10,
        "rounds": 10,
        "sigma": 0.1,
        "sigma_scale": "relative",
    }
    assert cls(**cls.test_params).hparams["rounds"] == 2


def test_sigma_scale_is_checked():
    model, request, _, _ = digits_problem(torch.float32)
    with pytest.raises(ValueError, match="sigma_scale"):
        get_unlearner("cure_newton_stochastic")(sigma_scale="gradient").unlearn(model, request, make_ctx())
