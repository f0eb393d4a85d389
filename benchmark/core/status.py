"""The status of one result row (a request of a cell, or a population member).

A ``str`` enum: every member *is* its string (``Status.OK == "ok"``, ``str(Status.OK) == "ok"``,
``json.dumps`` and ``DataFrame.to_csv`` write ``ok``), so result files read and write exactly as with
plain strings, and a CSV value compares equal to the member without conversion.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["PARTIAL", "Status"]


class Status(str, Enum):
    """Outcome of one unit of work (one request of a cell, one population member)."""

    OK = "ok"  # ran and produced finite weights
    SKIPPED = "skipped"  # not applicable (the method's ``skip`` gave a reason, e.g. too many parameters)
    FAILED = "failed"  # raised an exception, or a previous request of the cell did not finish
    NAN = "nan"  # ran, but left non-finite weights
    TIMEOUT = "timeout"  # exceeded the suite's time budget (``BudgetExceeded``)

    # the plain value in text, on every Python (``enum.StrEnum`` needs 3.11; ``requires-python >= 3.10``)
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# Summary status of a group of rows (leaderboard): some rows ok, others not. Not a row status.
PARTIAL = "partial"
