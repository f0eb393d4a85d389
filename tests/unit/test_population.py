"""The population stage: members cached by key, a failing method fails its members (not the stage), and the
scores name the failure."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from benchmark.config import parse_params
from benchmark.runner.artifacts import Layout, finite_state
from benchmark.runner.population import _pop_seed, member_key, population_members, train_population
from benchmark.runner.population_scores import score_population
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.unlearners.base import _REGISTRY, Unlearner, register_unlearner


class Crash(Unlearner):
    def unlearn(self, model, request, ctx):
        raise RuntimeError("boom in population")


class Overflow(Unlearner):
    """Finite but huge weights on the first member only: its logits overflow to inf, its probabilities NaN."""

    def unlearn(self, model, request, ctx):
        if ctx.seed == _pop_seed(POP_RUN[0], 0):
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(3e37)
        return model


POP_RUN: list = []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from benchmark.runner.suite import open_suite

    for name, cls in (("test_pop_crash", Crash), ("test_pop_overflow", Overflow)):
        _REGISTRY.pop(name, None)
        register_unlearner(name)(cls)
    params = parse_params(_raw())
    root = tmp_path_factory.mktemp("population")
    fetch_dataset(params, "digits", Layout(root))
    suite_run = open_suite(params, "t", root)
    write_protocols(suite_run)
    POP_RUN[:] = [suite_run]
    yield suite_run
    for name in ("test_pop_crash", "test_pop_overflow"):
        _REGISTRY.pop(name, None)


def _raw() -> dict:
    return {
        "datasets": {"digits": {"source": "digits"}},
        "protocols": {"class": {"kind": "class", "requests": 2}},
        "suites": {
            "t": {
                "dataset": "digits",
                "model": {"arch": "logreg"},
                "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
                "protocols": ["class"],
                "seeds": [0],
                "methods": ["original", "retrain", "finetune", "test_pop_crash", "test_pop_overflow"],
                "population": {
                    "models": 4,
                    "methods": ["original", "retrain", "finetune", "test_pop_crash", "test_pop_overflow"],
                },
            }
        },
        "methods": {"finetune": {"epochs": [1]}},
    }


def test_members_train_once_and_a_failing_method_fails_only_its_members(run):
    members = population_members(run)
    kinds = sorted({m.kind for m in members})
    assert kinds == ["gold", "original", "unlearned"]
    assert sum(m.kind == "gold" for m in members) == 8  # 2M retrains: M reference + M for `retrain`
    assert len({member_key(run, m) for m in members}) == len(members)
    counts = train_population(run)
    assert counts == {"run": len(members), "cached": 0}
    assert train_population(run) == {"run": 0, "cached": len(members)}  # resumes: nothing retrained
    summary, examples = score_population(run, n_boot=50)
    rows = summary.set_index("method")
    assert rows.loc["test_pop_crash", "status"] == "failed"
    assert "boom in population" in rows.loc["test_pop_crash", "error"]
    assert rows.loc["test_pop_crash", "n_failed"] == 4
    for method in ("original", "retrain", "finetune"):
        assert rows.loc[method, "status"] == "ok" and rows.loc[method, "n_unlearned"] == 4
    # the do-nothing model still knows the deleted class: far above another retrain
    assert rows.loc["original", "klom_mean"] > rows.loc["retrain", "klom_mean"]
    assert set(examples.params_id) == {"original", "retrain", "finetune"}
    # finite weights whose predictions are not: that member fails (no crash); 3 left are too few for KLoM
    over = rows.loc["test_pop_overflow"]
    assert (over.status, over.n_failed, over.n_unlearned) == ("failed", 1, 3)
    assert over.error == "nan: non-finite predictions on the forget set"
    # scores are cached per (protocol, method): a second scoring loads no model and gives the same tables
    import benchmark.runner.population_scores as ps

    def no_models(*args, **kwargs):
        raise AssertionError("a cached group was scored again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ps, "_collect", no_models)
        summary2, examples2 = score_population(run, n_boot=50)
    pd.testing.assert_frame_equal(summary2, summary)
    pd.testing.assert_frame_equal(examples2, examples)


def test_the_population_plan_moves_only_with_what_the_population_is_made_of(run):
    """The population stage's DVC input: adding a method without a population leaves the plan file's bytes
    alone; changing a population method's configuration changes exactly that method's group."""
    from benchmark.runner.population import population_plan, write_population_plan
    from benchmark.runner.suite import open_suite

    root = run.layout.root
    path = write_population_plan(run)
    before, plan = path.read_bytes(), population_plan(run)
    assert set(plan["groups"]) == {"original/clean", "gold/class", *(f"unlearned/class/{m}" for m in (
        "finetune", "test_pop_crash", "test_pop_overflow"))}  # fmt: skip
    assert plan["groups"]["gold/class"]["members"] == 8

    raw = _raw()
    raw["suites"]["t"]["methods"].append("gradient_ascent")  # a new method, not in the population
    assert write_population_plan(open_suite(parse_params(raw), "t", root)).read_bytes() == before

    raw["methods"]["finetune"] = {"epochs": [2]}  # a population method's configuration
    changed = population_plan(open_suite(parse_params(raw), "t", root))
    moved = {g for g in plan["groups"] if plan["groups"][g] != changed["groups"].get(g)}
    assert moved == {"unlearned/class/finetune"} and "unlearned/class/finetune" in changed["groups"]

    raw["suites"]["t"]["population"]["models"] = 5  # the population's size: every group
    bigger = population_plan(open_suite(parse_params(raw), "t", root))
    assert all(bigger["groups"][g] != changed["groups"][g] for g in changed["groups"])


def test_finite_state_checks_buffers_too():
    bn = torch.nn.BatchNorm1d(3)
    assert finite_state(bn)
    bn.running_var[1] = float("nan")  # a buffer, not a parameter: every eval-mode output becomes NaN
    assert all(bool(torch.isfinite(p).all()) for p in bn.parameters()) and not finite_state(bn)
