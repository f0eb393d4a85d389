"""Running the conformance checks on one method and printing the report (``unlearn-bench check-plugin``).

``run_conformance("my_method")`` runs a method with its ``test_params`` on the tiny problem
(:mod:`benchmark.plugins.problem`, a few seconds, no pipeline output needed) and returns one
:class:`~benchmark.plugins.checks.CheckResult` per check of :data:`~benchmark.plugins.checks.CHECKS`
(described in :mod:`benchmark.plugins.checks`). Each call evaluates the method afresh; the pytest helpers of
:mod:`benchmark.plugins.testing` share one evaluation per method between its checks instead.
"""

from __future__ import annotations

from typing import Any

from benchmark.plugins.checks import CHECKS, CheckResult, Evaluation
from benchmark.unlearners.base import Unlearner


def run_conformance(
    name_or_cls: str | type[Unlearner],
    params: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    budget_s: float = 0.5,
    grace_s: float = 2.0,
) -> list[CheckResult]:
    """Run every conformance check on a method (registered name or class); one result per :data:`CHECKS`.

    ``params`` overrides the method's ``test_params`` (keys of its ``params`` grid).
    """
    results = Evaluation(name_or_cls, params, seed=seed, budget_s=budget_s, grace_s=grace_s).results()
    assert [r.name for r in results] == list(CHECKS)
    return results


def format_results(name: str, results: list[CheckResult]) -> str:
    """The report ``unlearn-bench check-plugin`` prints."""
    lines = [str(r) for r in results]
    n_ok = sum(r.passed for r in results)
    verdict = "conforms" if n_ok == len(results) else "does NOT conform"
    lines.append(f"{name}: {n_ok}/{len(results)} checks passed; {verdict}")
    return "\n".join(lines)
