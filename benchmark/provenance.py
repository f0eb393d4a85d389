"""What every result row records: git revision, package versions, hardware."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata

import torch

from benchmark.numerics import describe

PACKAGES = ("unlearn-bench", "torch", "torchvision", "numpy", "datasets", "dvc", "scikit-learn")


@functools.cache
def git_revision() -> str:
    """``HEAD`` commit (12 hex digits), ``+dirty`` when tracked files changed; ``unknown`` outside git."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def package_versions() -> str:
    out = []
    for name in PACKAGES:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return " ".join(out)


def _cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``unknown model``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown model"


@functools.cache
def hardware() -> str:
    """Architecture, CPU model, the kernels and threads torch computes with (:mod:`benchmark.numerics`), OS,
    and the GPU when there is one."""
    cpu = platform.processor() or platform.machine()
    desc = f"{cpu} ({_cpu_model()}); {describe()}; {platform.system()} {platform.release()}"
    if torch.cuda.is_available():
        desc += f"; {torch.cuda.get_device_name(0)}"
    return desc


def provenance() -> dict[str, str]:
    return {"git_rev": git_revision(), "packages": package_versions(), "hardware": hardware()}
