"""Second-order plumbing (benchmark.curvature.functional) against independent brute-force references."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.curvature import (
    FlatLoss,
    flat_params,
    gradient,
    hessian,
    hvp,
    load_flat_params_,
    loss_value,
    make_hvp,
    make_loss_fn,
    make_subsampled_loss_fn,
    num_params,
    value_and_gradient,
)
from benchmark.unlearners.base import Counters

WD = 1e-3
N = 20


def _mlp(dtype: torch.dtype = torch.float64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).to(dtype)


def _data(dtype: torch.dtype = torch.float64, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, 3, generator=gen, dtype=dtype), torch.randint(0, 3, (N,), generator=gen)


def _ref_loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The 3-4-3 tanh MLP written out by hand (independent of functional_call and of the flattening code)."""
    W1, b1 = w[:12].reshape(4, 3), w[12:16]
    W2, b2 = w[16:28].reshape(3, 4), w[28:31]
    logits = torch.tanh(x @ W1.T + b1) @ W2.T + b2
    logp = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    return -logp[torch.arange(len(y)), y].mean() + 0.5 * WD * (w * w).sum()


@pytest.fixture
def setup():
    model = _mlp()
    x, y = _data()
    w = flat_params(model) + 0.3 * torch.randn(num_params(model), dtype=torch.float64)  # off the init
    return model, x, y, w


def _model_grad(
    model: nn.Module, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, wd: float
) -> torch.Tensor:
    """∇f(w) through the real module and plain autograd (reference for gradient and for FD Hessians)."""
    m = copy.deepcopy(model)
    load_flat_params_(m, w)
    params = [p for p in m.parameters() if p.requires_grad]
    loss = F.cross_entropy(m(x), y) + 0.5 * wd * sum((p * p).sum() for p in params)
    grads = torch.autograd.grad(loss, params)
    return torch.cat([gr.reshape(-1) for gr in grads])


# --------------------------------------------------------------------------------------------- flat params


def test_flat_params_round_trip():
    model = _mlp()
    model[0].bias.requires_grad_(False)  # frozen parameters are not part of w
    assert num_params(model) == 31 - 4
    w = flat_params(model)
    assert w.shape == (27,) and not w.requires_grad
    assert torch.equal(w[:12], model[0].weight.detach().reshape(-1))
    frozen = model[0].bias.detach().clone()
    new = torch.randn(27, dtype=torch.float64)
    assert load_flat_params_(model, new) is model
    assert torch.equal(flat_params(model), new)
    assert torch.equal(model[0].bias, frozen)
    assert torch.equal(model[2].weight.detach().reshape(-1), new[12:24])
    with pytest.raises(ValueError):
        load_flat_params_(model, torch.zeros(26, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- loss


def test_loss_matches_reference(setup):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    assert isinstance(f, FlatLoss) and f.n_samples == N and f.dim == 31
    assert torch.allclose(f(w), _ref_loss(w, x, y), rtol=0, atol=1e-14)


def test_float64_w_on_float32_model():
    model32 = _mlp(torch.float32)
    x32, y = _data(torch.float32)
    w32 = flat_params(model32)
    f = make_loss_fn(model32, x32, y, weight_decay=WD)
    loss64 = f(w32.double())
    loss32 = f(w32)
    assert loss64.dtype == torch.float64 and loss32.dtype == torch.float32
    assert abs(float(loss64) - float(loss32)) < 1e-6
    # the float64 evaluation is exact float64 arithmetic: equal to the float64 model on float64 data
    model64 = copy.deepcopy(model32).double()
    f64 = make_loss_fn(model64, x32.double(), y, weight_decay=WD)
    w64 = w32.double() + 0.1
    assert torch.allclose(f(w64), f64(w64), rtol=0, atol=1e-15)
    assert torch.allclose(hessian(f, w64), hessian(f64, w64), rtol=0, atol=1e-13)
    # a fresh loss transformed directly by torch.func with an uncached dtype also works
    g = torch.func.grad(make_loss_fn(model32, x32, y, weight_decay=WD))(w64)
    assert torch.allclose(g, gradient(f64, w64), rtol=0, atol=1e-13)


def _bn_model() -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)).double()
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(2.0 * torch.randn(16, 3, dtype=torch.float64) + 1.0)
    return model.eval()


def test_batchnorm_eval_uses_buffers():
    model = _bn_model()
    x, y = _data()
    w = flat_params(model)
    f = make_loss_fn(model, x, y, weight_decay=WD)
    expected = F.cross_entropy(model(x), y) + 0.5 * WD * (w * w).sum()
    assert torch.allclose(f(w), expected.detach(), rtol=0, atol=1e-14)
    fresh = copy.deepcopy(model)
    fresh[1].reset_running_stats()
    assert abs(float(make_loss_fn(fresh, x, y, WD)(w)) - float(f(w))) > 1e-3  # the buffers matter
    # snapshot: a later BatchNorm update of the model does not change the loss
    before = f(w)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, dtype=torch.float64))
    model.eval()
    assert torch.equal(f(w), before)
    # curvature through BatchNorm against finite differences of the autograd gradient of the module
    ref = _bn_model()  # the model as it was when f was made
    H = hessian(f, w, rows_per_batch=5)
    assert torch.allclose(gradient(f, w), _model_grad(ref, w, x, y, WD), rtol=0, atol=1e-13)
    h = 1e-5
    eye = torch.eye(w.numel(), dtype=torch.float64)
    fd = torch.stack(
        [
            (_model_grad(ref, w + h * e, x, y, WD) - _model_grad(ref, w - h * e, x, y, WD)) / (2 * h)
            for e in eye
        ]
    )
    assert torch.allclose(H, 0.5 * (fd + fd.T), rtol=0, atol=1e-8)
    v = torch.randn_like(w)
    for mode in ("rev_rev", "fwd_rev"):
        assert torch.allclose(hvp(f, w, v, mode=mode), H @ v, rtol=0, atol=1e-12)


def test_training_mode_warns():
    model = _bn_model().train()
    x, y = _data()
    with pytest.warns(UserWarning, match="eval"):
        make_loss_fn(model, x, y)


# --------------------------------------------------------------------------------------------- derivatives


def test_hessian_matches_brute_force(setup):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    H = hessian(f, w, rows_per_batch=7)  # 31 = 4·7 + 3: a ragged last batch
    H_ref = torch.autograd.functional.hessian(lambda v: _ref_loss(v, x, y), w)
    assert H.shape == (31, 31) and H.dtype == torch.float64
    assert torch.equal(H, H.T)
    assert torch.allclose(H, H_ref, rtol=0, atol=1e-8)
    assert (H - H_ref).abs().max() < 1e-12  # both exact
    # and against central finite differences of the autograd gradient of the real module
    h = 1e-5
    fd = torch.stack(
        [
            (_model_grad(model, w + h * e, x, y, WD) - _model_grad(model, w - h * e, x, y, WD)) / (2 * h)
            for e in torch.eye(31, dtype=torch.float64)
        ]
    )
    assert torch.allclose(H, fd, rtol=0, atol=1e-8)
    assert torch.allclose(hessian(f, w, rows_per_batch=256), H, rtol=0, atol=1e-14)


def test_hessian_chunk_size_is_a_deprecated_alias_of_rows_per_batch(setup):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    with pytest.warns(DeprecationWarning, match="rows_per_batch"):
        H_old = hessian(f, w, chunk_size=7)
    assert torch.equal(H_old, hessian(f, w, rows_per_batch=7))
    with pytest.raises(ValueError, match="rows_per_batch"):
        hessian(f, w, rows_per_batch=0)


def test_gradient_matches_autograd(setup):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    g = gradient(f, w)
    w_ = w.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(_ref_loss(w_, x, y), w_)
    assert g.dtype == torch.float64 and not g.requires_grad
    assert torch.allclose(g, g_ref, rtol=0, atol=1e-14)
    assert torch.allclose(g, _model_grad(model, w, x, y, WD), rtol=0, atol=1e-14)


@pytest.mark.parametrize("mode", ["rev_rev", "fwd_rev"])
def test_hvp_modes_equal_H_v(setup, mode):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    H = torch.autograd.functional.hessian(lambda v: _ref_loss(v, x, y), w)
    op = make_hvp(f, w, mode=mode)
    for seed in range(3):
        v = torch.randn(31, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(hvp(f, w, v, mode=mode), H @ v, rtol=0, atol=1e-12)
        assert torch.allclose(op(v), H @ v, rtol=0, atol=1e-12)
    V = torch.randn(5, 31, dtype=torch.float64)
    assert torch.allclose(torch.func.vmap(op)(V), V @ H, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        hvp(f, w, V[0], mode="fwd_fwd")


def test_chunked_loss_is_the_same_function(setup):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    fc = make_loss_fn(model, x, y, weight_decay=WD, chunk_size=6)  # chunks 6, 6, 6, 2
    assert len(fc.parts()) == 4
    v = torch.randn(31, dtype=torch.float64)
    assert torch.allclose(fc(w), f(w), rtol=0, atol=1e-14)
    assert torch.allclose(gradient(fc, w), gradient(f, w), rtol=0, atol=1e-14)
    H = hessian(f, w)
    assert torch.allclose(hessian(fc, w, rows_per_batch=10), H, rtol=0, atol=1e-13)
    for mode in ("rev_rev", "fwd_rev"):
        assert torch.allclose(hvp(fc, w, v, mode=mode), H @ v, rtol=0, atol=1e-13)
        assert torch.allclose(make_hvp(fc, w, mode=mode)(v), H @ v, rtol=0, atol=1e-13)


def test_counters(setup):
    model, x, y, w = setup
    f = make_loss_fn(model, x, y, weight_decay=WD)
    c = Counters()
    v = torch.randn(31, dtype=torch.float64)
    gradient(f, w, counter=c)
    assert c.as_dict() == {"grad_samples": N, "fwd_samples": 0, "hvps": 0, "hvp_samples": 0, "hessians": 0}
    hvp(f, w, v, counter=c)
    hvp(f, w, v, counter=c, mode="fwd_rev")
    assert c.as_dict() == dict(grad_samples=N, fwd_samples=0, hvps=2, hvp_samples=2 * N, hessians=0)
    op = make_hvp(f, w, counter=c)
    op(v)
    op(v)
    assert (c.hvps, c.hvp_samples) == (4, 4 * N)
    c.reset()
    hessian(f, w, counter=c)
    assert c.as_dict() == dict(grad_samples=0, fwd_samples=0, hvps=31, hvp_samples=31 * N, hessians=1)
    # a loss value alone is a forward pass; with the gradient it comes free
    c.reset()
    value, g = value_and_gradient(f, w, counter=c)
    assert value == pytest.approx(float(f(w)), rel=1e-14) and torch.allclose(g, gradient(f, w), atol=1e-14)
    assert loss_value(f, w, counter=c) == pytest.approx(value, rel=1e-14)
    assert loss_value(f, w, dtype=torch.float32) == pytest.approx(value, rel=1e-5)
    assert (c.grad_samples, c.fwd_samples) == (N, N)
    # counter=None is the default everywhere; a plain callable without n_samples counts 0 samples
    c.reset()
    gradient(lambda u: (u * u).sum(), w, counter=c)
    assert c.grad_samples == 0
    assert torch.allclose(hvp(lambda u: (u**3).sum(), w, v), 6 * w * v, rtol=0, atol=1e-14)


def test_subsampled_loss_is_the_loss_of_the_drawn_rows(setup):
    model, x, y, w = setup
    n = len(y)
    gen = torch.Generator().manual_seed(3)
    f = make_subsampled_loss_fn(model, x, y, 7, gen, weight_decay=WD)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(3))[:7]
    assert f.n_samples == 7
    expected = float(make_loss_fn(model, x[idx], y[idx], weight_decay=WD)(w))
    assert float(f(w)) == pytest.approx(expected, rel=1e-14)
    for size in (None, n, n + 5):  # all rows, and nothing drawn from the generator
        gen = torch.Generator().manual_seed(3)
        state = gen.get_state()
        f_all = make_subsampled_loss_fn(model, x, y, size, gen, weight_decay=WD)
        assert f_all.n_samples == n and torch.equal(gen.get_state(), state)
        expected = float(make_loss_fn(model, x, y, weight_decay=WD)(w))
        assert float(f_all(w)) == pytest.approx(expected, rel=1e-14)
