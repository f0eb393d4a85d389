"""Where a suite's models and data live: ``device: auto | cpu | cuda | cuda:N`` (suite key, default ``cpu``).

* ``cpu`` (the default): every stage runs exactly as before the key existed — same tensors, same code path,
  same cache keys, bit-identical results.
* ``cuda`` / ``cuda:N``: originals, gold retrains, memorisation models, population members, unlearning
  cells and the evaluation's forward passes run on that GPU. Saved state dicts are moved to the CPU first, so
  every artefact loads anywhere (and has the same bytes layout as a CPU-trained one).
* ``auto``: ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``, resolved once, in the process that
  runs the stage (the driver). With the Ray executor the driver's resolved device travels with every task
  (:func:`pin_device`): a worker never re-resolves ``auto``, each task of a GPU suite reserves a GPU
  (``executor.gpus_per_task``, default 1), and a worker without one fails its unit with one line instead of
  silently computing on the CPU under the driver's GPU cache keys.

Cache keys: a resolved device other than the CPU enters every key through ``SuiteRun.data_key`` (as its
type, ``cuda``, not its index), so GPU artefacts never mix with CPU ones and a CPU key is unchanged.

What is nondeterministic on a GPU, and what the suite does about it (:func:`configure_determinism`):

* atomics: ``index_add_`` / ``scatter_add_`` / ``index_put_(accumulate=True)`` and the backward passes of
  gathers, embedding and pooling layers accumulate in float with ``atomicAdd``, whose order varies run to
  run; ``torch.use_deterministic_algorithms(True, warn_only=True)`` swaps in deterministic kernels where
  PyTorch has them and warns (instead of failing) where it has none;
* cuDNN picks convolution algorithms by benchmarking (``cudnn.benchmark``) and some are nondeterministic:
  ``cudnn.deterministic = True``, ``cudnn.benchmark = False``;
* cuBLAS splits reductions by workspace: ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (set before the first cuBLAS
  call when the variable is unset);
* TF32 matmuls/convolutions change the numbers (not their reproducibility): left at PyTorch's defaults.

Even so, GPU numbers are reproducible only on the same GPU model, driver and library versions, and differ
from CPU ones in the last bits (different summation orders), so trained models drift apart over epochs.
Every random draw stays seeded (CPU generators, moved to the device); CPU results remain the reference, and a
GPU run is compared to them within the quality gate's tolerance, never bit for bit.
"""

from __future__ import annotations

import os
import re

import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(RuntimeError):
    """The suite's device is not usable on this machine (one line: key, value, why)."""


def check_device_spec(spec: str, key: str = "device") -> str:
    """Validate the spelling only (``auto``, ``cpu``, ``cuda``, ``cuda:N``): a GPU preset must validate on a
    CPU machine. Raises ValueError naming ``key``."""
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec):
        raise ValueError(f"{key}: expected auto, cpu, cuda or cuda:N, got {spec!r}")
    return spec


def resolve_device(spec: str, key: str = "device") -> torch.device:
    """The torch device for ``spec``; raises :class:`DeviceError` when CUDA is asked for and missing."""
    check_device_spec(spec, key)
    if spec == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if spec == "auto":
        return torch.device("cuda") if available else torch.device("cpu")
    if not available:
        raise DeviceError(f"{key}: {spec!r} requested but CUDA is not available here (use 'auto' or 'cpu')")
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"{key}: {spec!r} requested but only {torch.cuda.device_count()} GPU(s) visible")
    return device


def pin_device(resolved: str, key: str = "device") -> torch.device:
    """On a worker: the device the driver resolved (``str(torch.device)``), never ``auto``.

    ``cpu`` stays the CPU. ``cuda`` / ``cuda:N`` becomes ``cuda``: the GPU the scheduler gave this task (Ray
    exposes a task's GPUs through ``CUDA_VISIBLE_DEVICES``, so the driver's index means nothing here; only the
    type enters cache keys). Raises :class:`DeviceError` (one line) when this process sees no GPU.
    """
    if resolved == "auto" or not DEVICE_PATTERN.match(resolved):
        raise ValueError(f"{key}: expected a resolved device (cpu, cuda or cuda:N), got {resolved!r}")
    device = torch.device(resolved)
    if device.type == "cpu":
        return device
    if not torch.cuda.is_available():
        where = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen = "" if where is None else f", CUDA_VISIBLE_DEVICES={where!r}"
        raise DeviceError(
            f"{key}: the driver resolved {resolved!r} but this worker (pid {os.getpid()}{seen}) has no "
            "usable CUDA device"
        )
    return torch.device("cuda")


def configure_determinism(device: torch.device) -> None:
    """On CUDA: deterministic kernels where they exist (warn where not), deterministic cuDNN, fixed cuBLAS
    workspace. A no-op on the CPU (its kernels are deterministic already; nothing global changes)."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
