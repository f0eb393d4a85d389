"""The cubic subproblem solver (benchmark.curvature.cubic): optimality conditions and brute-force global
optimality of  m(Δ) = gᵀΔ + ½ΔᵀHΔ + (L/6)‖Δ‖³  (Nesterov & Polyak 2006, Thm. 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from benchmark.curvature import (
    CubicStep,
    cubic_model,
    damped_newton_step,
    newton_pinv_step,
    solve_cubic,
    solve_cubic_eig,
)

D = 6
F64 = torch.float64


def _orth(d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    return Q


def _sym(lams, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    lams = torch.as_tensor(lams, dtype=F64)
    Q = _orth(len(lams), seed)
    H = Q @ torch.diag(lams) @ Q.T
    return 0.5 * (H + H.T), Q


def _case(kind: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(H, g, Q) with H = Q diag(λ) Qᵀ (λ in the order given below)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    g = torch.randn(D, generator=gen, dtype=F64)
    if kind == "indefinite":
        lams = 2.0 * torch.randn(D, generator=gen, dtype=F64)
        lams[0] = -abs(float(lams[0])) - 0.5
    elif kind == "pd":
        lams = 0.1 + 3.0 * torch.rand(D, generator=gen, dtype=F64)
    elif kind == "psd_singular":
        lams = torch.tensor([0.0, 0.0, 0.5, 1.0, 2.0, 4.0], dtype=F64)
    elif kind == "neg_def":
        lams = -0.1 - 3.0 * torch.rand(D, generator=gen, dtype=F64)
    elif kind == "zero":
        lams = torch.zeros(D, dtype=F64)
    elif kind == "double_min":  # degenerate λ_min, g has weight on it
        lams = torch.tensor([-2.0, -2.0, 0.5, 1.0, 3.0, 5.0], dtype=F64)
    elif kind == "tiny_scale":
        lams, g = 1e-6 * torch.randn(D, generator=gen, dtype=F64), 1e-7 * g
    elif kind == "large_scale":
        lams, g = 1e4 * torch.randn(D, generator=gen, dtype=F64), 1e5 * g
    else:
        raise KeyError(kind)
    H, Q = _sym(lams, seed)
    return H, g, Q


def _hard_case(mult: int, seed: int, g_scale: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """λ_min = −2 with multiplicity ``mult``; g orthogonal to its eigenspace and small."""
    lams = [-2.0] * mult + [0.5, 1.0, 3.0, 5.0, 7.0][: D - mult]
    H, Q = _sym(lams, seed)
    gen = torch.Generator().manual_seed(2000 + seed)
    coef = torch.randn(D - mult, generator=gen, dtype=F64)
    g = Q[:, mult:] @ (g_scale * coef / coef.norm())
    return H, g, Q


def _kkt(H: torch.Tensor, g: torch.Tensor, L: float, res: CubicStep) -> None:
    """Global optimality conditions: (H + (L/2)‖Δ‖ I)Δ = −g and H + (L/2)‖Δ‖ I ⪰ 0."""
    step = res.step.to(F64)
    alpha = float(step.norm())
    assert res.alpha == pytest.approx(alpha, rel=1e-12, abs=1e-300)
    assert res.shift == pytest.approx(L * alpha / 2, rel=1e-12, abs=1e-300)
    hnorm = float(torch.linalg.matrix_norm(H, 2))
    scale = float(g.norm()) + hnorm * alpha + L * alpha**2
    eye = torch.eye(len(g), dtype=F64)
    resid = (H + 0.5 * L * alpha * eye) @ step + g
    assert float(resid.norm()) <= 1e-8 * scale
    lam_min = float(torch.linalg.eigvalsh(H + 0.5 * L * alpha * eye).min())
    assert lam_min >= -1e-8 * (hnorm + L * alpha)
    m = cubic_model(g, H, res.step, L)
    assert res.model_decrease >= 0.0
    assert res.model_decrease == pytest.approx(-m, rel=1e-10, abs=1e-12 * scale * max(alpha, 1e-300))


def _m_np(H: np.ndarray, g: np.ndarray, L: float):
    def fun(z):
        n = np.linalg.norm(z)
        Hz = H @ z
        return g @ z + 0.5 * z @ Hz + L / 6 * n**3, g + Hz + 0.5 * L * n * z

    return fun


def _brute_force_min(H: torch.Tensor, g: torch.Tensor, L: float, seed: int) -> float:
    """Best model value found by BFGS from 50 random starts, random points and Adam runs."""
    Hn, gn = H.numpy(), g.numpy()
    fun = _m_np(Hn, gn, L)
    rng = np.random.default_rng(seed)
    hnorm = float(np.linalg.norm(Hn, 2))
    radius = (hnorm + math.sqrt(hnorm**2 + 2 * L * float(np.linalg.norm(gn)))) / L  # bound on ‖Δ*‖
    best = 0.0
    for k in range(50):
        z0 = rng.standard_normal(len(gn))
        z0 *= radius * (0.05 + 2.0 * k / 50) / np.linalg.norm(z0)
        out = minimize(fun, z0, jac=True, method="BFGS", options={"gtol": 1e-12, "maxiter": 2000})
        best = min(best, float(out.fun))
    pts = rng.standard_normal((2000, len(gn))) * rng.uniform(0, 2 * radius, (2000, 1)) / math.sqrt(len(gn))
    vals = pts @ gn + 0.5 * np.einsum("ij,jk,ik->i", pts, Hn, pts) + L / 6 * np.linalg.norm(pts, axis=1) ** 3
    best = min(best, float(vals.min()))
    for _ in range(3):
        z = torch.tensor(rng.standard_normal(len(gn)) * radius / 2, dtype=F64, requires_grad=True)
        opt = torch.optim.Adam([z], lr=0.02 * radius)
        for _ in range(300):
            opt.zero_grad()
            loss = g @ z + 0.5 * z @ (H @ z) + L / 6 * z.norm() ** 3
            loss.backward()
            opt.step()
        best = min(best, cubic_model(g, H, z.detach(), L))
    return best


KINDS = ["indefinite", "pd", "psd_singular", "neg_def", "zero", "double_min", "tiny_scale", "large_scale"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("L", [0.3, 1.0, 5.0])
def test_optimality_conditions(kind, L):
    for seed in range(3):
        H, g, _ = _case(kind, seed)
        res = solve_cubic(H, g, L)
        _kkt(H, g, L, res)
        assert not res.hard_case
        assert res.step.dtype == F64 and res.step.shape == g.shape


@pytest.mark.parametrize("kind", ["indefinite", "pd", "psd_singular", "neg_def", "double_min"])
@pytest.mark.parametrize("L", [0.3, 3.0])
def test_global_optimality_by_brute_force(kind, L):
    H, g, _ = _case(kind, 7)
    res = solve_cubic(H, g, L)
    ours = cubic_model(g, H, res.step, L)
    best = _brute_force_min(H, g, L, seed=11)
    assert ours <= best + 1e-9 * max(1.0, abs(best))
    assert best <= ours + 1e-6 * max(1.0, abs(ours))  # the search is good enough to have teeth
    if kind in ("indefinite", "neg_def", "double_min"):  # the plain Newton step is a worse stationary point
        lam, U = torch.linalg.eigh(H)
        assert cubic_model(g, H, newton_pinv_step(lam, U, g), L) > ours + 1e-6


@pytest.mark.parametrize("mult", [1, 2])
@pytest.mark.parametrize("L", [0.3, 1.0, 5.0])
def test_hard_case(mult, L):
    H, g, Q = _hard_case(mult, seed=mult)
    res = solve_cubic(H, g, L)
    assert res.hard_case
    _kkt(H, g, L, res)
    assert res.shift == pytest.approx(2.0, rel=1e-9)  # γ = −λ_min
    assert res.alpha == pytest.approx(2 * 2.0 / L, rel=1e-9)
    E = Q[:, :mult]
    on_E = float((E.T @ res.step).norm())
    assert on_E > 0.1 * res.alpha  # the τ·u_min component
    best = _brute_force_min(H, g, L, seed=mult)
    assert cubic_model(g, H, res.step, L) <= best + 1e-9 * max(1.0, abs(best))


@pytest.mark.parametrize("mult", [1, 2, 3])
def test_hard_case_exact_zeros(mult):
    """Diagonal H: g is exactly zero on the λ_min eigenspace (the closed-form branch of the solver)."""
    L = 0.5
    lams = torch.tensor([-1.5] * mult + [0.5, 1.0, 3.0, 5.0, 7.0][: D - mult], dtype=F64)
    H = torch.diag(lams)
    g = torch.zeros(D, dtype=F64)
    g[mult:] = torch.linspace(0.1, 0.3, D - mult, dtype=F64)
    res = solve_cubic(H, g, L)
    assert res.hard_case
    _kkt(H, g, L, res)
    assert res.alpha == pytest.approx(2 * 1.5 / L, rel=1e-12)
    assert float(res.step[:mult].norm()) > 0.5 * res.alpha
    best = _brute_force_min(H, g, L, seed=mult)
    assert cubic_model(g, H, res.step, L) <= best + 1e-9 * max(1.0, abs(best))


@pytest.mark.parametrize("eps", [1e-2, 1e-5, 1e-8, 1e-11, 1e-14])
def test_nearly_hard_case_is_continuous(eps):
    L = 1.0
    H, g, Q = _hard_case(1, seed=5)
    exact = solve_cubic(H, g, L)
    res = solve_cubic(H, g + eps * Q[:, 0], L)
    _kkt(H, g + eps * Q[:, 0], L, res)
    assert float(Q[:, 0] @ res.step) < 0  # the E component points against g's (tiny) component on E
    assert res.alpha == pytest.approx(exact.alpha, rel=10 * eps)
    assert res.model_decrease == pytest.approx(exact.model_decrease, rel=10 * eps)


def test_zero_gradient():
    L = 2.0
    H, _, Q = _hard_case(2, seed=3)
    g = torch.zeros(D, dtype=F64)
    res = solve_cubic(H, g, L)
    assert res.hard_case
    assert res.alpha == pytest.approx(2 * 2.0 / L, rel=1e-12)
    assert float((Q[:, :2].T @ res.step).norm()) == pytest.approx(res.alpha, rel=1e-10)  # along E
    _kkt(H, g, L, res)
    assert res.model_decrease == pytest.approx(-(0.5 * -2.0 * res.alpha**2 + L / 6 * res.alpha**3))
    Hpsd, _ = _sym([0.0, 0.5, 1.0, 2.0, 3.0, 4.0], seed=4)
    res = solve_cubic(Hpsd, g, L)
    assert not res.hard_case and res.alpha == 0.0 and res.model_decrease == 0.0
    assert torch.count_nonzero(res.step) == 0


def test_limits_in_L():
    H, g, _ = _case("indefinite", 1)
    hnorm = float(torch.linalg.matrix_norm(H, 2))
    alphas = []
    for L in 10.0 ** np.arange(-2, 11):
        res = solve_cubic(H, g, float(L))
        alphas.append(res.alpha)
        assert res.alpha <= (hnorm + math.sqrt(hnorm**2 + 2 * L * float(g.norm()))) / L * (1 + 1e-12)
    assert all(a > b for a, b in zip(alphas, alphas[1:], strict=False))
    assert alphas[-1] < 1e-4  # L → ∞: Δ → 0
    Hpd, gpd, _ = _case("pd", 2)
    newton = -torch.linalg.solve(Hpd, gpd)
    for L, tol in [(1e-4, 1e-2), (1e-8, 1e-6)]:
        res = solve_cubic(Hpd, gpd, L)
        assert float((res.step - newton).norm() / newton.norm()) < tol  # L → 0: Δ → −H⁻¹g
        assert res.shift < tol


def test_solve_eig_interface():
    H, g, Q = _case("indefinite", 4)
    lam, U = torch.linalg.eigh(H)
    ref = solve_cubic(H, g, 1.0)
    res = solve_cubic_eig(lam, U, g, 1.0)
    assert torch.allclose(res.step, ref.step, rtol=0, atol=1e-13)
    perm = torch.randperm(D, generator=torch.Generator().manual_seed(0))  # unsorted eigenpairs are fine
    res = solve_cubic_eig(lam[perm], U[:, perm], g, 1.0)
    assert torch.allclose(res.step, ref.step, rtol=0, atol=1e-13)
    res32 = solve_cubic(H.float(), g.float(), 1.0)  # float64 inside, g's dtype out
    assert res32.step.dtype == torch.float32
    assert torch.allclose(res32.step.double(), ref.step, atol=1e-5)
    assert cubic_model(g, lambda v: H @ v, ref.step, 1.0) == pytest.approx(cubic_model(g, H, ref.step, 1.0))
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            solve_cubic(H, g, bad)


def test_larger_random_problems():
    for seed in range(5):
        d = 40
        gen = torch.Generator().manual_seed(seed)
        A = torch.randn(d, d, generator=gen, dtype=F64)
        H = 0.5 * (A + A.T)
        g = torch.randn(d, generator=gen, dtype=F64) * 10.0 ** (seed - 2)
        for L in (0.01, 1.0, 100.0):
            _kkt(H, g, L, solve_cubic(H, g, L))


def test_newton_pinv_step():
    H, Q = _sym([0.0, 0.0, 1.0, 2.0, -3.0, 4.0], seed=8)
    g = torch.randn(D, dtype=F64, generator=torch.Generator().manual_seed(1))
    lam, U = torch.linalg.eigh(H)
    ref = -torch.linalg.pinv(H, hermitian=True, rtol=1e-10) @ g
    assert torch.allclose(newton_pinv_step(lam, U, g), ref, rtol=0, atol=1e-12)
    Hpd, gpd, _ = _case("pd", 0)
    lam, U = torch.linalg.eigh(Hpd)
    assert torch.allclose(newton_pinv_step(lam, U, gpd), -torch.linalg.solve(Hpd, gpd), rtol=0, atol=1e-12)
    assert newton_pinv_step(lam, U, gpd.float()).dtype == torch.float32


def test_damped_newton_step():
    H, g, _ = _case("indefinite", 0)
    lam, U = torch.linalg.eigh(H)
    for gamma in (0.0, 0.7, 5.0):
        ref = torch.linalg.solve(H + gamma * torch.eye(D, dtype=F64), -g)
        assert torch.allclose(damped_newton_step(lam, U, g, gamma), ref, rtol=1e-10, atol=1e-12)
