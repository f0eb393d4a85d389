"""Declared parameter spaces of the unlearning methods (in the spirit of scikit-learn's
``_parameter_constraints``): one typed :class:`Param` per hyperparameter.

The same declaration serves three readers:

* the method's constructor (:meth:`Unlearner.__init__`) checks and coerces every value, so a bad value
  fails before any training, with a one-line message naming the parameter and what is allowed;
* ``unlearn-bench validate`` checks every grid in ``params.yaml`` against it before a stage runs;
* the tuner samples the parameters that declare a ``search`` range (Optuna's ``trial.suggest_*``).

A parameter with ``search=None`` is not tuned (structural or cost settings such as precisions and batch
sizes keep their configured value). Values are checked, not guessed: ``Int`` accepts ints (and integral
floats), ``Float`` ints or floats, ``Choice`` exactly its options.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class ParamError(ValueError):
    """A hyperparameter value outside its declared space; the message starts with ``method.param``."""


class Trial(Protocol):
    """The part of ``optuna.trial.Trial`` a :class:`Param` uses to sample itself."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class Param:
    """One hyperparameter. ``none_ok``: ``None`` is allowed (e.g. "use the recipe's value")."""

    none_ok: bool = False
    doc: str = ""

    @property
    def tuned(self) -> bool:
        """Whether the tuner samples this parameter (it declares a search range)."""
        return getattr(self, "search", None) is not None

    def allowed(self) -> str:
        raise NotImplementedError

    def _check(self, value: Any) -> Any:
        raise NotImplementedError

    def check(self, value: Any, where: str) -> Any:
        """``value`` coerced to the parameter's type, or :class:`ParamError` naming ``where``."""
        if value is None and self.none_ok:
            return None
        try:
            return self._check(value)
        except (TypeError, ValueError):
            pass
        raise ParamError(f"{where}: got {value!r}; allowed: {self.allowed()}")

    def suggest(self, trial: Trial, name: str) -> Any:
        raise NotImplementedError(f"{name} declares no search range")


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    return f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high is None else ']'}"


@dataclass(frozen=True, kw_only=True)
class Int(Param):
    """An integer in [low, high] (either bound may be open-ended: ``None``); ``search`` = (lo, hi)."""

    low: int | None = None
    high: int | None = None
    search: tuple[int, int] | None = None
    log: bool = False

    def allowed(self) -> str:
        return f"an integer in {_range_text(self.low, self.high, False)}" + (
            " or None" if self.none_ok else ""
        )

    def _check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
        v = int(value)
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            raise ValueError
        return v

    def suggest(self, trial: Trial, name: str) -> int:
        if self.search is None:
            return super().suggest(trial, name)
        return int(trial.suggest_int(name, self.search[0], self.search[1], log=self.log))


@dataclass(frozen=True, kw_only=True)
class Float(Param):
    """A finite real in [low, high] (``low_open``: low excluded); ``search`` = (lo, hi), ``log`` scale."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    search: tuple[float, float] | None = None
    log: bool = False

    def allowed(self) -> str:
        return f"a number in {_range_text(self.low, self.high, self.low_open)}" + (
            " or None" if self.none_ok else ""
        )

    def _check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError
        v = float(value)
        if not math.isfinite(v):
            raise ValueError
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise ValueError
        if self.high is not None and v > self.high:
            raise ValueError
        return v

    def suggest(self, trial: Trial, name: str) -> float:
        if self.search is None:
            return super().suggest(trial, name)
        return float(trial.suggest_float(name, self.search[0], self.search[1], log=self.log))


@dataclass(frozen=True, kw_only=True)
class Choice(Param):
    """One of ``options`` (compared by value and type: ``True`` is not ``1``); ``search``: the options the
    tuner samples (a subset of ``options``)."""

    options: tuple[Any, ...]
    search: tuple[Any, ...] | None = None

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options) + (" or None" if self.none_ok else "")

    def _check(self, value: Any) -> Any:
        for option in self.options:
            if value == option and type(value) is type(option):
                return option
            if isinstance(option, float) and isinstance(value, int) and not isinstance(value, bool) \
                    and float(value) == option:  # fmt: skip
                return option
        raise ValueError

    def suggest(self, trial: Trial, name: str) -> Any:
        if self.search is None:
            return super().suggest(trial, name)
        return trial.suggest_categorical(name, list(self.search))


def Bool(*, search: bool = False, doc: str = "") -> Choice:  # noqa: N802 - reads like the other types
    """``True`` or ``False`` (tuned over both when ``search``)."""
    return Choice(options=(True, False), search=(True, False) if search else None, doc=doc)


@dataclass(frozen=True, kw_only=True)
class Anything(Param):
    """No declared constraint: what a plugin without a ``space`` gets for each key of its grid."""

    def allowed(self) -> str:
        return "any value"

    def _check(self, value: Any) -> Any:
        return value


Space = Mapping[str, Param]


def infer_space(grid: Mapping[str, list[Any]]) -> dict[str, Param]:
    """The permissive space of a method that declares only a grid: every key accepts any value."""
    return {key: Anything() for key in grid}


def check_params(method: str, space: Space, values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value checked against ``space`` (unknown keys are an error), coerced to its type."""
    unknown = sorted(set(values) - set(space))
    if unknown:
        raise ParamError(f"{method}.{unknown[0]}: no such parameter; known: {', '.join(sorted(space))}")
    return {key: space[key].check(value, f"{method}.{key}") for key, value in values.items()}


def tuned(space: Space) -> dict[str, Param]:
    """The parameters the tuner samples (those with a ``search`` range), in name order."""
    return {key: space[key] for key in sorted(space) if space[key].tuned}


def describe(space: Space) -> list[dict[str, str]]:
    """One row per parameter (name, allowed values, search range, doc) for docs and ``unlearn-bench list``."""
    rows = []
    for key in sorted(space):
        p = space[key]
        search = getattr(p, "search", None)
        rows.append(
            {
                "param": key,
                "allowed": p.allowed(),
                "search": ""
                if search is None
                else (f"{search}" + (" log" if getattr(p, "log", False) else "")),
                "doc": p.doc,
            }
        )
    return rows
