"""The unit executor: local and Ray backends give the same results; failures and killed workers.

One private 2-CPU Ray instance serves every test of this module (start-up takes seconds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from benchmark.config import ExecutorConfig
from benchmark.runner.executor import Unit, UnitResult, UnitsFailed, ensure_ray, raise_failures, run_units

# Ray workers cannot import this test module (pytest put its folder on sys.path, not theirs): ship the unit
# functions below by value. The pipeline's own unit functions live in the package and go by reference.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

LOCAL = ExecutorConfig()
RAY = ExecutorConfig(kind="ray", num_cpus=2, max_retries=2, min_units=1)


@pytest.fixture(scope="module")
def ray_instance():
    ensure_ray(RAY)
    yield
    ray.shutdown()


# --- unit functions (top level, so Ray ships them by reference) ------------------------------------------


def square_or_raise(run, unit: Unit) -> int:
    if unit.args.get("bad"):
        raise ValueError(f"bad unit {unit.key}")
    return unit.args["x"] ** 2


def write_once_die_first(run, unit: Unit) -> int:
    """Log each execution; the victim kills its own worker (SIGKILL) on its first execution."""
    out = Path(unit.args["dir"])
    with open(out / f"{unit.key}.log", "a") as f:
        f.write(f"{os.getpid()}\n")
    marker = out / f"{unit.key}.died"
    if unit.args.get("victim") and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    (out / f"{unit.key}.out").write_text(str(unit.args["x"] * 10))
    return unit.args["x"] * 10


def always_die(run, unit: Unit) -> int:
    os._exit(1)


def kernels(run, unit: Unit) -> tuple[str, str, str]:
    """What the process running the unit computes with (benchmark.numerics)."""
    from benchmark.numerics import describe

    return describe(), os.environ.get("ATEN_CPU_CAPABILITY", ""), os.environ.get("MKL_CBWR", "")


def probes(n: int, bad: int | None = None) -> list[Unit]:
    return [Unit("probe", f"u{i}", "none", {"x": i, "bad": i == bad}) for i in range(n)]


# --- tests -------------------------------------------------------------------------------------------------


def test_no_units_start_nothing():  # first in the module: before the shared instance starts
    assert not ray.is_initialized()
    assert run_units([], square_or_raise, executor=RAY, desc="empty") == []
    assert not ray.is_initialized()


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_raising_unit_fails_with_its_reason_and_the_others_complete(backend, request):
    cfg = LOCAL if backend == "local" else RAY
    if backend == "ray":
        request.getfixturevalue("ray_instance")
    seen: list[str] = []
    results = run_units(
        probes(6, bad=2),
        square_or_raise,
        executor=cfg,
        desc="probe",
        on_result=lambda r: seen.append(r.unit.key),
    )
    assert [r.unit.key for r in results] == [f"u{i}" for i in range(6)]  # the order of the units
    assert sorted(seen) == sorted(r.unit.key for r in results)
    assert all(isinstance(r, UnitResult) for r in results)
    assert [r.ok for r in results] == [True, True, False, True, True, True]
    assert all(r.wall_s >= 0 for r in results if r.ok)
    assert [r.value for r in results if r.ok] == [0, 1, 9, 16, 25]
    assert results[2].error == "ValueError: bad unit u2"
    with pytest.raises(UnitsFailed, match="1 of 6 units failed: u2: ValueError: bad unit u2"):
        raise_failures(results, "probe")


def test_ray_workers_compute_with_the_drivers_pinned_kernels_and_one_thread(ray_instance):
    units = [Unit("probe", f"u{i}", "none", {}) for i in range(2)]
    local = run_units(units, kernels, executor=LOCAL, desc="kernels")
    remote = run_units(units, kernels, executor=RAY, desc="kernels")
    assert [r.value for r in remote] == [r.value for r in local]
    desc, capability, cbwr = remote[0].value
    assert (capability, cbwr) == (os.environ["ATEN_CPU_CAPABILITY"], os.environ["MKL_CBWR"])
    assert desc.endswith(", 1 torch threads") and f"MKL_CBWR={cbwr}" in desc


def test_a_killed_worker_is_retried_and_no_finished_work_is_lost(ray_instance, tmp_path):
    units = [
        Unit("probe", f"u{i}", "none", {"x": i, "dir": str(tmp_path), "victim": i == 3}) for i in range(8)
    ]
    results = run_units(units, write_once_die_first, executor=RAY, desc="kill")
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert [r.value for r in results] == [10 * i for i in range(8)]
    assert (tmp_path / "u3.died").exists()
    for i in range(8):
        assert (tmp_path / f"u{i}.out").read_text() == str(10 * i)
        runs = (tmp_path / f"u{i}.log").read_text().split()
        assert len(runs) == (2 if i == 3 else 1), (i, runs)  # only the killed unit ran again
    victim = (tmp_path / "u3.log").read_text().split()
    assert victim[0] != victim[1]  # on a fresh worker


def test_a_worker_that_always_dies_becomes_a_failed_result(ray_instance):
    cfg = ExecutorConfig(kind="ray", num_cpus=2, max_retries=1, min_units=1)
    results = run_units(
        [Unit("probe", "doomed", "none", {})] + probes(2), _dispatch, executor=cfg, desc="doomed"
    )
    assert [r.ok for r in results] == [False, True, True]
    assert results[0].error.startswith("WorkerCrashedError: "), results[0].error
    assert [r.value for r in results[1:]] == [0, 1]


def _dispatch(run, unit: Unit) -> int:
    return always_die(run, unit) if unit.key == "doomed" else square_or_raise(run, unit)


def test_units_must_belong_to_the_run(tmp_path):
    class FakeSuite:
        name = "s"

    class FakeRun:
        suite = FakeSuite()

    with pytest.raises(ValueError, match="suite 's'"):
        run_units(probes(1), square_or_raise, executor=LOCAL, desc="x", run=FakeRun())


def test_progress_off_a_terminal_is_a_log_line(capsys):
    run_units(probes(40, bad=5), square_or_raise, executor=ExecutorConfig(max_retries=0), desc="grid")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 20  # one every 40 // 20 units
    assert lines[0].startswith("grid: 2/40 units done, 0 failed, ")
    assert lines[-1].startswith("grid: 40/40 units done, 1 failed, ")


_AUTH_PROBE = """
from benchmark.config import ExecutorConfig
from benchmark.runner.executor import ensure_ray
from ray._raylet import AuthenticationMode, get_authentication_mode
ensure_ray(ExecutorConfig(kind="ray", num_cpus=1))
print(get_authentication_mode() == AuthenticationMode.TOKEN)
"""


def test_a_private_instance_keeps_token_auth_without_rays_notice():
    """Ray turns token authentication on for a new local instance and says so in a WARNING, which a run
    would print once per stage: the protection stays on, the notice is not printed."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's default applies
    cmd = [sys.executable, "-c", _AUTH_PROBE]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Token authentication" not in proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "True"
