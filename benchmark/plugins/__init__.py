"""Tools for method authors: conformance checks (``check-plugin``, pytest helpers) and ``new-method``.

Modules: :mod:`~benchmark.plugins.problem` (the tiny problem), :mod:`~benchmark.plugins.guard` (the
test-data guard), :mod:`~benchmark.plugins.checks` (the checks), :mod:`~benchmark.plugins.conformance`
(running all checks, the report), :mod:`~benchmark.plugins.testing` (pytest parametrisation),
:mod:`~benchmark.plugins.scaffold` (``new-method``).
"""

from benchmark.plugins.checks import CHECKS, CheckResult
from benchmark.plugins.conformance import format_results, run_conformance
from benchmark.plugins.scaffold import ScaffoldError, scaffold_method, scaffold_package
from benchmark.plugins.testing import check, parametrize_with_checks

__all__ = [
    "CHECKS",
    "CheckResult",
    "ScaffoldError",
    "check",
    "format_results",
    "parametrize_with_checks",
    "run_conformance",
    "scaffold_method",
    "scaffold_package",
]
