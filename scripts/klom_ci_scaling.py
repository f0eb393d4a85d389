"""How KLoM's confidence interval shrinks with the number of models per side (synthetic Gaussian margins).

Per example j, retrained margins ~ N(mu_j, 1) and "original-like" margins ~ N(mu_j + 2, 1) (shifted by
+2 sd); a per-model offset shared by all examples carries a fraction ``rho`` of the variance (real
networks' margins are correlated across examples within a model). For M models per side it prints

* ``orig``: mean KLoM of an original-like population vs retrains, ``floor``: of another retrain
  population vs retrains (same M), ``gap`` = orig - floor;
* ``hw``: the 95 % half-width from ``klom_summary`` (half-sampling, and the with-replacement bootstrap)
  and ``true hw`` = 1.96 x the standard deviation of the mean over fresh populations;
* ``hw/gap``: the pipeline should choose M with this under 0.10.

Usage: PYTHONPATH=. python scripts/klom_ci_scaling.py [--n 500] [--boot 200] [--redraws 30]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from benchmark.metrics.klom import klom, klom_summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--redraws", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    mu = rng.normal(0.0, 3.0, args.n)

    def pop(m: int, shift: float, rho: float) -> np.ndarray:
        common = rng.normal(0.0, 1.0, (m, 1)) * math.sqrt(rho)
        return mu + shift + common + rng.normal(0.0, 1.0, (m, args.n)) * math.sqrt(1.0 - rho)

    print(f"n = {args.n} examples, {args.boot} replicates, {args.redraws} fresh redraws for the true spread")
    head = "| rho | M/side | orig | floor | gap | hw half (orig) | hw boot (orig) | true hw (orig) "
    head += "| hw half (floor) | true hw (floor) | hw half/gap | true hw/gap | q95 hw half/q95 gap |"
    print(head)
    print("|" + "---|" * 13)
    for rho in (0.0, 0.2, 0.5):
        for m in (25, 50, 100):
            r = pop(m, 0.0, rho)
            o, f = pop(m, 2.0, rho), pop(m, 0.0, rho)
            so = klom_summary(o, r, n_boot=args.boot, seed=1, quantiles=(0.95,))
            sb = klom_summary(o, r, n_boot=args.boot, seed=1, quantiles=(), method="bootstrap")
            sf = klom_summary(f, r, n_boot=args.boot, seed=1, quantiles=(0.95,))
            true_o, true_f = [], []
            for _ in range(args.redraws):
                rr = pop(m, 0.0, rho)
                true_o.append(klom(pop(m, 2.0, rho), rr).mean())
                true_f.append(klom(pop(m, 0.0, rho), rr).mean())
            gap = float(np.mean(true_o) - np.mean(true_f))
            tho, thf = 1.96 * np.std(true_o, ddof=1), 1.96 * np.std(true_f, ddof=1)
            print(
                f"| {rho} | {m} | {np.mean(true_o):.3f} | {np.mean(true_f):.3f} | {gap:.3f} "
                f"| {so['mean_ci_half_width']:.3f} | {sb['mean_ci_half_width']:.3f} | {tho:.3f} "
                f"| {sf['mean_ci_half_width']:.3f} | {thf:.3f} "
                f"| {so['mean_ci_half_width'] / gap:.3f} | {tho / gap:.3f} "
                f"| {1.96 * so['q0.95_se'] / (so['q0.95'] - sf['q0.95']):.3f} |"
            )
    u, r = pop(50, 0.0, 0.0), pop(50, 0.0, 0.0)
    for method in ("half", "bootstrap"):
        best, cpu = math.inf, math.inf
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            klom_summary(u, r, n_boot=200, seed=0, method=method)
            best, cpu = min(best, time.perf_counter() - t), min(cpu, time.process_time() - c)
        print(f"klom_summary n={args.n} M=50/side 200 reps {method}: {best:.3f} s wall, {cpu:.3f} s CPU")


if __name__ == "__main__":
    main()
