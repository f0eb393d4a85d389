"""The conformance suite (``unlearn-bench check-plugin``): good methods pass, each kind of bad one fails
exactly the check that names its fault, with a one-line reason."""

from __future__ import annotations

import contextlib
import time

import pytest
import torch
from torch import nn

import benchmark.data.snapshot as snapshot_mod
import benchmark.runner.suite as suite_mod
from benchmark.cli import main
from benchmark.core.space import Bool, Choice, Float, Int
from benchmark.data.snapshot import Snapshot
from benchmark.plugins import CHECKS, check, parametrize_with_checks, run_conformance
from benchmark.plugins.checks import Evaluation
from benchmark.plugins.testing import clear_cache
from benchmark.unlearners.base import _REGISTRY, Unlearner, available_unlearners, register_unlearner

CORE = ["original", "retrain", "finetune", "gradient_ascent", "cure_newton"]


def failed(results) -> dict[str, str]:
    return {r.name: r.reason for r in results if not r.passed}


class Good(Unlearner):
    params = {"steps": [3, 5]}
    test_params = {"steps": 1}

    def unlearn(self, model, request, ctx):
        gen = ctx.generator(request.step)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1e-3 * torch.randn(p.shape, generator=gen))
        ctx.state["calls"] = ctx.state.get("calls", 0) + 1
        return model


class ReturnsNone(Unlearner):
    def unlearn(self, model, request, ctx):
        return None


class Crashes(Unlearner):
    def unlearn(self, model, request, ctx):
        raise RuntimeError("boom\nsecond line of the message")


class WrongArch(Unlearner):
    def unlearn(self, model, request, ctx):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


class MakesNaN(Unlearner):
    def unlearn(self, model, request, ctx):
        with torch.no_grad():
            next(model.parameters())[0, 0] = float("inf")
        return model


class Unseeded(Unlearner):
    _calls = 0

    def unlearn(self, model, request, ctx):
        Unseeded._calls += 1
        gen = torch.Generator().manual_seed(Unseeded._calls)  # differs between the two runs
        with torch.no_grad():
            next(model.parameters()).add_(torch.randn(1, generator=gen))
        return model


class MutatesRequest(Unlearner):
    def unlearn(self, model, request, ctx):
        request.retain.x.mul_(0.5)  # in place: the runner's next consumer would see corrupted data
        return model


class LoadsSnapshot(Unlearner):
    def unlearn(self, model, request, ctx):
        with contextlib.suppress(Exception):  # swallowing the error must not hide the access
            suite_mod.load_snapshot("datasets/digits")
        return model


DUMMY = Snapshot("d", torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), 10, {})


class ReadsTestTensors(Unlearner):
    def unlearn(self, model, request, ctx):
        _ = DUMMY.x_test
        return model


class IgnoresBudget(Unlearner):
    def unlearn(self, model, request, ctx):
        if ctx.budget_s is not None:  # only slow in the budget check, to keep this test fast
            time.sleep(0.4)
        return model


class ChecksBudget(Unlearner):
    def unlearn(self, model, request, ctx):
        for _ in range(500):
            ctx.check_budget()
            if ctx.budget_s is not None:
                time.sleep(0.01)
        return model


class BadTestParams(Unlearner):
    params = {"steps": [1]}
    test_params = {"stepz": 1}


class BadGridPoint(Unlearner):
    params = {"mode": ["a", "b"]}

    def __init__(self, **hp):
        super().__init__(**hp)
        if self.hparams["mode"] != "a":
            raise ValueError(f"mode {self.hparams['mode']!r} not supported")


class CountsCalls(Unlearner):
    calls = 0

    def unlearn(self, model, request, ctx):
        CountsCalls.calls += 1
        return model


class SkipsEverything(Unlearner):
    def skip(self, n_params):
        return "needs a transformer"


TEST_METHODS = {
    "conf_good": Good,
    "conf_none": ReturnsNone,
    "conf_crash": Crashes,
    "conf_arch": WrongArch,
    "conf_nan": MakesNaN,
    "conf_unseeded": Unseeded,
    "conf_mutates": MutatesRequest,
    "conf_snapshot": LoadsSnapshot,
    "conf_test_tensors": ReadsTestTensors,
    "conf_ignores_budget": IgnoresBudget,
    "conf_checks_budget": ChecksBudget,
    "conf_bad_test_params": BadTestParams,
    "conf_bad_grid": BadGridPoint,
    "conf_skips": SkipsEverything,
    "conf_counts": CountsCalls,
}


@pytest.fixture(scope="module", autouse=True)
def registered():
    for name, cls in TEST_METHODS.items():
        _REGISTRY.pop(name, None)
        register_unlearner(name)(cls)
    yield
    for name in TEST_METHODS:
        _REGISTRY.pop(name, None)


@pytest.mark.parametrize("name", CORE + ["conf_good", "conf_checks_budget"])
def test_conforming_methods_pass_every_check(name):
    results = run_conformance(name, budget_s=0.3, grace_s=1.0)
    assert [r.name for r in results] == list(CHECKS)
    assert not failed(results), "\n".join(map(str, results))


@pytest.mark.parametrize(
    ("name", "check", "words"),
    [
        ("conf_none", "sequential_requests", "returned NoneType, not an nn.Module"),
        ("conf_crash", "sequential_requests", "RuntimeError: boom"),
        ("conf_arch", "same_architecture", "state_dict keys differ"),
        ("conf_nan", "finite_weights", "NaN or inf"),
        ("conf_unseeded", "deterministic", "differs between two seeded runs"),
        ("conf_mutates", "request_unchanged", "retain.x"),
        ("conf_snapshot", "no_test_data", "load_snapshot"),
        ("conf_test_tensors", "no_test_data", "Snapshot.x_test"),
        ("conf_bad_test_params", "params_grid", "'stepz'"),
        ("conf_bad_grid", "params_grid", "{'mode': 'b'}"),
        ("conf_skips", "applies", "needs a transformer"),
    ],
)
def test_each_fault_fails_its_check_with_a_one_line_reason(name, check, words):
    results = run_conformance(name)
    assert [r.name for r in results] == list(CHECKS)
    bad = failed(results)
    assert check in bad, "\n".join(map(str, results))
    assert words in bad[check]
    assert all("\n" not in str(r) for r in results)


def test_only_the_faulty_check_fails():
    assert set(failed(run_conformance("conf_nan"))) == {"finite_weights"}
    assert set(failed(run_conformance("conf_mutates"))) == {"request_unchanged"}
    assert set(failed(run_conformance("conf_unseeded"))) == {"deterministic"}


def test_budget_overrun_without_check_budget_fails():
    bad = failed(run_conformance("conf_ignores_budget", budget_s=0.05, grace_s=0.1))
    assert set(bad) == {"budget"}
    assert "call ctx.check_budget()" in bad["budget"]
    results = run_conformance("conf_checks_budget", budget_s=0.05, grace_s=1.0)
    budget = next(r for r in results if r.name == "budget")
    assert budget.passed and "raised BudgetExceeded" in budget.reason


def test_unknown_and_unregistered_methods():
    results = run_conformance("no_such_method")
    assert [r.name for r in results] == list(CHECKS) and not any(r.passed for r in results)
    assert "unknown method 'no_such_method'" in results[0].reason

    class Anonymous(Unlearner):
        def unlearn(self, model, request, ctx):
            return model

    bad = failed(run_conformance(Anonymous))
    assert set(bad) == {"registered"} and "@register_unlearner" in bad["registered"]
    assert not failed(run_conformance(Good))  # a registered class may be passed directly


def test_params_override_test_params():
    assert not failed(run_conformance("finetune", {"epochs": 2}))
    assert "params_grid" in failed(run_conformance("finetune", {"nope": 1}))


def test_guard_is_lifted_after_the_run():
    load = snapshot_mod.load_snapshot
    run_conformance("conf_snapshot")
    assert snapshot_mod.load_snapshot is load and suite_mod.load_snapshot is load
    assert "x_test" not in vars(Snapshot)
    assert DUMMY.x_test.shape == (1,)


def test_cli_check_plugin_exit_codes_without_params_yaml(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a plugin author's directory: no params.yaml
    assert main(["check-plugin", "original"]) == 0
    out = capsys.readouterr().out
    n = len(CHECKS)
    assert out.count("PASS") == n and f"original: {n}/{n} checks passed; conforms" in out
    assert main(["check-plugin", "finetune", "--params", "epochs=2,lr_scale=0.5"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["check-plugin", "conf_nan"])
    assert exit_.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL  finite_weights" in out and "does NOT conform" in out
    assert main(["check-plugin", "finetune", "--params", "epochs"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_parametrize_with_checks_gives_one_id_per_method_and_check():
    mark = parametrize_with_checks(["conf_nan", "finetune"])
    assert mark.args[0] == ("method", "check_name")
    ids = [p.id for p in mark.args[1]]
    assert ids == [f"{m}-{c}" for m in ("conf_nan", "finetune") for c in CHECKS]
    assert [p.values for p in mark.args[1]][-1] == ("finetune", "budget")
    every = parametrize_with_checks().args[1]  # every registered method, these test methods included
    assert len(every) == len(available_unlearners()) * len(CHECKS)
    assert {p.values[0] for p in every} == set(available_unlearners())
    assert [p.id for p in parametrize_with_checks("finetune", ["deterministic"]).args[1]] == [
        "finetune-deterministic"
    ]
    with pytest.raises(ValueError, match="unknown conformance check"):
        parametrize_with_checks(["finetune"], ["determinism"])


def test_check_raises_the_one_line_reason_and_returns_passes():
    with pytest.raises(AssertionError, match=r"conf_nan: FAIL  finite_weights .*NaN or inf"):
        check("conf_nan", "finite_weights")
    assert check("conf_nan", "deterministic").passed  # the other checks of a faulty method still pass
    with pytest.raises(AssertionError, match="not run: the method skips the model"):
        check("conf_skips", "budget")
    with pytest.raises(AssertionError, match="unknown method 'no_such_method'"):
        check("no_such_method", "registered")
    with pytest.raises(ValueError, match="unknown conformance check 'nope'"):
        check("conf_nan", "nope")


def test_the_checks_of_one_method_share_one_evaluation():
    clear_cache()
    CountsCalls.calls = 0
    for name in CHECKS:
        check("conf_counts", name)
    assert CountsCalls.calls == 3 + 3 + 1  # the traced sequence, its seeded repeat, the budget call
    check("conf_counts", "finite_weights", {})
    assert CountsCalls.calls == 7
    run_conformance("conf_counts")  # the runner always evaluates afresh
    assert CountsCalls.calls == 14


class Spaced(Unlearner):
    space = {
        "steps": Int(low=1, search=(1, 6)),
        "lr": Float(low=0.0, low_open=True, search=(1e-3, 1e-1), log=True),
        "mode": Choice(options=("a", "b")),
        "flag": Bool(search=True),
    }
    params = {"steps": [3, 5], "lr": [0.01], "mode": ["a"], "flag": [True]}
    test_params = {"steps": 1}

    def unlearn(self, model, request, ctx):
        return model


def _space_result(**attrs):
    """The ``space_declared`` result of a copy of :class:`Spaced` with ``attrs`` replaced."""
    cls = type("Variant", (Spaced,), {"name": "spaced_variant", **attrs})
    return Evaluation(cls).result("space_declared")


def test_space_declared_passes_a_consistent_space_and_lists_the_tuned_parameters():
    res = _space_result()
    assert res.passed and res.reason.endswith("tuned: flag, lr, steps"), res


@pytest.mark.parametrize(
    ("attrs", "words"),
    [
        ({"params": {**Spaced.params, "extra": [1]}}, "undeclared ['extra']"),
        ({"params": {k: v for k, v in Spaced.params.items() if k != "mode"}}, "not in params ['mode']"),
        ({"params": {**Spaced.params, "mode": ["a", "c"]}}, "spaced_variant.params.mode: got 'c'"),
        ({"test_params": {"steps": 0}}, "spaced_variant.test_params.steps: got 0"),
        ({"space": {**Spaced.space, "steps": Int(low=1, search=(4, 6))}}, "does not contain the default 3"),
        ({"space": {**Spaced.space, "steps": Int(low=1, search=(0, 6))}}, "not a range inside the allowed"),
        (
            {"space": {**Spaced.space, "lr": Float(low=0.0, search=(0.0, 0.1), log=True)}},
            "on a log scale, not positive",
        ),
        ({"space": {**Spaced.space, "mode": Choice(options=("a", "b"), search=("a", "z"))}}, "subset"),
        ({"space": {**Spaced.space, "mode": Choice(options=("a", "b"), search=("b",))}}, "default 'a'"),
    ],
)
def test_space_declared_fails_an_inconsistent_space_in_one_line(attrs, words):
    res = _space_result(**attrs)
    assert not res.passed and words in res.reason and "\n" not in res.reason, res


def test_space_declared_notes_a_plugin_without_space_and_requires_one_of_builtins():
    res = Evaluation(Good).result("space_declared")
    assert res.passed and res.reason.startswith("no declared space (not tunable)")
    builtin = type("Builtin", (Good,), {"__module__": "benchmark.unlearners.fake"})
    res = Evaluation(builtin).result("space_declared")
    assert not res.passed and "built-in method declares no space for ['steps']" in res.reason
    # static: reported even when the grid cannot be instantiated
    res = Evaluation(BadGridPoint).result("space_declared")
    assert res.passed and not Evaluation(BadGridPoint).result("params_grid").passed
