"""Curvature baselines: Fisher diagonals, CG / WoodFisher inverses, and the methods built on them
(influence, fisher_forgetting, ssd, delete) against brute-force computations and hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convex_reference import digits_deletion
from sklearn.datasets import load_digits
from torch import nn

from benchmark.curvature import (
    conjugate_gradient,
    fisher_diag,
    flat_params,
    gradient,
    hessian,
    inverse_hvp,
    load_flat_params_,
    make_loss_fn,
    minibatch_importance,
    per_sample_grads,
    woodbury_solve,
)
from benchmark.models.training import evaluate_accuracy, train_model
from benchmark.plugins import check
from benchmark.unlearners.base import Context, Counters, DataView, Request, TrainRecipe, get_unlearner
from benchmark.unlearners.delete import distillation_loss, masked_teacher_targets
from benchmark.unlearners.fisher_forgetting import head_mask, scrub_variance
from benchmark.unlearners.ssd import ssd_factors

WD = 1e-2
METHODS = ("fisher_forgetting", "influence", "ssd", "delete")


def view(x: torch.Tensor, y: torch.Tensor) -> DataView:
    return DataView(x, y, torch.arange(len(y)))


def request_of(x, y, forget, retain, k, step=1) -> Request:
    f = view(x[forget], y[forget])
    return Request(step=step, forget=f, forget_all=f, retain=view(x[retain], y[retain]), num_classes=k)


def context(seed=0, wd=WD, lr=0.01, batch_size=16) -> Context:
    recipe = TrainRecipe(epochs=1, batch_size=batch_size, lr=lr, weight_decay=wd)
    return Context(seed=seed, recipe=recipe, make_model=lambda s: nn.Identity(), n_train=0)


def tiny_mlp(seed=0, d_in=3, hidden=4, k=3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, k)).double().eval()


def tiny_data(n=7, d_in=3, k=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g, dtype=torch.float64), torch.randint(k, (n,), generator=g)


def flat_grad(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


# ----------------------------------------------------------------------------------------------------
# Fisher diagonals


def test_empirical_fisher_is_the_mean_of_squared_per_sample_gradients():
    model, (x, y) = tiny_mlp(), tiny_data()
    loop = torch.stack(
        [flat_grad(model, F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])) for i in range(7)]
    )
    counter = Counters()
    got = fisher_diag(model, x, y, kind="empirical", chunk_size=3, counter=counter)  # 3 chunks
    torch.testing.assert_close(got, loop.square().mean(0), rtol=1e-12, atol=1e-14)
    assert counter.grad_samples == 7
    blocks = list(per_sample_grads(model, x, y, chunk_size=4))
    assert [b.shape[0] for b in blocks] == [4, 3]
    torch.testing.assert_close(torch.cat(blocks), loop, rtol=1e-12, atol=1e-14)


def test_true_fisher_is_the_expectation_over_the_predictive_distribution():
    model, (x, y) = tiny_mlp(), tiny_data()
    expected = torch.zeros(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    for i in range(7):
        probs = F.softmax(model(x[i : i + 1]), dim=1).detach()[0]
        for c in range(3):
            g = flat_grad(model, F.log_softmax(model(x[i : i + 1]), dim=1)[0, c])
            expected += probs[c] * g.square()
    expected /= 7
    counter = Counters()
    got = fisher_diag(model, x, y, kind="true", chunk_size=6, counter=counter)  # blocks of 2 samples
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    assert counter.grad_samples == 7 * 3
    # labels do not matter, and a float32 model evaluated at float64 weights gives the same numbers
    torch.testing.assert_close(fisher_diag(model, x, (y + 1) % 3, kind="true"), expected)
    model32 = tiny_mlp().float()
    got64 = fisher_diag(model32, x.float(), y, kind="true", w=flat_params(model32).double())
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, fisher_diag(tiny_mlp(), x.float().double(), y, kind="true"))


def test_minibatch_importance_is_the_mean_squared_minibatch_gradient():
    model, (x, y) = tiny_mlp(), tiny_data()
    batches = [(0, 3), (3, 6), (6, 7)]
    loop = [flat_grad(model, F.cross_entropy(model(x[a:b]), y[a:b])).square() for a, b in batches]
    counter = Counters()
    got = minibatch_importance(model, x, y, batch_size=3, counter=counter)
    torch.testing.assert_close(got, torch.stack(loop).mean(0), rtol=1e-12, atol=1e-14)
    assert counter.grad_samples == 7


# ----------------------------------------------------------------------------------------------------
# inverses


def test_cg_inverse_hvp_equals_a_dense_solve():
    model, (x, y) = tiny_mlp(), tiny_data(n=20)
    loss = make_loss_fn(model, x, y, weight_decay=1e-3)
    w = flat_params(model)
    H = hessian(loss, w)
    lam = max(0.0, -float(torch.linalg.eigvalsh(H)[0])) + 0.1  # H + λI positive definite
    v = torch.randn(w.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    counter = Counters()
    res = inverse_hvp(loss, w, v, damping=lam, max_iters=200, rtol=1e-12, counter=counter)
    exact = torch.linalg.solve(H + lam * torch.eye(w.numel(), dtype=torch.float64), v)
    assert res.converged and not res.negative_curvature
    torch.testing.assert_close(res.x, exact, rtol=1e-8, atol=1e-10)
    assert counter.hvps == res.iters <= w.numel() + 5  # CG: at most d steps in exact arithmetic
    assert counter.hvp_samples == 20 * res.iters


def test_cg_stops_on_negative_curvature():
    A = torch.diag(torch.tensor([1.0, -1.0], dtype=torch.float64))
    res = conjugate_gradient(lambda v: A @ v, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert (
        res.negative_curvature and res.iters == 1 and torch.equal(res.x, torch.zeros(2, dtype=torch.float64))
    )
    ok = conjugate_gradient(lambda v: A @ v, torch.tensor([0.0, 1.0], dtype=torch.float64), damping=3.0)
    torch.testing.assert_close(ok.x, torch.tensor([0.0, 0.5], dtype=torch.float64))


def test_woodbury_solve_equals_the_dense_damped_fisher_solve():
    g = torch.Generator().manual_seed(0)
    G = torch.randn(5, 8, generator=g, dtype=torch.float64)
    v = torch.randn(8, generator=g, dtype=torch.float64)
    dense = 0.3 * torch.eye(8, dtype=torch.float64) + G.T @ G / 5
    torch.testing.assert_close(woodbury_solve(G, v, 0.3), torch.linalg.solve(dense, v))


# ----------------------------------------------------------------------------------------------------
# influence on a strongly convex problem


@pytest.fixture(scope="module")
def logreg():
    p = digits_deletion(WD)  # delete 30 of 240 samples; full-data and retain optima by L-BFGS
    return torch.tensor(p.x), torch.tensor(p.y), p.forget, p.retain, p.full, p.target


def logreg_model(w: np.ndarray) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double()
    load_flat_params_(model, torch.tensor(w))
    return model


def test_influence_is_the_newton_step_on_the_retain_loss_and_lands_at_the_retain_optimum(logreg):
    x, y, forget, retain, full, target = logreg
    request = request_of(x, y, forget, retain, 10)
    ctx = context()
    method = get_unlearner("influence")(mode="cg", damping=0.0, cg_iters=650, cg_tol=1e-13)
    w_plus = flat_params(method.unlearn(logreg_model(full), request, ctx)).numpy()

    # the formula, with an explicit Hessian solve: w − H_r⁻¹ ∇L_r(w)
    model = logreg_model(full)
    w = flat_params(model)
    loss_r = make_loss_fn(model, x[retain], y[retain], WD)
    g_r, g_e = gradient(loss_r, w), gradient(make_loss_fn(model, x[forget], y[forget], WD), w)
    H_r = hessian(loss_r, w)
    np.testing.assert_allclose(w_plus, (w - torch.linalg.solve(H_r, g_r)).numpy(), rtol=0, atol=1e-9)
    # at the full-data optimum it is the influence removal w + (n_e/n_r) H_r⁻¹ ∇L_e
    np.testing.assert_allclose(w_plus, (w + (30 / 210) * torch.linalg.solve(H_r, g_e)).numpy(), atol=1e-6)

    # one request lands close to the retrain optimum (the error is second order in the step)
    start_gap = np.linalg.norm(full - target)
    assert start_gap > 1e-2
    assert np.linalg.norm(w_plus - target) < 0.03 * start_gap
    assert ctx.counters.grad_samples == 210 and 0 < ctx.counters.hvps <= 650
    assert ctx.info["cg_rel_residual"] < 1e-12 and not ctx.info["negative_curvature"]


def test_influence_damping_and_scale_enter_as_written(logreg):
    x, y, forget, retain, full, _ = logreg
    method = get_unlearner("influence")(mode="cg", damping=0.1, scale=0.5, cg_iters=650, cg_tol=1e-13)
    w_plus = flat_params(method.unlearn(logreg_model(full), request_of(x, y, forget, retain, 10), context()))
    model = logreg_model(full)
    w = flat_params(model)
    loss_r = make_loss_fn(model, x[retain], y[retain], WD)
    damped = torch.linalg.solve(
        hessian(loss_r, w) + 0.1 * torch.eye(w.numel(), dtype=w.dtype), gradient(loss_r, w)
    )
    torch.testing.assert_close(w_plus, w - 0.5 * damped, rtol=0, atol=1e-9)


def test_influence_corrects_a_model_that_is_not_at_an_optimum(logreg):
    """From a perturbed start the residual retain gradient is kept: repeated requests converge (Newton)."""
    x, y, forget, retain, full, target = logreg
    start = full + 0.05 * np.random.default_rng(0).standard_normal(full.shape)
    model = logreg_model(start)
    method = get_unlearner("influence")(mode="cg", damping=0.0, cg_iters=650, cg_tol=1e-13)
    gaps = [np.linalg.norm(start - target)]
    for step in (1, 2, 3):
        model = method.unlearn(model, request_of(x, y, forget, retain, 10, step=step), context())
        gaps.append(np.linalg.norm(flat_params(model).numpy() - target))
    assert gaps[1] < 0.1 * gaps[0] and gaps[2] < 0.1 * gaps[1] and gaps[3] < 1e-5 * gaps[0]


def test_influence_woodfisher_equals_the_dense_damped_fisher_step(logreg):
    x, y, forget, retain, full, _ = logreg
    request = request_of(x, y, forget, retain, 10)
    ctx = context()
    method = get_unlearner("influence")(mode="woodfisher", damping=0.05, fisher_samples=1000, scale=0.5)
    w_plus = flat_params(method.unlearn(logreg_model(full), request, ctx))

    model = logreg_model(full)
    w = flat_params(model)
    G = torch.stack(
        [flat_grad(model, F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])).detach() for i in retain]
    )
    fisher = G.T @ G / len(retain) + (WD + 0.05) * torch.eye(w.numel(), dtype=torch.float64)
    v = -gradient(make_loss_fn(model, x[retain], y[retain], WD), w)
    torch.testing.assert_close(w_plus, w + 0.5 * torch.linalg.solve(fisher, v), rtol=0, atol=1e-10)
    assert ctx.counters.grad_samples == 210 + 210 and ctx.counters.hvps == 0


# ----------------------------------------------------------------------------------------------------
# SSD


def test_ssd_dampening_by_hand():
    imp_full = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0])
    imp_forget = torch.tensor([5.0, 20.0, 0.5, 1.0, 0.0])
    beta, selected = ssd_factors(imp_full, imp_forget, alpha=10.0, lam=1.0)
    # selected where []_Df > 10·[]_D: 20 > 10 and 1 > 0; β = min(λ []_D / []_Df, 1) = 1/20 and 0/1
    assert selected.tolist() == [False, True, False, True, False]
    torch.testing.assert_close(beta, torch.tensor([1.0, 0.05, 1.0, 0.0, 1.0]))
    beta, selected = ssd_factors(imp_full, imp_forget, alpha=2.0, lam=5.0)
    # 5 > 2 and 20 > 2 selected; λ·[]_D/[]_Df = 1.0 (5/5) and 0.25 (5/20); 1 > 0 selected with β = 0
    assert selected.tolist() == [True, True, False, True, False]
    torch.testing.assert_close(beta, torch.tensor([1.0, 0.25, 1.0, 0.0, 1.0]))
    beta, _ = ssd_factors(imp_full, imp_forget, alpha=2.0, lam=50.0)  # bounded by 1: never grows
    torch.testing.assert_close(beta, torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0]))


@pytest.mark.parametrize("importance", ["fisher", "batch"])
def test_ssd_unlearn_applies_the_rule_to_the_right_importances(importance):
    model, (x, y) = tiny_mlp(), tiny_data(n=12)
    forget, retain = np.array([1, 5, 9]), np.array([0, 2, 3, 4, 6, 7, 8, 10, 11])
    w = flat_params(model)
    if importance == "fisher":
        imp_f = fisher_diag(model, x[forget], y[forget])
        imp_d = fisher_diag(model, torch.cat([x[retain], x[forget]]), torch.cat([y[retain], y[forget]]))
    else:  # squared gradients of consecutive minibatches of 4: retain first, then the forget samples
        xd, yd = torch.cat([x[retain], x[forget]]), torch.cat([y[retain], y[forget]])
        sq = [
            flat_grad(model, F.cross_entropy(model(xd[a : a + 4]), yd[a : a + 4])).square() for a in (0, 4, 8)
        ]
        imp_d = torch.stack(sq).mean(0)
        imp_f = flat_grad(model, F.cross_entropy(model(x[forget]), y[forget])).square()
    beta = torch.where(imp_f > 1.0 * imp_d, torch.clamp(0.5 * imp_d / imp_f, max=1.0), torch.ones_like(w))
    ctx = context()
    method = get_unlearner("ssd")(
        alpha=1.0,
        **{"lambda": 0.5},
        importance=importance,
        batch_size=4,
        match_batch=False,
        order="given",
        full_data="current",
    )
    out = method.unlearn(model, request_of(x, y, forget, retain, 3), ctx)
    torch.testing.assert_close(flat_params(out), w * beta, rtol=1e-12, atol=0)
    assert 0 < ctx.info["n_selected"] < w.numel()


def test_ssd_match_batch_uses_forget_sized_batches_for_both_importances():
    model, (x, y) = tiny_mlp(), tiny_data(n=12)
    forget, retain = np.array([1, 5, 9]), np.array([0, 2, 3, 4, 6, 7, 8, 10, 11])
    w = flat_params(model)
    xd, yd = torch.cat([x[retain], x[forget]]), torch.cat([y[retain], y[forget]])
    imp_d = minibatch_importance(model, xd, yd, 3)  # batches of n_e = 3, not 128
    imp_f = minibatch_importance(model, x[forget], y[forget], 3)
    beta, _ = ssd_factors(imp_d, imp_f, alpha=1.0, lam=0.5)
    ctx = context()
    hp = dict(importance="batch", batch_size=128, match_batch=True, order="given", full_data="current")
    out = get_unlearner("ssd")(alpha=1.0, **{"lambda": 0.5}, **hp).unlearn(
        model, request_of(x, y, forget, retain, 3), ctx
    )
    torch.testing.assert_close(flat_params(out), w * beta, rtol=1e-12, atol=0)
    assert ctx.info["importance_batch"] == 3


# ----------------------------------------------------------------------------------------------------
# Fisher forgetting


def brute_true_fisher(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    total = 0
    for i in range(len(x)):
        probs = F.softmax(model(x[i : i + 1]), dim=1).detach()[0]
        for c in range(len(probs)):
            total = (
                total + probs[c] * flat_grad(model, F.log_softmax(model(x[i : i + 1]), dim=1)[0, c]).square()
            )
    return total / len(x)


def test_fisher_forgetting_noise_has_the_formula_covariance():
    torch.manual_seed(0)
    model = nn.Linear(1, 2, bias=False).double()  # two parameters, both in the head (2 classes)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3], [-0.2]]))
    x = torch.tensor([[3.0], [-2.0], [1.0], [2.5]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    request = request_of(x, y, np.array([3]), np.array([0, 1, 2]), 2)
    fisher = brute_true_fisher(model, x[:3])
    assert float(fisher.min()) > 1e-2  # not capped: var = α·10/F
    alpha = 1e-4
    expected_var = alpha * 10.0 / (fisher + 1e-8)
    w0 = flat_params(model)
    draws = []
    for seed in range(1000):
        m = nn.Linear(1, 2, bias=False).double()
        load_flat_params_(m, w0)
        ctx = context(seed=seed)
        out = get_unlearner("fisher_forgetting")(alpha=alpha, fisher="true").unlearn(m, request, ctx)
        draws.append(flat_params(out) - w0)
    draws = torch.stack(draws)
    assert ctx.counters.grad_samples == 3 * 2  # n_r samples × C classes
    emp_var = draws.var(0)
    assert torch.all((emp_var / expected_var - 1).abs() < 0.2), (emp_var, expected_var)
    assert torch.all(draws.mean(0).abs() < 5 * (expected_var / 1000).sqrt())
    assert abs(float(torch.corrcoef(draws.T)[0, 1])) < 0.15  # independent coordinates


def test_fisher_forgetting_variance_rule_and_zero_fisher_guard():
    # a 2×2 head: one row's second input is never active (zero Fisher), a bias, and a hidden layer
    F_head = torch.tensor([[4.0, 0.0], [0.5, 2e-3]])
    F_bias = torch.tensor([0.0, 1.0])
    F_hidden = torch.tensor([[1e-6, 0.25]])
    var, keep = scrub_variance([F_hidden, F_head, F_bias], [False, True, True], alpha=1e-3)
    torch.testing.assert_close(var[0], 1e-3 * torch.tensor([[(1e3 + 4.0) / 2] * 2]))  # cap 1e3, row mean
    head = torch.tensor([[(0.25 + 100.0) / 2] * 2, [(2.0 + 100.0) / 2] * 2])  # head cap 1e2, row mean
    torch.testing.assert_close(var[1], 1e-3 * 10 * head)
    torch.testing.assert_close(var[2], 1e-3 * 10 * torch.tensor([100.0, 1.0 / (1.0 + 1e-8)]))
    assert all(torch.isfinite(v).all() for v in var) and all(torch.equal(k, torch.ones_like(k)) for k in keep)
    # the paper's exponent: var ∝ F^{-1/2}
    var, _ = scrub_variance([F_bias], [False], alpha=1.0, power=0.5)
    torch.testing.assert_close(var[0], 10 * torch.tensor([1e3, (1.0 + 1e-8) ** -0.5]))
    # class reset: mean 0 and variance 1e-4·10 on the deleted class's head rows
    var, keep = scrub_variance([F_head], [True], alpha=1e-3, reset_classes=[1])
    assert keep[0].tolist() == [[1.0, 1.0], [0.0, 0.0]]
    torch.testing.assert_close(var[0][1], torch.full((2,), 1e-3))


def test_fisher_forgetting_end_to_end_guards_and_class_reset():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3)).double()
    assert head_mask(model, 3) == [False, False, True, True]
    with torch.no_grad():
        model[2].weight[2].fill_(100.0)  # class 2's row
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.0], [2.0, 0.0]], dtype=torch.float64)  # input 2 dead
    y = torch.tensor([0, 1, 0, 2])
    request = request_of(x, y, np.array([3]), np.array([0, 1, 2]), 3)  # class 2 fully deleted
    ctx = context()
    out = get_unlearner("fisher_forgetting")(alpha=1e-6, fisher="empirical").unlearn(model, request, ctx)
    assert all(torch.isfinite(p).all() for p in out.parameters())
    assert ctx.info["fisher_zero"] >= 3 and ctx.info["n_reset_classes"] == 1
    assert float(out[2].weight[2].detach().abs().max()) < 0.2  # mean reset to 0, std √1e-3
    assert not out.training


# ----------------------------------------------------------------------------------------------------
# DELETE


def test_masked_teacher_target_by_hand():
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    y = torch.tensor([2, 0])
    p = masked_teacher_targets(z, y)
    e = np.e
    expected = torch.tensor(
        [[e / (e + e**2), e**2 / (e + e**2), 0.0], [0.0, 1 / (1 + e**5), e**5 / (1 + e**5)]]
    )
    torch.testing.assert_close(p, expected)
    p2 = masked_teacher_targets(z, y, temperature=2.0)
    torch.testing.assert_close(p2[0], torch.tensor([e**0.5 / (e**0.5 + e), e / (e**0.5 + e), 0.0]))
    # T²·mean KL(p ‖ softmax(s/T)), with 0·log 0 = 0
    s = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]])
    q = F.softmax(s / 2.0, dim=1)
    kl = [
        sum(float(p2[i, c] * (p2[i, c].log() - q[i, c].log())) for c in range(3) if p2[i, c] > 0)
        for i in range(2)
    ]
    torch.testing.assert_close(distillation_loss(s, p2, 2.0), torch.tensor(4.0 * sum(kl) / 2))


def test_delete_erases_a_class_and_keeps_the_others():
    digits = load_digits()
    x = torch.tensor(digits.data[:600] / 16.0, dtype=torch.float32)
    x = (x - x.mean()) / x.std()  # normalised, as the suite's inputs
    y = torch.tensor(digits.target[:600])
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    recipe = TrainRecipe(epochs=30, batch_size=64, lr=3e-3, weight_decay=5e-4)
    train_model(model, x, y, recipe, seed=0)
    forget = np.where(y.numpy() == 3)[0]
    retain = np.setdiff1d(np.arange(600), forget)
    assert evaluate_accuracy(model, x[forget], y[forget]) > 0.95
    ctx = Context(seed=0, recipe=recipe, make_model=lambda s: nn.Identity(), n_train=600)
    out = get_unlearner("delete")(lr_scale=1.0).unlearn(model, request_of(x, y, forget, retain, 10), ctx)
    assert evaluate_accuracy(out, x[forget], y[forget]) < 0.1
    assert evaluate_accuracy(out, x[retain], y[retain]) > 0.95
    assert ctx.counters.grad_samples == 20 * len(forget) and not out.training
    assert ctx.counters.fwd_samples == 20 * len(forget)  # the teacher's logits on the same samples


# ----------------------------------------------------------------------------------------------------
# configurations beyond test_params, registry (tests/unit/test_conformance_builtins.py runs every
# conformance check on every method at its test_params)

OTHER_CONFIGS = [
    ("influence", {"mode": "woodfisher"}),
    ("ssd", {"importance": "batch"}),
    ("delete", {"retain_weight": 1.0}),
]


@pytest.mark.parametrize(("name", "extra"), OTHER_CONFIGS, ids=[n for n, _ in OTHER_CONFIGS])
@pytest.mark.parametrize("check_name", ["finite_weights", "deterministic", "request_unchanged"])
def test_other_configurations_conform(name, extra, check_name):
    check(name, check_name, extra)


@pytest.mark.parametrize(("name", "extra"), [(m, {}) for m in METHODS] + OTHER_CONFIGS)
def test_eval_mode_and_seed_dependence(name, extra):
    x, y = tiny_data(n=40, d_in=5, k=3, seed=2)
    forget, retain = np.arange(0, 40, 5), np.setdiff1d(np.arange(40), np.arange(0, 40, 5))
    cls = get_unlearner(name)

    def run(seed: int) -> torch.Tensor:
        model = tiny_mlp(seed=0, d_in=5, hidden=6, k=3)
        ctx = context(seed=seed, batch_size=4)
        out = cls(**{**cls.test_params, **extra}).unlearn(model, request_of(x, y, forget, retain, 3), ctx)
        assert not out.training
        return flat_params(out)

    a = run(0)
    if name == "fisher_forgetting" or extra.get("mode") == "woodfisher":  # the methods that draw noise
        assert not torch.equal(a, run(1))


def test_registry_grids_and_test_params():
    for name in METHODS:
        cls = get_unlearner(name)
        defaults = cls().hparams
        assert defaults == {k: v[0] for k, v in cls.params.items()}
        assert sum(1 for _ in cls.grid()) <= 3
    # the declared space rejects a bad value at construction, before any work
    with pytest.raises(ValueError, match=r"^influence\.mode: got 'lissa'; allowed: one of 'cg', 'woodf"):
        get_unlearner("influence")(mode="lissa")


def test_ssd_full_data_is_the_original_set_class_sorted_with_this_request_last():
    from benchmark.unlearners.ssd import full_data

    y = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0])
    x = torch.arange(8, dtype=torch.float32)[:, None]

    def v(i):
        i = torch.tensor(i)
        return DataView(x[i], y[i], i)

    req = Request(2, v([3, 5]), v([1, 3, 5]), v([0, 2, 4, 6, 7]), 3)
    xs, ys = full_data(req, "original", "class_sorted")
    # retain {0,2,4,6,7} then earlier-deleted {1}, stably sorted by label, then this request's {3, 5}
    assert xs[:, 0].tolist() == [7, 1, 2, 6, 0, 4, 3, 5]
    assert ys.tolist() == [0, 0, 1, 1, 2, 2, 0, 1]
    xs, _ = full_data(req, "current", "given")
    assert xs[:, 0].tolist() == [0, 2, 4, 6, 7, 3, 5]
    with pytest.raises(ValueError):
        full_data(req, "everything", "given")
