"""The population stage: members cached by key, a failing method fails its members (not the stage), and the
scores name the failure."""

from __future__ import annotations

import pytest

from benchmark.config import parse_params
from benchmark.runner.artifacts import Layout
from benchmark.runner.population import member_key, population_members, train_population
from benchmark.runner.population_scores import score_population
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.unlearners.base import _REGISTRY, Unlearner, register_unlearner


class Crash(Unlearner):
    def unlearn(self, model, request, ctx):
        raise RuntimeError("boom in population")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from benchmark.runner.suite import open_suite

    _REGISTRY.pop("test_pop_crash", None)
    register_unlearner("test_pop_crash")(Crash)
    raw = {
        "datasets": {"digits": {"source": "digits"}},
        "protocols": {"class": {"kind": "class", "requests": 2}},
        "suites": {
            "t": {
                "dataset": "digits",
                "model": {"arch": "logreg"},
                "train": {"epochs": 2, "batch_size": 128, "lr": 0.05},
                "protocols": ["class"],
                "seeds": [0],
                "methods": ["original", "retrain", "finetune", "test_pop_crash"],
                "population": {"models": 4, "methods": ["original", "retrain", "finetune", "test_pop_crash"]},
            }
        },
        "methods": {"finetune": {"epochs": [1]}},
    }
    params = parse_params(raw)
    root = tmp_path_factory.mktemp("population")
    fetch_dataset(params, "digits", Layout(root))
    suite_run = open_suite(params, "t", root)
    write_protocols(suite_run)
    yield suite_run
    _REGISTRY.pop("test_pop_crash", None)


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
