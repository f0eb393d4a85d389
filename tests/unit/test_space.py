"""Declared parameter spaces: checking, coercion, one-line errors, Optuna sampling."""

from __future__ import annotations

import optuna
import pytest

from benchmark.core.space import (
    Anything,
    Bool,
    Choice,
    Float,
    Int,
    ParamError,
    check_params,
    infer_space,
    tuned,
)
from benchmark.unlearners.base import Unlearner

SPACE = {
    "epochs": Int(low=1, search=(1, 5)),
    "lr": Float(low=0.0, low_open=True, search=(1e-4, 1e-1), log=True),
    "L": Float(low=0.0, low_open=True, none_ok=True),
    "precision": Choice(options=("float64", "model")),
    "flag": Bool(),
}


def test_values_are_checked_and_coerced() -> None:
    out = check_params("m", SPACE, {"epochs": 3.0, "lr": 1, "L": None, "precision": "model", "flag": False})
    assert out == {"epochs": 3, "lr": 1.0, "L": None, "precision": "model", "flag": False}
    assert type(out["epochs"]) is int and type(out["lr"]) is float


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("epochs", 0, "an integer in [1, inf)"),
        ("epochs", 2.5, "an integer"),
        ("epochs", True, "an integer"),
        ("epochs", "3", "an integer"),
        ("lr", 0.0, "a number in (0.0, inf)"),
        ("lr", -0.1, "a number"),
        ("lr", float("nan"), "a number"),
        ("L", "big", "or None"),
        ("precision", "foo", "one of 'float64', 'model'"),
        ("flag", 1, "one of True, False"),
        ("nope", 1, "no such parameter; known: L, epochs, flag, lr, precision"),
    ],
)
def test_bad_values_fail_in_one_line_naming_the_key(key: str, value: object, fragment: str) -> None:
    with pytest.raises(ParamError) as err:
        check_params("m", SPACE, {key: value})
    message = str(err.value)
    assert message.startswith(f"m.{key}: ") and fragment in message and "\n" not in message


def test_tuned_parameters_are_those_with_a_search_range() -> None:
    assert list(tuned(SPACE)) == ["epochs", "lr"]
    assert not any(p.tuned for p in infer_space({"a": [1], "b": [2]}).values())
    assert Anything().check(object, "x") is object


def test_suggest_samples_inside_the_search_range_with_a_seeded_optuna_study() -> None:
    def draw(seed: int) -> list[dict[str, object]]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        out = []
        for _ in range(5):
            trial = study.ask()
            out.append({k: p.suggest(trial, k) for k, p in tuned(SPACE).items()})
            study.tell(trial, 0.0)
        return out

    first = draw(0)
    assert first == draw(0)
    assert all(1 <= d["epochs"] <= 5 and 1e-4 <= d["lr"] <= 1e-1 for d in first)  # type: ignore[operator]


class _Spaced(Unlearner):
    name = "spaced"
    space = {"k": Int(low=1), "mode": Choice(options=("a", "b"))}
    params = {"k": [2, 4], "mode": ["a"]}


def test_unlearner_checks_its_parameters_at_construction() -> None:
    assert _Spaced(k=3.0).hparams == {"k": 3, "mode": "a"}
    with pytest.raises(ParamError, match=r"^spaced\.k: got 0; allowed: an integer in \[1, inf\)$"):
        _Spaced(k=0)
    with pytest.raises(ParamError, match=r"^spaced\.mode: got 'c'"):
        _Spaced.check_grid({"k": [1], "mode": ["a", "c"]})
    with pytest.raises(ParamError, match="no such parameter"):
        _Spaced(other=1)
