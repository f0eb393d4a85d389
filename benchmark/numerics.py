"""The CPU kernels every process of the suite computes with, pinned so that a seed gives the same bits on
any x86-64 machine with AVX2 (not only on the machine that made the committed results).

Which vector instructions a kernel uses changes the order of its floating-point reductions, so the same
seed trains different weights on different CPUs: measured on a 784-64-10 MLP trained 5 epochs on 4,000
MNIST digits, PyTorch's ``DEFAULT`` kernels and its ``AVX2`` ones give different weights, and so do MKL's
default dispatch and its ``COMPATIBLE`` path. Through Optuna's proposals such last-bit differences moved
three of 16 MNIST-5k tuning selections between two machines. Two settings fix the path, both read when the
first kernel runs (so setting them on import of :mod:`benchmark`, before any computation, is enough, and a
Ray worker, which imports the package to unpickle its task, pins itself):

- ``ATEN_CPU_CAPABILITY=avx2``: PyTorch's own vectorised kernels (on a CPU with AVX-512 it would pick
  ``AVX512``);
- ``MKL_CBWR=AVX2,STRICT``: MKL's conditional numerical reproducibility, the AVX2 code path on every CPU
  that has AVX2 (Intel or AMD), bitwise-reproducible regardless of memory alignment (``STRICT``).

On an AVX2-only CPU (the CI machines) both are what the libraries pick anyway: the pinned and unpinned
weights are identical and so is the speed. The intra-op thread count is pinned separately (one thread per
unit, ``UNLEARN_BENCH_THREADS``). A value already in the environment wins (``setdefault``), so a user can
trade reproducibility across machines for AVX-512 speed; :func:`describe` records what a process actually
used in every result row's ``hardware``.
"""

from __future__ import annotations

import os

PINNED: dict[str, str] = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT"}


def pin_cpu_kernels() -> None:
    """Set each of :data:`PINNED` unless the environment already names a value."""
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)


def describe() -> str:
    """What this process computes with, e.g. ``AVX2 kernels, MKL_CBWR=AVX2,STRICT, 1 torch threads``."""
    import torch

    capability, cbwr = torch.backends.cpu.get_cpu_capability(), os.environ.get("MKL_CBWR", "unset")
    return f"{capability} kernels, MKL_CBWR={cbwr}, {torch.get_num_threads()} torch threads"
