"""A method that crashes, returns NaN or overruns its budget becomes a failed row; the grid goes on."""

from __future__ import annotations

import time

import pytest
import torch

from benchmark.config import parse_params
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import expand_cells, run_unlearning
from benchmark.runner.evaluate import evaluate_suite
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_gold, train_originals
from benchmark.unlearners.base import _REGISTRY, Unlearner, get_unlearner, register_unlearner


class Crash(Unlearner):
    def unlearn(self, model, request, ctx):
        raise RuntimeError("boom")


class MakesNaN(Unlearner):
    def unlearn(self, model, request, ctx):
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))
        return model


class Slow(Unlearner):
    def unlearn(self, model, request, ctx):
        time.sleep(0.3)
        return model


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    for name, cls in [("test_crash", Crash), ("test_nan", MakesNaN), ("test_slow", Slow)]:
        _REGISTRY.pop(name, None)
        register_unlearner(name)(cls)
    raw = {
        "datasets": {"digits": {"source": "digits"}},
        "protocols": {"random": {"kind": "random", "requests": 2, "fraction": 0.02}},
        "suites": {
            "t": {
                "dataset": "digits",
                "model": {"arch": "logreg"},
                "train": {"epochs": 2, "batch_size": 128, "lr": 0.01},
                "protocols": ["random"],
                "seeds": [0],
                "methods": ["original", "test_crash", "test_nan", "test_slow"],
                "budget_s": 0.2,
            }
        },
    }
    params = parse_params(raw)
    root = tmp_path_factory.mktemp("cells")
    fetch_dataset(params, "digits", Layout(root))
    run = open_suite(params, "t", root)
    write_protocols(run)
    train_originals(run)
    train_gold(run)
    yield run
    for name in ("test_crash", "test_nan", "test_slow"):
        _REGISTRY.pop(name, None)


def test_failures_become_rows_and_the_grid_completes(suite_run):
    counts = run_unlearning(suite_run)
    assert counts == {"run": 4, "cached": 0}
    df = evaluate_suite(suite_run).set_index(["method", "step"])
    assert df.loc[("original", 1), "status"] == "ok"
    assert df.loc[("original", 2), "status"] == "ok"
    assert df.loc[("test_crash", 1), "status"] == "failed"
    assert "RuntimeError: boom" in df.loc[("test_crash", 1), "error"]
    assert df.loc[("test_crash", 2), "status"] == "failed"
    assert "not run" in df.loc[("test_crash", 2), "error"]
    assert df.loc[("test_nan", 1), "status"] == "nan"
    assert df.loc[("test_slow", 1), "status"] == "timeout"
    assert df.loc[("test_slow", 2), "status"] == "timeout"
    assert df.loc[("test_slow", 1), "error"].startswith("time budget")


def test_rerun_reuses_every_cell(suite_run):
    run_unlearning(suite_run)
    assert run_unlearning(suite_run) == {"run": 0, "cached": len(expand_cells(suite_run))}


def test_rows_record_provenance(suite_run):
    run_unlearning(suite_run)
    df = evaluate_suite(suite_run)
    assert df.code_hash.str.len().eq(16).all()
    assert df.packages.str.contains("torch==").all()
    assert df.hardware.str.len().gt(0).all()


def test_default_grid_is_one_configuration_per_method_unless_listed():
    from benchmark.runner.suite import SuiteRun

    def cells(raw_extra):
        raw = {
            "datasets": {"digits": {"source": "digits"}},
            "protocols": {"random": {"kind": "random", "requests": 2, "fraction": 0.02}},
            "suites": {"t": {"dataset": "digits", "model": {"arch": "logreg"},
                             "train": {"epochs": 2, "batch_size": 128, "lr": 0.01}, "protocols": ["random"],
                             "seeds": [0], "methods": ["salun", "newton_damped"]}},
            **raw_extra,
        }  # fmt: skip
        run = SuiteRun.__new__(SuiteRun)  # expand_cells needs params and suite only
        run.params = parse_params(raw)
        run.suite = run.params.suite("t")
        return expand_cells(run)

    default = cells({})
    assert [c.params_id for c in default] == ["salun", "newton_damped"]
    assert default[0].hparams == {k: v[0] for k, v in get_unlearner("salun").params.items()}
    listed = cells({"methods": {"newton_damped": {"gamma": [0.01, 1.0]}}})
    # the first listed configuration is the method's base (its bare name); the others are named by what
    # differs from it, so listing another configuration never renames one that exists
    assert [c.params_id for c in listed] == ["salun", "newton_damped", "newton_damped[gamma=1.0]"]
    more = cells({"methods": {"newton_damped": {"gamma": [0.01, 1.0, 3.0]}}})
    assert [c.params_id for c in more][:3] == [c.params_id for c in listed]
    assert more[3].params_id == "newton_damped[gamma=3.0]"
    single = cells({"methods": {"newton_damped": {"gamma": [0.01]}}})
    assert [c.params_id for c in single] == ["salun", "newton_damped"]  # named as when listed with others
    union = cells({"methods": {"newton_damped": [{"gamma": [0.01]}, {"gamma": [1.0]}]}})
    assert [c.params_id for c in union] == [c.params_id for c in listed]
    full = cells({"grid": "full"})
    sizes = [len(list(get_unlearner(m).grid())) for m in ("salun", "newton_damped")]
    assert len(full) == sum(sizes)
