"""What every result row records: git revision, package versions, hardware."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata

import torch

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


@functools.cache
def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    desc = f"{cpu}; {torch.get_num_threads()} torch threads; {platform.system()} {platform.release()}"
    if torch.cuda.is_available():
        desc += f"; {torch.cuda.get_device_name(0)}"
    return desc


def provenance() -> dict[str, str]:
    return {"git_rev": git_revision(), "packages": package_versions(), "hardware": hardware()}
