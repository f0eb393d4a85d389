"""The conformance checks as parametrised pytest tests, like scikit-learn's ``parametrize_with_checks``.

In a test file (the built-ins' is ``tests/unit/test_conformance_builtins.py``; ``unlearn-bench new-method``
writes one for a new method)::

    from benchmark.plugins import check, parametrize_with_checks

    @parametrize_with_checks(["my_method"])      # or (): every registered method
    def test_conformance(method, check_name):
        check(method, check_name)

gives one test per (method, check), with ids such as ``my_method-deterministic``. The checks of one method
share one :class:`~benchmark.plugins.checks.Evaluation` (cached per method class, parameters, seed and
budget), so the expensive parts (the tiny problem, the traced request sequence, the second run and the
budget run) are computed once however many of its checks run.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from benchmark.plugins.checks import CHECKS, CheckResult, Evaluation
from benchmark.unlearners.base import Unlearner, available_unlearners, get_unlearner

_CACHE: OrderedDict[tuple[Any, ...], Evaluation] = OrderedDict()
CACHE_SIZE = 64  # evaluations kept (each holds a few state_dicts of the tiny MLP)


def parametrize_with_checks(names: Iterable[str] | None = None, checks: Iterable[str] | None = None) -> Any:
    """``pytest.mark.parametrize(("method", "check_name"), ...)`` over every method × check.

    ``names``: registered method names; ``None`` means every method registered when the test module is
    collected (the built-ins and the installed entry-point plugins, from
    :func:`~benchmark.unlearners.base.available_unlearners`). ``checks``: a subset of :data:`CHECKS`
    (default all). Test ids read ``<method>-<check>``.
    """
    import pytest  # a test-time dependency only

    if names is None:
        methods = sorted(available_unlearners())
    else:
        methods = [names] if isinstance(names, str) else list(names)
    wanted = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown conformance check(s) {unknown}; the checks are {', '.join(CHECKS)}")
    cases = [pytest.param(m, c, id=f"{m}-{c}") for m in methods for c in wanted]
    return pytest.mark.parametrize(("method", "check_name"), cases)


def evaluation(
    name_or_cls: str | type[Unlearner],
    params: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    budget_s: float = 0.5,
    grace_s: float = 2.0,
) -> Evaluation:
    """The shared (cached) evaluation of a method; a name is keyed by the class it resolves to now."""
    target: Any = name_or_cls
    if isinstance(name_or_cls, str):
        try:
            target = get_unlearner(name_or_cls)
        except Exception:  # unknown: the "registered" check reports it; do not cache by a class
            target = name_or_cls
    key = (target, repr(sorted((params or {}).items())), seed, budget_s, grace_s)
    ev = _CACHE.get(key)
    if ev is None:
        ev = _CACHE[key] = Evaluation(name_or_cls, params, seed=seed, budget_s=budget_s, grace_s=grace_s)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return ev


def clear_cache() -> None:
    """Forget every shared evaluation (the next :func:`check` runs the method again)."""
    _CACHE.clear()


def check(
    name_or_cls: str | type[Unlearner],
    check_name: str,
    params: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    budget_s: float = 0.5,
    grace_s: float = 2.0,
) -> CheckResult:
    """Run one conformance check; return its PASS result or raise ``AssertionError`` with the reason.

    ``params`` overrides the method's ``test_params``. Shares the method's evaluation with its other checks.
    """
    ev = evaluation(name_or_cls, params, seed=seed, budget_s=budget_s, grace_s=grace_s)
    result = ev.result(check_name)
    if not result.passed:
        label = name_or_cls if isinstance(name_or_cls, str) else getattr(name_or_cls, "__name__", name_or_cls)
        raise AssertionError(f"{label}: {result}")
    return result
