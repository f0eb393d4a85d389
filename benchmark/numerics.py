"""The CPU kernels every process of the suite computes with, pinned so that a seed gives the same bits on
every x86-64 machine with AVX2 of the same vendor (not only on the machine that made the committed results).
Between AMD and Intel the bits differ (MKL, see below): measured, an Intel Xeon's fresh-clone default run
moved the headline ToW AUC of the committed AMD run by at most 0.011 (README, *Known problems*).

Which vector instructions a kernel uses changes the order of its floating-point reductions, so the same
seed trains different weights on different CPUs: measured on a 784-64-10 MLP trained 5 epochs on 4,000
MNIST digits, PyTorch's ``DEFAULT`` kernels and its ``AVX2`` ones give different weights, and so do MKL's
default dispatch and its ``COMPATIBLE`` path. Through Optuna's proposals such last-bit differences moved
three of 16 MNIST-5k tuning selections between two machines. Three settings fix the path; the first two are
read when the first kernel runs (so setting them on import of :mod:`benchmark`, before any computation, is
enough, and a Ray worker, which imports the package to unpickle its task, pins itself):

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised kernels (on a CPU with AVX-512 it would pick
  ``AVX512``);
- ``MKL_CBWR=AVX2,STRICT``: MKL's conditional numerical reproducibility, bitwise-reproducible regardless of
  memory alignment (``STRICT``). MKL documents every branch but ``AUTO`` and ``COMPATIBLE`` as available only
  on Intel processors, and ignores an unavailable one for ``AUTO``: an Intel CPU runs the AVX2 branch, an AMD
  one its ``AUTO`` dispatch, so the two vendors' weights differ in the last bits (measured: two AMD EPYC
  machines, AVX2-only and AVX-512, gave identical tables; an Intel Xeon other bits from the first trained
  model on). ``COMPATIBLE`` (SSE2, the one vendor-independent branch) trained a 784-64-10 MLP 1.3-1.6 times
  slower on the Xeon, which the 25-minute budget of the default pipeline does not allow;
- ``OPENBLAS_CORETYPE=Haswell``: the kernels of NumPy's (and SciPy's) OpenBLAS, which otherwise picks
  ``SkylakeX`` on a CPU with AVX-512 and ``Haswell``/``Zen`` (the same AVX2 kernels) on one without. Measured:
  the dot products and norms of short float64 vectors (2 to 100 entries) differ in the last bit between the
  two in about 40 % of random cases, and through those in the Krylov cubic solver's small problem
  (:mod:`benchmark.curvature.cubic`, ``np.linalg.norm`` and ``@``) every ``cure_newton_krylov`` cell of the
  default pipeline gave other bits on an AVX-512 EPYC than on the AVX2 machine that made the committed results
  (MNIST-5k ``class`` per-request ToW up to 0.07 apart by request 4), while every other method's rows were
  identical; with this setting the AVX-512 machine reproduced those cells bit for bit. OpenBLAS reads it when
  the library loads (``import numpy``), not at the first kernel: set on import of :mod:`benchmark`, it holds
  for every process the suite starts (the sandbox children and Ray workers inherit the environment) and for
  a process that imports :mod:`benchmark` before NumPy. It is set only where ``/proc/cpuinfo`` lists
  AVX2 and FMA (forcing those kernels on an older CPU would stop at an illegal instruction).

On an AVX2-only CPU all three are what the libraries pick anyway: the pinned and unpinned
weights are identical and so is the speed. The intra-op thread count is pinned separately (one thread per
unit, ``UNLEARN_BENCH_THREADS``). A value already in the environment wins (``setdefault``), so a user can
trade reproducibility across machines for AVX-512 speed; :func:`describe` records what a process actually
used in every result row's ``hardware``.
"""

from __future__ import annotations

import os

PINNED: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}
OPENBLAS_PIN: dict[str, str] = {"OPENBLAS_CORETYPE": "Haswell"}  # only where the CPU has AVX2 and FMA


def cpu_has_avx2(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when ``cpuinfo`` lists the ``avx2`` and ``fma`` flags (False where it cannot be read)."""
    try:
        with open(cpuinfo, encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def pin_cpu_kernels() -> None:
    """Set each of :data:`PINNED` (and :data:`OPENBLAS_PIN` on an AVX2 CPU) unless the environment already
    names a value."""
    pins = {**PINNED, **(OPENBLAS_PIN if cpu_has_avx2() else {})}
    for name, value in pins.items():
        os.environ.setdefault(name, value)


def openblas_cores() -> str:
    """The kernel sets of the OpenBLAS libraries loaded in this process (e.g. ``Haswell``; several joined
    by ``/``), ``none`` when none is loaded: read from the libraries themselves (threadpoolctl)."""
    from threadpoolctl import threadpool_info  # type: ignore[import-untyped]

    libs = threadpool_info()
    cores = sorted({str(lib.get("architecture")) for lib in libs if lib.get("internal_api") == "openblas"})
    return "/".join(cores) or "none"


def describe() -> str:
    """What this process computes with, e.g.
    ``AVX2 kernels, MKL_CBWR=AVX2,STRICT, OpenBLAS Haswell, 1 torch threads``."""
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS, whose kernel set is recorded)
    import torch

    capability, cbwr = torch.backends.cpu.get_cpu_capability(), os.environ.get("MKL_CBWR", "unset")
    return (
        f"{capability} kernels, MKL_CBWR={cbwr}, OpenBLAS {openblas_cores()}, "
        f"{torch.get_num_threads()} torch threads"
    )
