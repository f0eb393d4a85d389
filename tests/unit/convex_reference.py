"""Independent reference for the convex checks: L2-regularised softmax regression in plain numpy + scipy.

f(w) = (1/n) Σᵢ −log softmax(W xᵢ + b)_{yᵢ} + (wd/2)‖w‖²,  w = [vec(W), b] (torch ``nn.Linear`` order).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.optimize import minimize
from sklearn.datasets import load_digits


def logreg_objective(
    w: np.ndarray, x: np.ndarray, y: np.ndarray, k: int, wd: float
) -> tuple[float, np.ndarray]:
    """Loss and hand-written gradient of f."""
    d = x.shape[1]
    W, b = w[: k * d].reshape(k, d), w[k * d :]
    z = x @ W.T + b
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(p[np.arange(n), y]).mean() + wd / 2 * (w @ w)
    p[np.arange(n), y] -= 1
    gW, gb = p.T @ x / n, p.mean(axis=0)
    return loss, np.concatenate([gW.ravel(), gb]) + wd * w


def lbfgs_optimum(x: np.ndarray, y: np.ndarray, k: int, wd: float, w0: np.ndarray) -> np.ndarray:
    """argmin f by scipy's L-BFGS-B to gradient tolerance 1e-12."""
    opts = {"gtol": 1e-12, "ftol": 0, "maxiter": 5000}
    return minimize(logreg_objective, w0, args=(x, y, k, wd), jac=True, method="L-BFGS-B", options=opts).x


@dataclass(frozen=True)
class DigitsDeletion:
    """Softmax regression on the first n sklearn digits (pixels / 16), deleting every 8th sample."""

    x: np.ndarray
    y: np.ndarray
    k: int
    forget: np.ndarray
    retain: np.ndarray
    full: np.ndarray  # argmin of f over all n samples (L-BFGS from 0)
    target: np.ndarray  # argmin of f over the retain samples (L-BFGS from ``full``): what unlearning reaches


@cache
def digits_deletion(wd: float, n: int = 240) -> DigitsDeletion:
    """The convex unlearning problem the Newton-type methods are checked on (solved once per (wd, n);
    every caller shares the arrays: copy before modifying)."""
    digits = load_digits()
    x, y = digits.data[:n] / 16.0, digits.target[:n]
    k, d = 10, x.shape[1]
    full = lbfgs_optimum(x, y, k, wd, np.zeros(k * d + k))
    forget = np.arange(0, n, 8)
    retain = np.setdiff1d(np.arange(n), forget)
    target = lbfgs_optimum(x[retain], y[retain], k, wd, full)
    return DigitsDeletion(x, y, k, forget, retain, full, target)


@dataclass(frozen=True)
class SequentialDeletion:
    """Three sequential requests on the digits softmax regression: every 8th sample, then all of class 3,
    then every 8th sample from offset 4; ``targets[k]`` = argmin of f over D minus requests 1..k+1."""

    x: np.ndarray
    y: np.ndarray
    k: int
    full: np.ndarray
    requests: tuple[np.ndarray, ...]
    retains: tuple[np.ndarray, ...]
    targets: tuple[np.ndarray, ...]


@cache
def sequential_deletion(wd: float, n: int = 240) -> SequentialDeletion:
    base = digits_deletion(wd, n)
    idx = np.arange(n)
    requests = (idx[idx % 8 == 0], idx[(base.y == 3) & (idx % 8 != 0)], idx[(idx % 8 == 4) & (base.y != 3)])
    retains, targets = [], []
    gone = np.zeros(n, dtype=bool)
    w = base.full
    for req in requests:
        gone[req] = True
        retain = np.flatnonzero(~gone)
        w = lbfgs_optimum(base.x[retain], base.y[retain], base.k, wd, w)
        retains.append(retain)
        targets.append(w)
    return SequentialDeletion(base.x, base.y, base.k, base.full, requests, tuple(retains), tuple(targets))
