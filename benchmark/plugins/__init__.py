"""Tools for method authors: conformance checks (``check-plugin``) and the scaffold (``new-method``)."""

from benchmark.plugins.conformance import CHECKS, CheckResult, format_results, run_conformance
from benchmark.plugins.scaffold import ScaffoldError, scaffold_method

__all__ = ["CHECKS", "CheckResult", "ScaffoldError", "format_results", "run_conformance", "scaffold_method"]
