"""Lanczos with full re-orthogonalisation and the Krylov solver of the cubic subproblem
(benchmark.curvature.lanczos), against dense eigendecompositions and the exact solver."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.curvature import cubic_model, krylov_cubic_step, krylov_subproblem, solve_cubic
from benchmark.curvature.lanczos import lanczos

F64 = torch.float64


def _sym_from_eigs(lams, seed: int) -> torch.Tensor:
    lams = torch.as_tensor(lams, dtype=F64)
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(lams), len(lams), generator=gen, dtype=F64))
    H = Q @ torch.diag(lams) @ Q.T
    return 0.5 * (H + H.T)


def _counting(H: torch.Tensor):
    calls = []

    def hvp(v):
        calls.append(1)
        return H @ v

    return hvp, calls


def test_full_lanczos_reproduces_the_spectrum():
    d = 30
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(d, d, generator=gen, dtype=F64)
    H = 0.5 * (A + A.T)
    v0 = torch.randn(d, generator=gen, dtype=F64)
    hvp, calls = _counting(H)
    res = lanczos(hvp, v0, d)
    assert len(calls) == d and res.k == d and not res.breakdown
    assert res.Q.shape == (d, d)
    assert torch.allclose(res.Q.T @ res.Q, torch.eye(d, dtype=F64), rtol=0, atol=1e-12)
    assert torch.allclose(res.Q[:, 0], v0 / v0.norm(), rtol=0, atol=1e-15)
    T = res.T()
    assert torch.allclose(res.Q.T @ H @ res.Q, T, rtol=0, atol=1e-10)  # T = QᵀHQ, tridiagonal
    theta, _ = res.ritz()
    assert torch.allclose(theta, torch.linalg.eigvalsh(H), rtol=0, atol=1e-8)


def test_partial_lanczos_relation_and_extreme_ritz_values():
    d, k = 200, 12
    gen = torch.Generator().manual_seed(1)
    lams = torch.rand(d, generator=gen, dtype=F64)  # bulk in [0, 1] ...
    lams[-1], lams[0] = 10.0, -3.0  # ... with one spike on each side
    H = _sym_from_eigs(lams, seed=2)
    v0 = torch.randn(d, generator=gen, dtype=F64)
    hvp, calls = _counting(H)
    res = lanczos(hvp, v0, k)
    assert len(calls) == k and res.Q.shape == (d, k)  # O(d·k) basis, never d × d
    assert torch.allclose(res.Q.T @ res.Q, torch.eye(k, dtype=F64), rtol=0, atol=1e-12)
    # Lanczos relation H Q = Q T + β_k q_{k+1} e_kᵀ: the residual lives only in the last column
    R = H @ res.Q - res.Q @ res.T()
    assert float(R[:, :-1].norm()) < 1e-10
    assert float(R[:, -1].norm()) == pytest.approx(res.residual, rel=1e-8)
    theta, _ = res.ritz()
    assert float(theta[-1]) == pytest.approx(10.0, abs=1e-8)  # well separated: converged
    assert float(theta[0]) == pytest.approx(-3.0, abs=1e-8)
    assert -3.0 - 1e-12 <= float(theta[1]) and float(theta[-2]) <= 1.0 + 1e-12  # interlacing: inside the bulk
    # fewer steps, worse estimate: the error of the top Ritz value decreases with k
    errs = [10.0 - float(lanczos(lambda v: H @ v, v0, kk).ritz()[0][-1]) for kk in (2, 3, 4, 6)]
    assert all(e >= 0 for e in errs) and errs == sorted(errs, reverse=True) and errs[0] > 1e-3


def test_breakdown_on_an_invariant_subspace():
    d = 40
    lams = torch.tensor([1.0] * 20 + [2.0] * 10 + [5.0] * 10, dtype=F64)  # 3 distinct eigenvalues
    H = _sym_from_eigs(lams, seed=3)
    v0 = torch.randn(d, generator=torch.Generator().manual_seed(4), dtype=F64)
    hvp, calls = _counting(H)
    res = lanczos(hvp, v0, 10)
    assert res.breakdown and res.k == 3 and len(calls) == 3 and res.Q.shape == (d, 3)
    assert torch.allclose(res.ritz()[0], torch.tensor([1.0, 2.0, 5.0], dtype=F64), atol=1e-10)


def test_lanczos_arguments():
    H = _sym_from_eigs([1.0, 2.0, 3.0], seed=0)
    with pytest.raises(ValueError):
        lanczos(lambda v: H @ v, torch.zeros(3, dtype=F64), 2)
    with pytest.raises(ValueError):
        lanczos(lambda v: H @ v, torch.ones(3, dtype=F64), 0)
    assert lanczos(lambda v: H @ v, torch.ones(3, dtype=F64), 10).k <= 3  # k capped at d
    res32 = lanczos(lambda v: (H @ v.double()).float(), torch.ones(3), 3)  # basis in v0's dtype
    assert res32.Q.dtype == torch.float32 and res32.alpha.dtype == F64


def _problem(kind: str, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + seed)
    if kind == "pd":
        lams = 0.05 + 3.0 * torch.rand(d, generator=gen, dtype=F64)
    else:  # indefinite, g with a component on the λ_min eigenvector
        lams = 2.0 * torch.randn(d, generator=gen, dtype=F64)
        lams[0] = -abs(float(lams[0])) - 1.0
    lams, _ = torch.sort(lams)
    H = _sym_from_eigs(lams, seed=seed)
    g = torch.randn(d, generator=gen, dtype=F64)
    U = torch.linalg.eigh(H).eigenvectors
    assert abs(float(U[:, 0] @ g)) > 1e-2  # easy case
    return H, g


@pytest.mark.parametrize("kind", ["pd", "indefinite"])
@pytest.mark.parametrize("L", [0.2, 1.0, 10.0])
def test_krylov_step_with_k_equal_d_is_the_exact_step(kind, L):
    d = 30
    H, g = _problem(kind, d, seed=5)
    exact = solve_cubic(H, g, L)
    hvp, calls = _counting(H)
    res = krylov_cubic_step(hvp, g, L, k=d)
    assert len(calls) <= d
    assert torch.allclose(res.step, exact.step, rtol=0, atol=1e-8 * max(1.0, exact.alpha))
    assert res.alpha == pytest.approx(exact.alpha, rel=1e-8)
    assert res.shift == pytest.approx(exact.shift, rel=1e-8)
    assert res.model_decrease == pytest.approx(exact.model_decrease, rel=1e-8)
    assert res.model_decrease == pytest.approx(-cubic_model(g, H, res.step, L), rel=1e-8)
    assert res.step.dtype == F64 and res.step.shape == g.shape
    if kind == "indefinite":
        assert exact.shift > -float(torch.linalg.eigvalsh(H)[0])  # H + γI ⪰ 0 engaged the negative curvature


@pytest.mark.parametrize("kind", ["pd", "indefinite"])
def test_krylov_model_value_decreases_in_k(kind):
    d, L = 60, 0.5
    H, g = _problem(kind, d, seed=6)
    m_star = cubic_model(g, H, solve_cubic(H, g, L).step, L)
    values = []
    for k in (1, 2, 3, 5, 8, 12, 20, 30, 45, 60):
        sub = krylov_subproblem(lambda v: H @ v, g, k)
        step = sub.solve(L)
        m_k = cubic_model(g, H, step.step, L)
        assert m_k == pytest.approx(-step.model_decrease, rel=1e-9, abs=1e-12)  # reduced model = true model
        assert m_k >= m_star - 1e-10 * abs(m_star)  # never better than the global minimiser
        values.append(m_k)
    assert all(b <= a + 1e-10 * abs(a) for a, b in zip(values, values[1:], strict=False))  # nested spaces
    assert values[0] > m_star + 1e-3 * abs(m_star)  # k = 1 (a Cauchy-like step) is clearly worse
    assert values[-1] == pytest.approx(m_star, rel=1e-10)


def test_same_basis_many_L_and_no_extra_products():
    H, g = _problem("indefinite", 25, seed=7)
    hvp, calls = _counting(H)
    sub = krylov_subproblem(hvp, g, 25)
    n = len(calls)
    for L in (0.1, 1.0, 100.0):
        exact = solve_cubic(H, g, L)
        assert torch.allclose(sub.solve(L).step, exact.step, atol=1e-8 * max(1.0, exact.alpha))
    assert len(calls) == n  # re-solving reuses the Krylov basis


def test_hard_case_needs_a_perturbed_start():
    """g ⊥ eigenvector of λ_min < 0: the Krylov space from g never sees it; a random start does."""
    d, L, k = 20, 1.0, 12
    lams = torch.tensor([-2.0] + list(np.linspace(0.5, 4.0, d - 1)), dtype=F64)
    gen = torch.Generator().manual_seed(8)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    H = Q @ torch.diag(lams) @ Q.T
    H = 0.5 * (H + H.T)
    coef = torch.randn(d - 1, generator=gen, dtype=F64)
    g = Q[:, 1:] @ (0.3 * coef / coef.norm())
    exact = solve_cubic(H, g, L)
    assert exact.hard_case
    m_exact = cubic_model(g, H, exact.step, L)
    plain = krylov_cubic_step(lambda v: H @ v, g, L, k=k)
    assert abs(float(Q[:, 0] @ plain.step)) < 1e-10  # stuck in E^⊥
    assert cubic_model(g, H, plain.step, L) > m_exact + 1.0
    assert plain.shift < 2.0  # H + γI is not PSD: not a global minimiser of the full model
    pert = krylov_cubic_step(
        lambda v: H @ v, g, L, k=k, perturb=0.1, generator=torch.Generator().manual_seed(0)
    )
    assert cubic_model(g, H, pert.step, L) == pytest.approx(m_exact, rel=1e-4)
    assert pert.shift == pytest.approx(2.0, rel=1e-6)  # γ = −λ_min


def test_zero_gradient_and_float32_products():
    H, g = _problem("pd", 10, seed=9)
    zero = krylov_cubic_step(lambda v: H @ v, torch.zeros(10, dtype=F64), 1.0, k=5)
    assert zero.alpha == 0.0 and zero.model_decrease == 0.0 and torch.count_nonzero(zero.step) == 0
    # float32 gradient and products: the basis and the reduced problem are still float64
    res = krylov_cubic_step(lambda v: H.float() @ v.float(), g.float(), 1.0, k=10)
    ref = solve_cubic(H, g, 1.0)
    assert res.step.dtype == torch.float32
    assert torch.allclose(res.step.double(), ref.step, atol=1e-5)
