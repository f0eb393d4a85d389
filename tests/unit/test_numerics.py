"""benchmark.numerics: importing the package pins the CPU kernels (a seed gives the same bits on any AVX2
machine), after ``import torch`` too, and a value the user set wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmark.numerics import PINNED

PROBE = (
    "import torch, os\n"
    "import benchmark\n"  # after torch: the pin must still take effect (read at the first kernel)
    "x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))\n"
    "print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'], float((x @ x).sum()))\n"
)


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return " avx2" in fh.read()
    except OSError:
        return False


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in PINNED}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(not _has_avx2(), reason="the pinned path needs an AVX2 CPU (x86-64 since 2013)")
def test_importing_the_package_pins_avx2_kernels_and_mkl_reproducibility():
    capability, cbwr, _ = _probe()
    assert (capability, cbwr) == ("AVX2", "AVX2,STRICT")


def test_a_kernel_setting_in_the_environment_wins_and_changes_what_is_recorded():
    capability, cbwr, _ = _probe(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")
    assert (capability, cbwr) == ("DEFAULT", "COMPATIBLE")


def test_the_provenance_hardware_names_the_cpu_kernels_and_threads():
    from benchmark.provenance import hardware

    hw = hardware()
    assert f"MKL_CBWR={os.environ['MKL_CBWR']}" in hw and " kernels, " in hw and " torch threads" in hw


def test_every_stage_that_computes_depends_on_the_kernel_pin():
    """A changed pin changes the bits a seed gives, so DVC must re-run what the pinned kernels computed: every
    stage that runs a model (those depending on ``benchmark/models``) lists ``benchmark/numerics.py``."""
    from pathlib import Path

    import yaml

    stages = yaml.safe_load((Path(__file__).parents[2] / "dvc.yaml").read_text())["stages"]
    computing = {name: s["do"]["deps"] for name, s in stages.items()
                 if "do" in s and "benchmark/models" in s["do"].get("deps", [])}
    assert {"memorize", "train", "gold", "tune", "population", "unlearn", "evaluate"} <= set(computing)
    missing = sorted(name for name, deps in computing.items() if "benchmark/numerics.py" not in deps)
    assert not missing, f"stages without the kernel pin as a dependency: {missing}"
