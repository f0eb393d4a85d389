"""cure_newton_krylov (Lanczos cubic Newton): the retain optimum of an independent solver, agreement with the
exact cure_newton, no explicit Hessian, and its work counters."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from convex_reference import digits_deletion
from sklearn.datasets import load_digits
from torch import nn

import benchmark.curvature as curvature
import benchmark.curvature.functional as functional
import benchmark.unlearners.cure_newton_krylov as krylov_mod
from benchmark.curvature import arc_step, flat_params, load_flat_params_, solve_cubic
from benchmark.curvature.arc import MAX_RETRIES
from benchmark.unlearners.base import Context, DataView, Request, TrainRecipe, get_unlearner

WD = 1e-2


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


def _request(x, y, forget, retain, k) -> Request:
    f = view(x[forget], y[forget])
    return Request(step=1, forget=f, forget_all=f, retain=view(x[retain], y[retain]), num_classes=k)


def _ctx(wd: float, n: int) -> Context:
    recipe = TrainRecipe(epochs=1, batch_size=32, lr=0.1, weight_decay=wd)
    return Context(seed=0, recipe=recipe, make_model=lambda s: None, n_train=n)


@pytest.fixture(scope="module")
def logreg():
    p = digits_deletion(WD)  # delete 30 of 240 samples; full-data and retain optima by L-BFGS
    x, y = torch.tensor(p.x), torch.tensor(p.y)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x.shape[1], p.k)).double()
    load_flat_params_(model, torch.tensor(p.full))
    assert np.linalg.norm(p.full - p.target) > 1e-2  # the deletion moves the optimum
    return model, _request(x, y, p.forget, p.retain, p.k), p.target


@pytest.mark.parametrize(("mode", "L"), [("fixed", 0.1), ("adaptive", 1.0)])
def test_reaches_the_retain_optimum_and_agrees_with_exact_cure_newton(logreg, mode, L):
    model, request, target = logreg
    iters, k = 10, 30  # k = 30 ≪ d = 650
    ctx = _ctx(WD, 240)
    # a fixed Krylov dimension (krylov_tol = 0) and no early stop (gtol = 0): exactly iters·k products
    out = get_unlearner("cure_newton_krylov")(
        L=L, iters=iters, k=k, mode=mode, krylov_tol=0.0, gtol=0.0
    ).unlearn(copy.deepcopy(model), request, ctx)
    w = flat_params(out).numpy()
    scale = max(1.0, np.linalg.norm(target))
    assert np.linalg.norm(w - target) < 1e-5 * scale
    assert ctx.counters.hessians == 0 and ctx.counters.hvps == iters * k
    assert ctx.info["ritz_min"] >= WD * (1 - 1e-9)  # strongly convex: Ritz values ≥ λ_min(H) ≥ WD
    assert ctx.info["krylov_dim"] == k

    ctx_exact = _ctx(WD, 240)
    exact = get_unlearner("cure_newton")(
        L=L, iters=iters, mode=mode, hessian_dtype="float64", gtol=0.0
    ).unlearn(copy.deepcopy(model), request, ctx_exact)
    assert np.linalg.norm(w - flat_params(exact).numpy()) < 1e-5 * scale


def _mlp_problem(seed: int = 0):
    """A small tanh MLP (d = 10·8+8+8·3+3 = 115), fit briefly, so the retain Hessian is indefinite."""
    digits = load_digits()
    mask = digits.target < 3
    x = torch.tensor(digits.data[mask][:150, ::6] / 16.0, dtype=torch.float64)  # 11 features
    x = x[:, :10]
    y = torch.tensor(digits.target[mask][:150])
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    forget = np.arange(0, 150, 5)
    retain = np.setdiff1d(np.arange(150), forget)
    return model, _request(x, y, forget, retain, 3)


@pytest.mark.parametrize(("mode", "L", "iters"), [("fixed", 0.3, 1), ("adaptive", 1e-3, 3)])
def test_full_krylov_space_is_the_exact_method(mode, L, iters):
    """k ≥ d: the Krylov space is everything (or an invariant space containing g), so each step equals the
    exact eigendecomposition step, including on an indefinite Hessian and through ARC rejections."""
    model, request = _mlp_problem()
    d = sum(p.numel() for p in model.parameters())
    ctx_k, ctx_e = _ctx(1e-3, 150), _ctx(1e-3, 150)
    out_k = get_unlearner("cure_newton_krylov")(L=L, iters=iters, k=d, mode=mode, krylov_tol=0.0).unlearn(
        copy.deepcopy(model), request, ctx_k
    )
    out_e = get_unlearner("cure_newton")(L=L, iters=iters, mode=mode, hessian_dtype="float64").unlearn(
        copy.deepcopy(model), request, ctx_e
    )
    w_k, w_e, w0 = flat_params(out_k), flat_params(out_e), flat_params(model)
    assert float((w_e - w0).norm()) > 1e-2
    assert float((w_k - w_e).norm()) < 1e-7 * float((w_e - w0).norm())
    assert ctx_k.info["shift"] == pytest.approx(ctx_e.info["shift"], rel=1e-6)
    assert ctx_k.info["L"] == ctx_e.info["L"]
    assert ctx_k.state == ctx_e.state
    if mode == "fixed":  # one step from the original model: the Ritz values span H's spectrum
        assert ctx_e.info["lambda_min"] < 0  # indefinite
        assert ctx_k.info["ritz_min"] == pytest.approx(ctx_e.info["lambda_min"], rel=1e-6, abs=1e-9)
        assert ctx_k.info["ritz_max"] == pytest.approx(ctx_e.info["lambda_max"], rel=1e-9)
    else:
        assert ctx_k.info["arc_tries"] > iters  # some steps were rejected and re-solved


def test_matrix_free_and_counters(monkeypatch):
    """No explicit Hessian; per iteration one gradient and k HVPs; ARC rejections cost no HVP."""

    def forbidden(*args, **kwargs):
        raise AssertionError("the explicit Hessian must not be formed")

    for mod in (functional, curvature, krylov_mod):
        monkeypatch.setattr(mod, "hessian", forbidden, raising=False)
    monkeypatch.setattr(torch.func, "hessian", forbidden)
    monkeypatch.setattr(torch.autograd.functional, "hessian", forbidden)

    model, request = _mlp_problem(seed=1)
    model = model.float()
    iters, k = 3, 7
    ctx = _ctx(1e-3, 150)
    # tiny L: rejections; fixed dimension k and no early stop, so the products are counted exactly
    method = get_unlearner("cure_newton_krylov")(L=1e-4, iters=iters, k=k, krylov_tol=0.0, gtol=0.0)
    out = method.unlearn(model, request, ctx)
    n_r = len(request.retain)
    assert ctx.counters.as_dict() == {
        "grad_samples": iters * n_r,
        "fwd_samples": ctx.info["arc_tries"] * n_r,  # f(w) comes with the gradient; one f(w + Δ) per try
        "hvps": iters * k,
        "hvp_samples": iters * k * n_r,
        "hessians": 0,
    }
    assert ctx.info["arc_tries"] > iters
    assert ctx.state["L"] == ctx.info["L"] > 1e-4  # L grew through the rejections and persists
    assert next(out.parameters()).dtype == torch.float32
    assert torch.isfinite(flat_params(out)).all()
    for key in ("L", "shift", "rho", "step_norm", "ritz_min", "ritz_max", "krylov_dim"):
        assert key in ctx.info

    # the adaptive L carries over to the next request of the cell; fixed mode leaves the state alone
    ctx.counters.reset()
    L_prev = ctx.state["L"]
    get_unlearner("cure_newton_krylov")(L=123.0, iters=1, k=k, mode="adaptive").unlearn(out, request, ctx)
    L_accepted = L_prev * 2 ** (ctx.info["arc_tries"] - 1)  # started from L_prev, not from 123
    assert ctx.state["L"] in (L_accepted, max(L_accepted * 0.1, 1e-6))  # kept, or shrunk by γ₁ = 0.1
    ctx_fixed = _ctx(1e-3, 150)
    get_unlearner("cure_newton_krylov")(L=2.0, iters=1, k=k, mode="fixed").unlearn(out, request, ctx_fixed)
    assert ctx_fixed.state == {} and ctx_fixed.info["L"] == 2.0


def test_perturbed_start_is_seeded_and_parameters_are_checked():
    model, request = _mlp_problem(seed=2)
    outs = []
    for _ in range(2):
        ctx = _ctx(1e-3, 150)
        out = get_unlearner("cure_newton_krylov")(iters=1, k=5, perturb=0.1).unlearn(
            copy.deepcopy(model), request, ctx
        )
        outs.append(flat_params(out))
    assert torch.equal(outs[0], outs[1])  # ctx.generator: deterministic per cell seed
    for bad in ({"mode": "sometimes"}, {"k": 0}, {"L": 0.0}, {"hvp_batch": -1}, {"precision": "half"}):
        with pytest.raises(ValueError):
            get_unlearner("cure_newton_krylov")(**bad).unlearn(copy.deepcopy(model), request, _ctx(1e-3, 150))


def _cubic_f(H: torch.Tensor, g: torch.Tensor, c: float):
    """f(w) = gᵀw + ½wᵀHw + (c/6)‖w‖³: the cubic model with constant c is exact at w = 0."""
    return lambda w: g @ w + 0.5 * w @ (H @ w) + c / 6 * w.norm() ** 3


def test_arc_step_rules():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(8, 8, generator=gen, dtype=torch.float64)
    H, g, w0 = 0.5 * (A + A.T), torch.randn(8, generator=gen, dtype=torch.float64), torch.zeros(8).double()
    calls = []

    def solve(L):
        calls.append(L)
        return solve_cubic(H, g, L)

    # L above the true constant: ρ ≥ 1, accepted at once, L shrunk by γ₁ = 0.1 (Manopt's ARC rule)
    w, L, info = arc_step(_cubic_f(H, g, 1.0), w0, solve, 4.0, "adaptive")
    assert (
        info.accepted and info.tries == 1 and calls == [4.0] and L == pytest.approx(0.4) and info.rho >= 1.0
    )
    assert torch.equal(w, solve_cubic(H, g, 4.0).step)
    assert info.f_old == 0.0 and info.f_new == pytest.approx(float(_cubic_f(H, g, 1.0)(w)))
    # L far below it: rejections double L (re-solving each time) until ρ ≥ 0.1
    calls.clear()
    w, L, info = arc_step(_cubic_f(H, g, 50.0), w0, solve, 0.01, "adaptive")
    assert info.accepted and info.tries > 1 and calls == [0.01 * 2**i for i in range(info.tries)]
    assert info.rho >= 0.1 and info.L_step == calls[-1]
    assert L == (0.1 * info.L_step if info.rho >= 0.9 else info.L_step)
    for L_rejected in calls[:-1]:  # each rejected trial really had ρ < 0.1
        step = solve_cubic(H, g, L_rejected)
        assert -float(_cubic_f(H, g, 50.0)(step.step)) < 0.1 * step.model_decrease
    # fixed mode: one solve, always accepted, L unchanged, f never evaluated
    calls.clear()

    def no_f(w):
        raise AssertionError("fixed mode evaluates no loss")

    w, L, info = arc_step(no_f, w0, solve, 0.01, "fixed")
    assert calls == [0.01] and L == 0.01 and info.accepted and torch.equal(w, solve_cubic(H, g, 0.01).step)
    # a step that never decreases f: w unchanged after MAX_RETRIES, L doubled each time
    w, L, info = arc_step(lambda w: w.norm(), w0, solve, 1.0, "adaptive")
    assert not info.accepted and torch.equal(w, w0) and info.tries == MAX_RETRIES and L == 2.0**MAX_RETRIES
    with pytest.raises(ValueError):
        arc_step(no_f, w0, solve, 1.0, "sometimes")


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_subsampled_curvature_still_reaches_the_retain_optimum(logreg, mode):
    """Exact gradient + Hessian of 120 samples (and ρ on 60): the fixed point is still ∇L(w; D_r) = 0."""
    model, request, target = logreg
    iters, k, b, c = 30, 10, 120, 60
    ctx = _ctx(WD, 240)
    method = get_unlearner("cure_newton_krylov")(
        L=0.1 if mode == "fixed" else 1.0, iters=iters, k=k, mode=mode, hvp_batch=b, check_batch=c, gtol=0.0
    )  # gtol = 0: all 30 iterations (the counters below count them)
    out = method.unlearn(copy.deepcopy(model), request, ctx)
    w = flat_params(out).numpy()
    scale = max(1.0, np.linalg.norm(target))
    assert np.linalg.norm(w - target) < 1e-5 * scale
    n_r = len(request.retain)
    assert ctx.counters.hvp_samples == ctx.counters.hvps * b  # the curvature saw b samples per product
    if mode == "adaptive":  # per iteration: one gradient on S, one forward on S per trial step
        assert ctx.counters.grad_samples == iters * (n_r + c)
        assert ctx.counters.fwd_samples == ctx.info["arc_tries"] * c
    else:
        assert ctx.counters.grad_samples == iters * n_r and ctx.counters.fwd_samples == 0
    # a single iteration with a wrong (subsampled) Hessian is not the exact step: the draws matter
    one_exact = get_unlearner("cure_newton_krylov")(L=0.1, iters=1, k=k, mode="fixed")
    one_sub = get_unlearner("cure_newton_krylov")(L=0.1, iters=1, k=k, mode="fixed", hvp_batch=b)
    w1 = flat_params(one_exact.unlearn(copy.deepcopy(model), request, _ctx(WD, 240)))
    w2 = flat_params(one_sub.unlearn(copy.deepcopy(model), request, _ctx(WD, 240)))
    assert not torch.allclose(w1, w2)


def test_subsample_sizes_at_least_the_retain_set_are_the_exact_method():
    model, request = _mlp_problem(seed=3)
    n_r = len(request.retain)
    outs = []
    for extra in ({}, {"hvp_batch": n_r, "check_batch": n_r + 5}):
        ctx = _ctx(1e-3, 150)
        method = get_unlearner("cure_newton_krylov")(iters=2, k=5, **extra)
        out = method.unlearn(copy.deepcopy(model), request, ctx)
        outs.append((flat_params(out), ctx.counters.as_dict()))
    assert torch.equal(outs[0][0], outs[1][0]) and outs[0][1] == outs[1][1]


def test_model_precision_evaluates_gradient_and_losses_in_the_model_dtype():
    model, request = _mlp_problem(seed=4)
    model = model.float()
    results = {}
    for precision in ("float64", "model"):
        ctx = _ctx(1e-3, 150)
        out = get_unlearner("cure_newton_krylov")(iters=2, k=5, precision=precision).unlearn(
            copy.deepcopy(model), request, ctx
        )
        results[precision] = flat_params(out).double()
    # same method, different rounding: close, not identical
    assert not torch.equal(results["float64"], results["model"])
    assert torch.allclose(results["float64"], results["model"], atol=1e-4)


def test_subsampled_remainder_is_exact_on_the_full_set_and_keeps_the_first_order_exact():
    from benchmark.curvature import make_loss_fn, value_and_gradient
    from benchmark.curvature.arc import SubsampledRemainder

    model, request = _mlp_problem(seed=5)
    model = model.double()
    r = request.retain
    f = make_loss_fn(model, r.x.double(), r.y, 1e-3)
    w = flat_params(model).double()
    f_w, g = value_and_gradient(f, w)
    step = 1e-2 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    full = SubsampledRemainder(f, w, g, f_w)
    assert abs(float(full(w + step)) - float(f(w + step))) < 1e-12  # S = D_r: f̂ = f
    # S = 10 samples: the remainder is subsampled, the linear part is not
    part = make_loss_fn(model, r.x[:10].double(), r.y[:10], 1e-3)
    est = SubsampledRemainder(part, w, g, f_w)
    t = 1e-4  # tiny steps: the remainder is O(t²), so f̂ − f(w) → t·gᵀΔ exactly
    lin = f_w + t * float(g @ step)
    assert abs(float(est(w + t * step)) - lin) < 1e-3 * abs(lin - f_w)
    # the naive subsample difference f_S(w') − f_S(w) follows the subsample's own gradient instead
    f_s_w, g_s = value_and_gradient(part, w)
    naive = f_w + float(part(w + t * step)) - f_s_w
    assert abs(naive - lin) > 10 * abs(float(est(w + t * step)) - lin)


def test_both_arc_unlearners_report_the_same_request_diagnostics():
    """cure_newton and cure_newton_krylov fill ctx.info through one helper: the same summary keys, after the
    last iteration's own entries, with the stop reason and gradient norms of the StopRule."""
    from benchmark.curvature.arc import StopRule, request_diagnostics

    rule = StopRule(3, gtol=0.5)
    assert not rule.done(2.0) and rule.done(0.5)
    info = request_diagnostics({"shift": 0.1}, L=0.2, rule=rule, tries=4, grad_norm=0.5, step_norm=1.5)
    assert list(info) == ["shift", "L", "iters", "arc_tries", "stop", "grad_norm0", "grad_norm", "step_norm"]
    assert info == dict(shift=0.1, L=0.2, iters=1, arc_tries=4, stop="gtol", grad_norm0=2.0, grad_norm=0.5,
                        step_norm=1.5)  # fmt: skip
    model, request = _mlp_problem(seed=2)
    summary = ["L", "iters", "arc_tries", "stop", "grad_norm0", "grad_norm", "step_norm"]
    for name, hp in (("cure_newton_krylov", {"iters": 2, "k": 5}), ("cure_newton", {"iters": 2})):
        ctx = _ctx(1e-3, 150)
        get_unlearner(name)(**hp).unlearn(copy.deepcopy(model), request, ctx)
        assert list(ctx.info)[-len(summary):] == summary and ctx.info["iters"] <= 2, (name, ctx.info)
