"""Aggregate result rows over seeds and render the leaderboard (Markdown, HTML, CSV, JSON, plots)."""

from benchmark.leaderboard.aggregate import (
    METRICS,
    PAIRED_COLUMNS,
    RESULT_COLUMNS,
    final_rows,
    margin_vs_reference,
    mean_ci,
    metrics_json,
    noise_floor,
    normalise,
    paired_vs_best,
    read_results,
    seed_table,
    summarise,
    summarise_steps,
)
from benchmark.leaderboard.headline import choose_params, headline
from benchmark.leaderboard.plots import make_plots, plot_suite
from benchmark.leaderboard.population import (
    attach_population,
    population_summary,
    read_population,
)
from benchmark.leaderboard.render import write_leaderboard

__all__ = [
    "METRICS",
    "PAIRED_COLUMNS",
    "RESULT_COLUMNS",
    "attach_population",
    "choose_params",
    "final_rows",
    "headline",
    "make_plots",
    "margin_vs_reference",
    "mean_ci",
    "metrics_json",
    "noise_floor",
    "normalise",
    "paired_vs_best",
    "plot_suite",
    "population_summary",
    "read_population",
    "read_results",
    "seed_table",
    "summarise",
    "summarise_steps",
    "write_leaderboard",
]
