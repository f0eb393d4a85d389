"""Aggregate result rows over seeds and render the leaderboard (Markdown, HTML, CSV, JSON, plots)."""

from benchmark.leaderboard.aggregate import (
    METRICS,
    PAIRED_COLUMNS,
    POP_METRICS,
    RESULT_COLUMNS,
    final_rows,
    mean_ci,
    metrics_json,
    normalise,
    paired_vs_best,
    summarise,
    summarise_steps,
)
from benchmark.leaderboard.plots import make_plots, plot_suite
from benchmark.leaderboard.render import write_leaderboard

__all__ = [
    "METRICS",
    "PAIRED_COLUMNS",
    "POP_METRICS",
    "RESULT_COLUMNS",
    "final_rows",
    "make_plots",
    "mean_ci",
    "metrics_json",
    "normalise",
    "paired_vs_best",
    "plot_suite",
    "summarise",
    "summarise_steps",
    "write_leaderboard",
]
