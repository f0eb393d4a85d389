"""Aggregate result rows over seeds and render the leaderboard (Markdown, HTML, CSV, JSON, plots)."""

from benchmark.leaderboard.aggregate import (
    METRICS,
    RESULT_COLUMNS,
    final_rows,
    mean_ci,
    metrics_json,
    normalise,
    summarise,
    summarise_steps,
)
from benchmark.leaderboard.plots import make_plots, plot_suite
from benchmark.leaderboard.render import write_leaderboard

__all__ = [
    "METRICS",
    "RESULT_COLUMNS",
    "final_rows",
    "make_plots",
    "mean_ci",
    "metrics_json",
    "normalise",
    "plot_suite",
    "summarise",
    "summarise_steps",
    "write_leaderboard",
]
