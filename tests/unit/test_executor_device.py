"""Ray executor + suite devices: the driver resolves ``auto`` once and its device travels with every task.

A GPU is simulated on this CPU machine: ``torch.cuda.is_available`` is patched in the driver (this process)
only, and the private Ray instance declares one GPU that its workers' CPU-only torch cannot use — the
situation the driver/worker split must catch (a worker resolving ``auto`` again would silently train on the
CPU under the driver's CUDA cache keys).
"""

from __future__ import annotations

import copy
import logging

import pytest
import ray
import torch

from benchmark.config import ConfigError, ExecutorConfig, parse_params
from benchmark.runner.artifacts import Layout, read_json
from benchmark.runner.cells import expand_cells
from benchmark.runner.device import DeviceError, pin_device
from benchmark.runner.executor import _check_gpus, _SuiteSource, _worker_suite, run_units, task_gpus
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.sandbox import Sandbox, SandboxError
from benchmark.runner.suite import open_suite
from benchmark.runner.training import original_units, train_original, train_originals

RAW = {
    "datasets": {"digits": {"source": "digits"}},
    "protocols": {"class": {"kind": "class", "requests": 2}},
    "suites": {
        "t": {
            "dataset": "digits",
            "device": "auto",
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "weight_decay": 0.001},
            "protocols": ["class"],
            "seeds": [0, 1],
            "methods": ["original"],
        }
    },
}
RAY = ExecutorConfig(kind="ray", max_retries=0, min_units=1)


def _params(**executor):
    raw = copy.deepcopy(RAW)
    if executor:
        raw["executor"] = executor
    return parse_params(raw)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("exec_device")
    fetch_dataset(_params(), "digits", Layout(root))
    write_protocols(open_suite(_params(), "t", root))
    return root


@pytest.fixture
def driver_sees_a_gpu(monkeypatch):
    """``torch.cuda.is_available()`` is True in this process only; torch's global determinism settings that
    the driver's CUDA resolution turns on are restored afterwards."""
    state = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # restored by monkeypatch
    yield
    torch.use_deterministic_algorithms(state[0], warn_only=state[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[2], state[3]


@pytest.fixture(scope="module")
def ray_with_a_fake_gpu():
    """A private 2-CPU Ray instance that advertises one GPU (Ray hands it to a task through
    CUDA_VISIBLE_DEVICES; the worker's CPU-only torch still sees no CUDA)."""
    assert not ray.is_initialized()
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             object_store_memory=256 * 2**20, logging_level=logging.WARNING)  # fmt: skip
    yield
    ray.shutdown()


# --- without Ray --------------------------------------------------------------------------------------------


def test_tasks_reserve_gpus_only_for_a_gpu_suite():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert task_gpus(ExecutorConfig(kind="ray"), cuda) == 1.0  # default: one GPU per task
    assert task_gpus(ExecutorConfig(kind="ray", gpus_per_task=0.5), torch.device("cuda:1")) == 0.5
    assert task_gpus(ExecutorConfig(kind="ray", gpus_per_task=2), cpu) == 0.0  # a CPU unit holds no GPU
    assert task_gpus(ExecutorConfig(kind="ray"), None) == 0.0  # units without a suite
    assert _params(kind="ray", gpus_per_task=0.25).executor.gpus_per_task == 0.25
    with pytest.raises(ConfigError, match=r"^executor\.gpus_per_task: must be > 0"):
        _params(kind="ray", gpus_per_task=0)


def test_a_gpu_suite_on_a_cluster_without_enough_gpus_fails_at_once(root, driver_sees_a_gpu):
    run = open_suite(_params(), "t", root)
    assert run.device == torch.device("cuda")
    _check_gpus(run, 1.0, 1.0)  # enough
    with pytest.raises(DeviceError) as info:
        _check_gpus(run, 1.0, 0.0)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("suites.t.device: resolved to cuda here, so each Ray task needs 1 GPU(s)"), msg


def test_pin_device_never_resolves_auto_again(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pin_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"^suites\.t\.device: the driver resolved 'cuda:1' but this "):
        pin_device("cuda:1", "suites.t.device")
    with pytest.raises(ValueError):
        pin_device("auto")  # only a resolved device is pinned
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pin_device("cuda:3") == torch.device("cuda")  # the task's own GPU: the driver's index is moot


def test_a_worker_suite_is_pinned_to_the_drivers_device_and_keys(root, monkeypatch):
    params = _params()
    local = open_suite(params, "t", root)
    assert local.device == torch.device("cpu")
    source = _SuiteSource(params, str(root), "d0", "cpu", local.data_key)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a "worker" with a GPU: auto would take it
    worker = _worker_suite(source, "t")
    assert worker.device == torch.device("cpu") and worker.data_key == local.data_key
    with pytest.raises(DeviceError, match="cache keys differ from the driver's"):
        _worker_suite(_SuiteSource(params, str(root), "d1", "cpu", "not-the-key"), "t")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="the driver resolved 'cuda' but this worker"):
        _worker_suite(_SuiteSource(params, str(root), "d2", "cuda", "k"), "t")


# --- on a private Ray instance ------------------------------------------------------------------------------


def test_cpu_driver_auto_runs_on_ray_workers_with_the_local_keys(root, ray_with_a_fake_gpu, tmp_path):
    params = _params()
    fetch_dataset(params, "digits", Layout(tmp_path))
    run = open_suite(params, "t", tmp_path)
    write_protocols(run)
    assert run.device == torch.device("cpu")  # the real CPU path: auto resolves to the CPU on the driver
    assert train_originals(run, RAY) == 2
    for seed in (0, 1):
        meta = read_json(run.original_path(seed).with_suffix(".json"))
        assert meta["device"] == "cpu" and meta["key"] == run.original_key(seed)
        assert meta["key"] == open_suite(params, "t", root).original_key(seed)  # CPU keys, wherever it ran


def test_a_worker_without_the_drivers_gpu_fails_its_unit_in_one_line(
    root, ray_with_a_fake_gpu, driver_sees_a_gpu, tmp_path
):
    params = _params()
    fetch_dataset(params, "digits", Layout(tmp_path))
    run = open_suite(params, "t", tmp_path)
    write_protocols(run)
    assert run.device == torch.device("cuda")  # the driver resolved auto, once
    cpu_key = open_suite(params, "t", root, device="cpu").original_key(0)
    assert run.original_key(0) != cpu_key  # ...and keyed every artefact for CUDA
    units = original_units(run)
    results = run_units(units, train_original, executor=RAY, desc="originals", run=run)
    assert [r.ok for r in results] == [False, False]
    for r in results:
        # Ray reserved the GPU (CUDA_VISIBLE_DEVICES='0' in the task) and the worker, pinned to the driver's
        # cuda instead of re-resolving auto to its CPU, refused to train under CUDA keys
        assert "\n" not in r.error, r.error
        head = "DeviceError: suites.t.device: the driver resolved 'cuda' but this worker (pid "
        assert r.error.startswith(head), r.error
        assert "CUDA_VISIBLE_DEVICES='0'" in r.error and r.error.endswith("has no usable CUDA device")
    assert not any(run.original_path(seed).exists() for seed in (0, 1))


def test_the_cell_sandbox_child_runs_on_the_parents_device(root, driver_sees_a_gpu):
    """The cells' child process gets the parent's resolved device: with the parent on (simulated) CUDA, the
    CPU-only child refuses in one line instead of resolving ``auto`` to its CPU under CUDA keys."""
    run = open_suite(_params(), "t", root)
    assert run.device == torch.device("cuda")
    cell = next(iter(expand_cells(run)))
    box = Sandbox()
    try:
        with pytest.raises(SandboxError, match=r"^DeviceError: suites\.t\.device: the driver resolved"):
            box.run_cell(run, cell, "any-key", None)  # the device is read before any input is
    finally:
        box.close()
