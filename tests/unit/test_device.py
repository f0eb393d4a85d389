"""Suite ``device`` key: spelling checked at validation, availability at run time, CPU path unchanged."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmark.config import ConfigError, parse_params
from benchmark.runner.artifacts import Layout, file_hash
from benchmark.runner.cells import cell_dir, cell_key, expand_cells, run_unlearning
from benchmark.runner.device import DeviceError, resolve_device
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_gold, train_originals

RAW = {
    "datasets": {"digits": {"source": "digits"}},
    "protocols": {
        "random": {"kind": "random", "requests": 2, "fraction": 0.02},
        "class": {"kind": "class", "requests": 2},
    },
    "methods": {"finetune": {"epochs": [1]}},
    "suites": {
        "t": {
            "dataset": "digits",
            "model": {"arch": "mlp", "hidden": [8]},
            "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "weight_decay": 0.001},
            "protocols": ["random", "class"],
            "seeds": [0],
            "methods": ["original", "finetune"],
        }
    },
}
# Keys of this suite computed by the code before the device key existed (commit 5655c95): a CPU run keeps
# them, so no cached artefact of an existing CPU pipeline is invalidated.
PINNED = {"original": "7a6edc3535969790", "gold_class_2": "ec488e860ead6938"}


def _params(device: str | None):
    raw = copy.deepcopy(RAW)
    if device is not None:
        raw["suites"]["t"]["device"] = device
    return parse_params(raw)


@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_device_spellings_validate_without_a_gpu(spec):
    assert _params(spec).suites["t"].device == spec


def test_device_defaults_to_cpu():
    assert _params(None).suites["t"].device == "cpu"


@pytest.mark.parametrize("spec", ["gpu", "CUDA", "cuda:", "cuda:x", "cpu:0", 1])
def test_bad_device_spelling_is_a_config_error_naming_the_key(spec):
    with pytest.raises(ConfigError, match=r"^suites\.t\.device"):
        _params(spec)


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"^suites\.t\.device: 'cuda:1' requested but CUDA is not"):
        resolve_device("cuda:1", "suites.t.device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(DeviceError, match="only 1 GPU"):
        resolve_device("cuda:1")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    fetch_dataset(_params(None), "digits", Layout(root))
    write_protocols(open_suite(_params(None), "t", root))
    return root


def _no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cpu_keys_are_the_keys_from_before_devices(root, monkeypatch):
    _no_cuda(monkeypatch)
    for spec in (None, "cpu", "auto"):  # auto on a machine without CUDA is the CPU
        run = open_suite(_params(spec), "t", root)
        assert run.device == torch.device("cpu")
        assert run.original_key(0) == PINNED["original"]
        assert run.gold_key("class", 0, 2) == PINNED["gold_class_2"]


def test_a_gpu_device_separates_every_key(root, monkeypatch):
    cpu = open_suite(_params("cpu"), "t", root)
    gpu = open_suite(_params("cuda"), "t", root)
    gpu.__dict__["device"] = torch.device("cuda")  # what resolve_device returns on a GPU machine
    assert gpu.data_key != cpu.data_key
    assert gpu.original_key(0) != cpu.original_key(0)
    assert gpu.gold_key("class", 0, 2) != cpu.gold_key("class", 0, 2)


def test_cuda_suite_without_cuda_fails_at_run_time_in_one_line(root, monkeypatch):
    _no_cuda(monkeypatch)
    run = open_suite(_params("cuda"), "t", root)  # validation and loading pass on a CPU machine
    with pytest.raises(DeviceError) as info:
        train_originals(run)
    assert "\n" not in str(info.value) and str(info.value).startswith("suites.t.device: 'cuda'")


def _artefacts(root, spec):
    params = _params(spec)
    layout = Layout(root / str(spec))
    fetch_dataset(params, "digits", layout)
    run = open_suite(params, "t", layout.root)
    write_protocols(run)
    train_originals(run)
    train_gold(run)
    run_unlearning(run)
    gold = run.layout.gold_path("t", "class", 0, 2)
    out = {"original": file_hash(run.original_path(0)), "gold": file_hash(gold)}
    for c in expand_cells(run):
        out[f"{c.params_id}|{c.protocol}"] = (cell_key(run, c), file_hash(cell_dir(run, c) / "step2.pt"))
    return out


def test_cpu_device_trains_and_unlearns_the_same_bytes(root, monkeypatch):
    _no_cuda(monkeypatch)
    assert _artefacts(root, None) == _artefacts(root, "cpu") == _artefacts(root, "auto")
