"""Every conformance check on every registered method (the built-ins, and plugins when installed): one test
per method × check, ids ``<method>-<check>`` (e.g. ``finetune-deterministic``).

The checks of one method share one evaluation (:func:`benchmark.plugins.testing.evaluation`): the tiny
problem is built once per session and each method's request sequence is traced once.
"""

from __future__ import annotations

from benchmark.plugins import check, parametrize_with_checks


@parametrize_with_checks()
def test_conformance(method: str, check_name: str) -> None:
    check(method, check_name)
