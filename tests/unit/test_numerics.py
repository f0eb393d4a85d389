"""benchmark.numerics: importing the package pins the CPU kernels (a seed gives the same bits on any AVX2
machine), after ``import torch`` too, and a value the user set wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmark.numerics import OPENBLAS_PIN, PINNED, cpu_has_avx2

PROBE = (
    "import torch, os\n"
    "import benchmark\n"  # after torch: the pin must still take effect (read at the first kernel)
    "x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))\n"
    "print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'], float((x @ x).sum()))\n"
)


def _probe(probe: str = PROBE, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in PINNED and k not in OPENBLAS_PIN}
    out = subprocess.run(
        [sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


BLAS_PROBE = (
    "import benchmark\n"  # before NumPy: OpenBLAS reads OPENBLAS_CORETYPE when it loads
    "import numpy\n"
    "from benchmark.numerics import openblas_cores\n"
    "print(openblas_cores())\n"
)


@pytest.mark.skipif(not cpu_has_avx2(), reason="the pinned path needs an AVX2 CPU (x86-64 since 2013)")
def test_importing_the_package_pins_avx2_kernels_and_mkl_reproducibility():
    capability, cbwr, _ = _probe()
    assert (capability, cbwr) == ("AVX2", "AVX2,STRICT")


def test_a_kernel_setting_in_the_environment_wins_and_changes_what_is_recorded():
    capability, cbwr, _ = _probe(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")
    assert (capability, cbwr) == ("DEFAULT", "COMPATIBLE")


@pytest.mark.skipif(not cpu_has_avx2(), reason="the pinned path needs an AVX2 CPU (x86-64 since 2013)")
def test_importing_the_package_pins_numpys_openblas_to_its_avx2_kernels():
    """Without the pin OpenBLAS picks SkylakeX kernels on an AVX-512 CPU, whose float64 dot products differ in
    the last bit from the AVX2 ones (and moved every cure_newton_krylov cell between two machines)."""
    assert _probe(BLAS_PROBE) == ["Haswell"]


@pytest.mark.skipif(not cpu_has_avx2(), reason="x86-64 OpenBLAS kernel names")
def test_an_openblas_core_in_the_environment_wins():
    assert _probe(BLAS_PROBE, OPENBLAS_CORETYPE="Sandybridge") == ["Sandybridge"]


def test_the_openblas_pin_is_set_only_on_a_cpu_with_avx2_and_fma(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n")
    assert cpu_has_avx2(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx\n")  # a CPU before AVX2
    assert not cpu_has_avx2(str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2\n")  # AVX2 without FMA
    assert not cpu_has_avx2(str(cpuinfo))
    assert not cpu_has_avx2(str(tmp_path / "missing"))  # not Linux: left to OpenBLAS


def test_the_provenance_hardware_names_the_cpu_kernels_and_threads():
    from benchmark.provenance import hardware

    hw = hardware()
    assert f"MKL_CBWR={os.environ['MKL_CBWR']}" in hw and " kernels, " in hw and " torch threads" in hw
    assert ", OpenBLAS " in hw


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
