"""Leaderboard figures (seaborn style, Agg backend, deterministic PNGs).

Per suite, under ``plots_dir``:

* ``<suite>_tow_by_step.png`` — heatmap of the mean ToW over seeds, one row per params_id (best final
  ToW first), one column per request step, one panel per protocol;
* ``<suite>_pareto.png`` — wall-clock seconds per request (log x) vs final-step ToW, one labelled
  point per params_id (with the ToW CI as error bar), one panel per protocol;
* ``<suite>_forget_acc_by_step.png`` — forget-set accuracy vs step, the retrained (gold) model's
  as a dashed black line;
* ``<suite>_js_by_step.png`` — mean JS divergence to the gold model on the forget set vs step (the
  ``retrain`` line is the seed-to-seed reference).

Only ``ok`` rows are plotted; a figure without any data is not written.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless: never pick an interactive backend
    matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmark.leaderboard.aggregate import normalise, summarise, summarise_steps  # noqa: E402

__all__ = ["PLOT_KINDS", "make_plots", "plot_path", "plot_suite"]

PLOT_KINDS: dict[str, str] = {
    "tow_by_step": "ToW by request step",
    "pareto": "Cost vs ToW (Pareto)",
    "forget_acc_by_step": "Forget-set accuracy by step",
    "js_by_step": "JS divergence to the gold model on the forget set, by step",
}
REFERENCE_STYLE = {"original": ("0.55", ":"), "retrain": ("0.3", "-.")}
_DPI = 110
_PNG_METADATA = {"Software": None}  # no matplotlib version string: same input, same bytes


def plot_path(plots_dir: Path, suite: str, kind: str) -> Path:
    """Where the ``kind`` figure (a key of :data:`PLOT_KINDS`) of ``suite`` is written."""
    return Path(plots_dir) / f"{_safe(suite)}_{kind}.png"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _palette(params_ids: list[str]) -> dict[str, tuple]:
    colors = sns.color_palette("tab10" if len(params_ids) <= 10 else "husl", max(len(params_ids), 1))
    return dict(zip(params_ids, colors, strict=False))


def _style(method: str, params_id: str, palette: dict[str, tuple]) -> dict:
    if method in REFERENCE_STYLE:
        color, ls = REFERENCE_STYLE[method]
        return {"color": color, "linestyle": ls, "marker": None}
    return {"color": palette[params_id], "linestyle": "-", "marker": "o"}


def _figure(
    n_panels: int, width: float = 4.6, height: float = 3.6, sharey: bool = True
) -> tuple[Figure, list[Axes]]:
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Figure, path: Path, handles: list, labels: list[str]) -> Path:
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                   title="method [params]", fontsize="small")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI, bbox_inches="tight", metadata=_PNG_METADATA)
    return path


def _collect_legend(axes: list[Axes]) -> tuple[list, list[str]]:
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    labels = sorted(seen, key=lambda s: (s.startswith("retrained (gold)"), s))
    return [seen[lab] for lab in labels], labels


def _lines_by_step(ax: Axes, steps: pd.DataFrame, metric: str, palette: dict, scale: float = 1.0) -> bool:
    drawn = False
    for (method, pid), g in steps.groupby(["method", "params_id"], sort=True):
        g = g.dropna(subset=[f"{metric}_mean"]).sort_values("step")
        if g.empty:
            continue
        x = g["step"].to_numpy(dtype=float)
        y = g[f"{metric}_mean"].to_numpy(dtype=float) * scale
        ci = g[f"{metric}_ci"].to_numpy(dtype=float) * scale
        st = _style(method, pid, palette)
        ax.plot(x, y, label=pid, color=st["color"], linestyle=st["linestyle"], marker=st["marker"],
                markersize=4, linewidth=1.6)  # fmt: skip
        band = np.isfinite(ci)
        if band.any():
            ax.fill_between(x[band], (y - ci)[band], (y + ci)[band], color=st["color"], alpha=0.15,
                            linewidth=0)  # fmt: skip
        drawn = True
    return drawn


def _step_axis(ax: Axes, steps: pd.Series) -> None:
    s = sorted({int(v) for v in steps.dropna()})
    if s and len(s) <= 20:
        ax.set_xticks(s)


def _plot_tow_by_step(ok: pd.DataFrame, suite: str, path: Path, palette: dict) -> Path | None:
    """Heatmap per protocol: one row per params_id (best final ToW first), one column per request step.

    With ~30 configurations a line plot is unreadable; a table of colours with the value written in
    each cell shows both the ranking and the drift over sequential requests."""
    steps = summarise_steps(ok)
    if not steps["tow_mean"].notna().any():
        return None
    protocols = sorted(steps["protocol"].unique())
    n_rows = int(steps["params_id"].nunique())
    n_steps = int(steps["step"].nunique())
    fig = Figure(figsize=(max(3.2, 0.7 * n_steps + 2.6) * len(protocols), 0.28 * n_rows + 1.6), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(protocols), squeeze=False).ravel().tolist()
    for ax, proto in zip(axes, protocols, strict=True):
        grid = steps[steps["protocol"] == proto].pivot_table(
            index="params_id", columns="step", values="tow_mean", aggfunc="first"
        )
        grid = grid.loc[grid[grid.columns.max()].sort_values(ascending=False, kind="mergesort").index]
        sns.heatmap(grid, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", annot=True, fmt=".2f",
                    annot_kws={"fontsize": 7}, cbar=ax is axes[-1], linewidths=0.3,
                    cbar_kws={"label": "ToW (1 = as retrained)"})  # fmt: skip
        ax.set_title(str(proto))
        ax.set_xlabel("request step")
        ax.set_ylabel("")
    fig.suptitle(f"{suite}: ToW after each request (mean over seeds; rows sorted by final ToW)")
    return _save(fig, path, [], [])


def _plot_forget_acc(ok: pd.DataFrame, suite: str, path: Path, palette: dict) -> Path | None:
    steps = summarise_steps(ok)
    if not steps["acc_forget_mean"].notna().any():
        return None
    protocols = sorted(steps["protocol"].unique())
    fig, axes = _figure(len(protocols))
    for ax, proto in zip(axes, protocols, strict=True):
        sub = steps[steps["protocol"] == proto]
        drawn = _lines_by_step(ax, sub, "acc_forget", palette, scale=100.0)
        gold = ok[ok["protocol"] == proto].dropna(subset=["gold_acc_forget", "step"])
        if len(gold):
            g = gold.groupby("step", sort=True)["gold_acc_forget"].mean()
            ax.plot(g.index.to_numpy(dtype=float), g.to_numpy(dtype=float) * 100.0, color="black",
                    linestyle="--", linewidth=2.0, label="retrained (gold)", zorder=5)  # fmt: skip
            drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(str(proto))
        ax.set_xlabel("request step")
        _step_axis(ax, sub["step"])
    axes[0].set_ylabel("accuracy on forget set (%)")
    fig.suptitle(f"{suite}: forget-set accuracy vs step (mean ± 95% CI; dashed = retrained)")
    return _save(fig, path, *_collect_legend(axes))


def _plot_pareto(ok: pd.DataFrame, suite: str, path: Path, palette: dict) -> Path | None:
    final = summarise(ok)
    wall = ok[ok["wall_s"] > 0].groupby(["protocol", "method", "params_id"], sort=True)["wall_s"].mean()
    final = final.join(wall.rename("wall_per_request"), on=["protocol", "method", "params_id"])
    final = final[np.isfinite(final["tow_mean"]) & (final["wall_per_request"] > 0)]
    if final.empty:
        return None
    protocols = sorted(ok["protocol"].dropna().unique())
    fig, axes = _figure(len(protocols), width=5.2, height=4.0)
    for ax, proto in zip(axes, protocols, strict=True):
        sub = final[final["protocol"] == proto].sort_values(["method", "params_id"])
        if sub.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        for _, r in sub.iterrows():
            st = _style(r["method"], r["params_id"], palette)
            yerr = r["tow_ci"] if np.isfinite(r["tow_ci"]) else None
            ax.errorbar(r["wall_per_request"], r["tow_mean"], yerr=yerr, fmt=st["marker"] or "s",
                        color=st["color"], markersize=6, capsize=2, label=r["params_id"])  # fmt: skip
            ax.annotate(str(r["params_id"]), (r["wall_per_request"], r["tow_mean"]), xytext=(4, 4),
                        textcoords="offset points", fontsize=7)  # fmt: skip
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.08)  # room for the point labels
        ax.set_title(str(proto))
        ax.set_xlabel("wall-clock s per request (log)")
    axes[0].set_ylabel("final ToW (higher is better)")
    fig.suptitle(f"{suite}: cost vs final ToW (mean ± 95% CI over seeds)")
    return _save(fig, path, *_collect_legend(axes))


def _plot_js_by_step(ok: pd.DataFrame, suite: str, path: Path, palette: dict) -> Path | None:
    steps = summarise_steps(ok)
    if not steps["js_forget_mean"].notna().any():
        return None
    protocols = sorted(steps["protocol"].unique())
    fig, axes = _figure(len(protocols), sharey=False)  # class deletion is an order of magnitude above random
    for ax, proto in zip(axes, protocols, strict=True):
        sub = steps[steps["protocol"] == proto]
        if not _lines_by_step(ax, sub, "js_forget", palette):
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(str(proto))
        ax.set_xlabel("request step")
        _step_axis(ax, sub["step"])
    axes[0].set_ylabel("JS(method, gold) on forget set (nats)")
    fig.suptitle(
        f"{suite}: JS divergence to the gold model on the forget set (mean ± 95% CI; lower is closer)"
    )
    return _save(fig, path, *_collect_legend(axes))


_PLOTTERS = {
    "tow_by_step": _plot_tow_by_step,
    "pareto": _plot_pareto,
    "forget_acc_by_step": _plot_forget_acc,
    "js_by_step": _plot_js_by_step,
}


def plot_suite(df: pd.DataFrame, suite: str, plots_dir: Path) -> list[Path]:
    """Write the figures of one suite under ``plots_dir``; returns the paths written (in
    :data:`PLOT_KINDS` order). Figures with no ``ok`` data are skipped (and not returned)."""
    data = normalise(df)
    ok = data[(data["suite"] == suite) & (data["status"] == "ok")]
    if ok.empty:
        return []
    palette = _palette(sorted(data.loc[data["suite"] == suite, "params_id"].dropna().unique()))
    written: list[Path] = []
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
        for kind, plotter in _PLOTTERS.items():
            path = plotter(ok, suite, plot_path(plots_dir, suite, kind), palette)
            if path is not None:
                written.append(path)
    return written


def make_plots(df: pd.DataFrame, plots_dir: Path) -> list[Path]:
    """:func:`plot_suite` for every suite of ``df`` (sorted by name)."""
    data = normalise(df)
    paths: list[Path] = []
    for suite in sorted(data["suite"].dropna().unique()):
        paths += plot_suite(data, suite, plots_dir)
    return paths
