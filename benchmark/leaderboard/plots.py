"""Leaderboard figures (seaborn style, Agg backend, deterministic PNGs).

Per suite, under ``plots_dir``, each with one panel per protocol and one line / point per *headline*
method (:func:`benchmark.leaderboard.headline.headline`, one params_id per method; the full grid is in
the CSVs), colours and line styles fixed per method across panels and figures, legend below:

* ``<suite>_tow_by_step.png`` — mean ToW over seeds after each request, with the 95% CI band
  clipped to ToW's range [0, 1];
* ``<suite>_pareto.png`` — wall-clock seconds per request (log x) vs ToW AUC (mean ToW over the K
  requests, ± 95% CI), numbered points (the number is the legend entry; labels pushed apart so they do
  not overlap), the Pareto front (no other method is both cheaper and better) as a step line;
* ``<suite>_forget_acc_by_step.png`` — forget-set accuracy vs step (band clipped to [0, 100] %), the
  retrained (gold) model's as a dashed black line;
* ``<suite>_js_by_step.png`` — mean JS divergence to the gold model on the forget set vs step (band
  clipped to [0, ln 2]; the ``retrain`` line is the seed-to-seed reference);
* ``<suite>_klom_cdf.png`` — empirical CDF of the per-example KLoM at the final step (population file),
  the ``klom_floor`` of another retrain population as a vertical reference line.

Only ``ok`` rows are plotted; a figure without any data is not written. Protocol names are read from
the data (nothing assumes ``random`` or ``class``).
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from importlib import metadata
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
from PIL import Image as PILImage  # noqa: E402

from benchmark.core.status import Status  # noqa: E402
from benchmark.leaderboard.aggregate import normalise, seed_table, summarise, summarise_steps  # noqa: E402
from benchmark.leaderboard.headline import headline  # noqa: E402
from benchmark.leaderboard.population import final_examples  # noqa: E402
from benchmark.runner.eval_code import tree_hash  # noqa: E402

__all__ = ["PLOT_KINDS", "VALID_RANGE", "clip_band", "make_plots", "method_styles", "plot_path", "plot_suite",
           "repel"]

PLOT_KINDS: dict[str, str] = {
    "tow_by_step": "ToW by request step",
    "pareto": "Cost vs ToW AUC (Pareto)",
    "forget_acc_by_step": "Forget-set accuracy by step",
    "js_by_step": "JS divergence to the gold model on the forget set, by step",
    "klom_cdf": "Per-example KLoM at the final step (CDF)",
}
# the range each plotted metric can take (CI bands are clipped to it)
VALID_RANGE: dict[str, tuple[float, float]] = {
    "tow": (0.0, 1.0), "tow_auc": (0.0, 1.0), "acc_forget": (0.0, 1.0), "acc_retain": (0.0, 1.0),
    "acc_test": (0.0, 1.0), "js_forget": (0.0, math.log(2.0)), "js_test": (0.0, math.log(2.0)),
}  # fmt: skip
REFERENCE_STYLE = {"original": ("0.55", ":"), "retrain": ("0.1", "-.")}
_LINESTYLES = ("-", "--", (0, (3, 1, 1, 1)), (0, (1, 1)))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_DPI = 110
_PNG_METADATA = {"Software": None}  # no matplotlib version string: same input, same bytes
_KEY_FIELD = "unlearn-bench input"  # PNG text chunk: the hash of what the figure was drawn from


@dataclass(frozen=True)
class Target:
    """Where a figure goes and the hash of its inputs (:func:`_input_key`), stored in the PNG by :func:`_save`
    so that :func:`plot_suite` can skip a figure already drawn from the same inputs."""

    path: Path
    key: str | None = None


def _input_key(ok: pd.DataFrame, head: pd.DataFrame, ex: pd.DataFrame, suite: str) -> str:
    """Hash of everything a suite's figures are drawn from: its rows, its headline, its per-example KLoM,
    this module's code and the plotting libraries' versions."""
    h = hashlib.sha256()
    for frame in (ok, head, ex[ex["suite"] == suite] if "suite" in ex.columns else ex):
        h.update(frame.to_csv(index=False).encode())
    h.update(tree_hash(Path(__file__).parents[1], ("leaderboard/plots.py",)).encode())
    h.update(f"{metadata.version('matplotlib')} {metadata.version('seaborn')} {_DPI}".encode())
    return h.hexdigest()[:32]


def _drawn_from(path: Path) -> str | None:
    """The input key stored in a figure written by :func:`_save` (None: no file or no key)."""
    try:
        with PILImage.open(path) as im:
            return im.text.get(_KEY_FIELD)  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return None


def plot_path(plots_dir: Path, suite: str, kind: str) -> Path:
    """Where the ``kind`` figure (a key of :data:`PLOT_KINDS`) of ``suite`` is written."""
    return Path(plots_dir) / f"{_safe(suite)}_{kind}.png"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def clip_band(mean: np.ndarray, half: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the band ``mean ± half`` clipped to :data:`VALID_RANGE` of ``metric``
    (unclipped for a metric without a known range)."""
    lo, hi = VALID_RANGE.get(metric, (-math.inf, math.inf))
    mean, half = np.asarray(mean, dtype=float), np.asarray(half, dtype=float)
    return np.clip(mean - half, lo, hi), np.clip(mean + half, lo, hi)


def method_styles(methods: list[str]) -> dict[str, dict]:
    """A fixed style per method: ``original``/``retrain`` grey/black reference lines without markers;
    the others tab10 colours, cycling line style and marker every 10 methods (sorted by name)."""
    colors = sns.color_palette("tab10", 10)
    styles: dict[str, dict] = {}
    others = sorted(m for m in set(methods) if m not in REFERENCE_STYLE)
    for i, m in enumerate(others):
        styles[m] = {"color": colors[i % 10], "linestyle": _LINESTYLES[(i // 10) % len(_LINESTYLES)],
                     "marker": _MARKERS[(i + i // 10) % len(_MARKERS)]}  # fmt: skip
    for m in set(methods) & set(REFERENCE_STYLE):
        color, ls = REFERENCE_STYLE[m]
        styles[m] = {"color": color, "linestyle": ls, "marker": None}
    return styles


def repel(points: np.ndarray, min_dist: float = 14.0, n_iter: int = 200, step: float = 0.5) -> np.ndarray:
    """Label offsets (same units as ``points``, e.g. display pixels) that push labels apart.

    Each label starts at (6, 6) from its point; at every iteration each pair of labels closer than
    ``min_dist`` is pushed apart along the line joining them (coincident labels: vertically, by index),
    and each label is pulled back towards its start by 5%. Deterministic (no random jitter)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    start = pts + 6.0
    pos = start.copy()
    n = len(pts)
    for _ in range(n_iter):
        moved = False
        for i in range(n):
            for j in range(i + 1, n):
                d = pos[j] - pos[i]
                dist = float(np.hypot(*d))
                if dist >= min_dist:
                    continue
                u = d / dist if dist > 1e-9 else np.array([0.0, 1.0])
                push = (min_dist - dist) * step
                pos[i] -= u * push / 2
                pos[j] += u * push / 2
                moved = True
        pos += 0.05 * (start - pos)
        if not moved:
            break
    return pos - pts


def _figure(n_panels: int, width: float = 4.8, height: float = 3.6, sharey: bool = True
            ) -> tuple[Figure, list[Axes]]:  # fmt: skip
    ncols = min(n_panels, 3)
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Figure, target: Target, handles: list, labels: list[str], title: str = "method") -> Path:
    fig.tight_layout()
    if handles:  # below the panels, several columns: room for ~20 methods without covering data
        ncol = max(1, min(4, math.ceil(len(labels) / 6)))
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
                   title=title, fontsize="small", ncol=ncol)  # fmt: skip
    target.path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**_PNG_METADATA, **({_KEY_FIELD: target.key} if target.key is not None else {})}
    fig.savefig(target.path, format="png", dpi=_DPI, bbox_inches="tight", metadata=meta)
    return target.path


def _collect_legend(axes: list[Axes]) -> tuple[list, list[str]]:
    seen: dict[str, object] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    labels = sorted(seen, key=lambda s: (s.startswith("retrained (gold)"), s))
    return [seen[lab] for lab in labels], labels


def _lines_by_step(ax: Axes, steps: pd.DataFrame, metric: str, styles: dict, scale: float = 1.0) -> bool:
    drawn = False
    for method, g in steps.groupby("method", sort=True):
        g = g.dropna(subset=[f"{metric}_mean"]).sort_values("step")
        if g.empty:
            continue
        x = g["step"].to_numpy(dtype=float)
        y = g[f"{metric}_mean"].to_numpy(dtype=float)
        ci = g[f"{metric}_ci"].to_numpy(dtype=float)
        st = styles[method]
        ax.plot(x, y * scale, label=str(method), color=st["color"], linestyle=st["linestyle"],
                marker=st["marker"], markersize=4, linewidth=1.5)  # fmt: skip
        band = np.isfinite(ci)
        if band.any():
            lo, hi = clip_band(y[band], ci[band], metric)
            ax.fill_between(x[band], lo * scale, hi * scale, color=st["color"], alpha=0.12, linewidth=0)
        drawn = True
    return drawn


def _step_axis(ax: Axes, steps: pd.Series) -> None:
    s = sorted({int(v) for v in steps.dropna()})
    if s and len(s) <= 20:
        ax.set_xticks(s)


# summarise_steps of the headline rows, shared by the by-step figures of one plot_suite call (the frames
# are alive, hence their ids unique, for the whole call; emptied when it ends)
_STEPS_MEMO: dict[tuple[int, int], pd.DataFrame] = {}


def _headline_steps(ok: pd.DataFrame, head: pd.DataFrame) -> pd.DataFrame:
    memo_key = (id(ok), id(head))
    if memo_key in _STEPS_MEMO:
        return _STEPS_MEMO[memo_key]
    ids = set(zip(head["protocol"], head["params_id"], strict=True))
    keep = [(p, i) in ids for p, i in zip(ok["protocol"], ok["params_id"], strict=True)]
    steps = summarise_steps(ok[keep]) if any(keep) else summarise_steps(ok.iloc[0:0])
    _STEPS_MEMO[memo_key] = steps
    return steps


def _plot_by_step(ok: pd.DataFrame, head: pd.DataFrame, styles: dict, metric: str, scale: float,
                  ylabel: str, title: str, path: Target, gold: str | None = None, sharey: bool = True
                  ) -> Path | None:  # fmt: skip
    steps = _headline_steps(ok, head)
    if not steps[f"{metric}_mean"].notna().any():
        return None
    protocols = sorted(steps["protocol"].dropna().unique())
    fig, axes = _figure(len(protocols), sharey=sharey)
    for ax, proto in zip(axes, protocols, strict=True):
        sub = steps[steps["protocol"] == proto]
        drawn = _lines_by_step(ax, sub, metric, styles, scale)
        if gold is not None:
            g = ok[ok["protocol"] == proto].dropna(subset=[gold, "step"])
            g = g.groupby("step", sort=True)[gold].mean()
            if len(g):
                ax.plot(g.index.to_numpy(dtype=float), g.to_numpy(dtype=float) * scale, color="black",
                        linestyle="--", linewidth=2.0, label="retrained (gold)", zorder=5)  # fmt: skip
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        if metric in VALID_RANGE and metric != "js_forget":
            lo, hi = VALID_RANGE[metric]
            ax.set_ylim(lo * scale - 0.02 * scale, hi * scale + 0.02 * scale)
        ax.set_title(str(proto))
        ax.set_xlabel("request step")
        _step_axis(ax, sub["step"])
    axes[0].set_ylabel(ylabel)
    fig.suptitle(title)
    return _save(fig, path, *_collect_legend(axes))


def _plot_tow_by_step(ok: pd.DataFrame, head: pd.DataFrame, suite: str, path: Target, styles: dict,
                      examples: pd.DataFrame) -> Path | None:  # fmt: skip
    return _plot_by_step(ok, head, styles, "tow", 1.0, "ToW (1 = as retrained)",
                         f"{suite}: ToW after each request (mean ± 95% CI over seeds)", path)  # fmt: skip


def _plot_forget_acc(ok: pd.DataFrame, head: pd.DataFrame, suite: str, path: Target, styles: dict,
                     examples: pd.DataFrame) -> Path | None:  # fmt: skip
    return _plot_by_step(ok, head, styles, "acc_forget", 100.0, "accuracy on forget set (%)",
                         f"{suite}: forget-set accuracy vs step (mean ± 95% CI; dashed = retrained)", path,
                         gold="gold_acc_forget")  # fmt: skip


def _plot_js_by_step(ok: pd.DataFrame, head: pd.DataFrame, suite: str, path: Target, styles: dict,
                     examples: pd.DataFrame) -> Path | None:  # fmt: skip
    return _plot_by_step(ok, head, styles, "js_forget", 1.0, "JS(method, gold) on forget set (nats)",
                         f"{suite}: JS divergence to the gold model on the forget set (lower is closer)",
                         path, sharey=False)  # fmt: skip


def _pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (cost ≤ and ToW ≥, one strictly), by cost."""
    order = np.lexsort((-y, x))
    front, best = [], -math.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def _plot_pareto(ok: pd.DataFrame, head: pd.DataFrame, suite: str, path: Target, styles: dict,
                 examples: pd.DataFrame) -> Path | None:  # fmt: skip
    wall = ok[ok["wall_s"] > 0].groupby(["protocol", "params_id"], sort=True)["wall_s"].mean()
    final = head.join(wall.rename("wall_per_request"), on=["protocol", "params_id"])
    final = final[np.isfinite(final["tow_auc_mean"].astype(float)) & (final["wall_per_request"] > 0)]
    if final.empty:
        return None
    protocols = sorted(head["protocol"].dropna().unique())
    methods = sorted(final["method"].unique())
    number = {m: i + 1 for i, m in enumerate(methods)}
    fig, axes = _figure(len(protocols), width=5.4, height=4.2)
    for ax, proto in zip(axes, protocols, strict=True):
        sub = final[final["protocol"] == proto].sort_values("method")
        if sub.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        x = sub["wall_per_request"].to_numpy(dtype=float)
        y = sub["tow_auc_mean"].to_numpy(dtype=float)
        ci = sub["tow_auc_ci"].to_numpy(dtype=float)
        lo, hi = clip_band(y, np.where(np.isfinite(ci), ci, 0.0), "tow_auc")
        for k, m in enumerate(sub["method"]):
            st = styles[m]
            ax.errorbar(x[k], y[k], yerr=[[y[k] - lo[k]], [hi[k] - y[k]]], fmt=st["marker"] or "s",
                        color=st["color"], markersize=6, capsize=2, label=f"{number[m]} {m}")  # fmt: skip
        front = _pareto_front(x, y)
        ax.step(x[front], y[front], where="post", color="0.4", linewidth=0.8, zorder=0)
        ax.set_xscale("log")
        ax.margins(x=0.12, y=0.1)
        ax.set_ylim(max(-0.02, ax.get_ylim()[0]), min(1.02, ax.get_ylim()[1]))
        ax.get_xlim()  # the final (autoscaled) view limits: the pixel positions for the repel step
        pix = ax.transData.transform(np.column_stack([x, y]))
        offsets = repel(pix, min_dist=11.0) * 72.0 / fig.dpi  # pixels -> points
        for k, m in enumerate(sub["method"]):
            ax.annotate(str(number[m]), (x[k], y[k]), xytext=tuple(offsets[k]), textcoords="offset points",
                        fontsize=7, color=styles[m]["color"],
                        arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5})  # fmt: skip
        ax.set_title(str(proto))
        ax.set_xlabel("wall-clock s per request (log)")
    axes[0].set_ylabel("ToW AUC (mean ToW over requests)")
    fig.suptitle(f"{suite}: cost vs ToW AUC (mean ± 95% CI; grey steps = Pareto front)")
    handles, labels = _collect_legend(axes)
    order = sorted(range(len(labels)), key=lambda i: int(labels[i].split(" ", 1)[0]))
    return _save(fig, path, [handles[i] for i in order], [labels[i] for i in order], title="# method")


def _plot_klom_cdf(ok: pd.DataFrame, head: pd.DataFrame, suite: str, path: Target, styles: dict,
                   examples: pd.DataFrame) -> Path | None:  # fmt: skip
    ex = examples[(examples["suite"] == suite) & np.isfinite(examples["klom"].to_numpy(dtype=float))]
    if ex.empty:
        return None
    method_of = {(p, i): m for p, i, m in head[["protocol", "params_id", "method"]].itertuples(False)}
    protocols = sorted(ex["protocol"].dropna().unique())
    fig, axes = _figure(len(protocols), sharey=True)
    positive = bool((ex["klom"] > 0).all())
    for ax, proto in zip(axes, protocols, strict=True):
        sub = ex[ex["protocol"] == proto]
        for pid, g in sub.groupby("params_id", sort=True):
            m = method_of.get((proto, pid))
            if m is None:  # not the headline params_id of its method
                continue
            v = np.sort(g["klom"].to_numpy(dtype=float))
            st = styles.get(m, {"color": "0.5", "linestyle": "-"})
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", color=st["color"],
                    linestyle=st["linestyle"], linewidth=1.4, label=str(m))  # fmt: skip
        floor = head.loc[head["protocol"] == proto, "klom_floor"] if "klom_floor" in head.columns else []
        floor = pd.to_numeric(pd.Series(floor), errors="coerce").dropna()
        if len(floor):
            ax.axvline(float(floor.median()), color="black", linestyle="--", linewidth=1.5,
                       label="floor: retrain vs retrain (mean KLoM)")  # fmt: skip
        if positive:
            ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(str(proto))
        ax.set_xlabel("KLoM per forget example" + (" (log)" if positive else ""))
    axes[0].set_ylabel("fraction of examples ≤ x")
    fig.suptitle(f"{suite}: per-example KLoM at the final request (lower = closer to retraining)")
    return _save(fig, path, *_collect_legend(axes))


_PLOTTERS = {
    "tow_by_step": _plot_tow_by_step,
    "pareto": _plot_pareto,
    "forget_acc_by_step": _plot_forget_acc,
    "js_by_step": _plot_js_by_step,
    "klom_cdf": _plot_klom_cdf,
}


def plot_suite(df: pd.DataFrame, suite: str, plots_dir: Path, head: pd.DataFrame | None = None,
               examples: pd.DataFrame | None = None) -> list[Path]:  # fmt: skip
    """Write the figures of one suite under ``plots_dir``; returns the paths written (in
    :data:`PLOT_KINDS` order). ``head`` is the headline (one row per method; computed from ``df``
    when omitted, then without population columns); ``examples`` the per-example KLoM rows
    (``<suite>_population_examples.csv``; no CDF without them). Figures with no data are skipped, and an
    earlier file of theirs is removed.

    Each PNG carries the hash of its inputs (:func:`_input_key`); a figure whose file already holds the
    current hash is not drawn again (a leaderboard re-render after one suite changed redraws that suite
    only)."""
    data = normalise(df)
    ok = data[(data["suite"] == suite) & (data["status"] == Status.OK)]
    if ok.empty:
        return []
    if head is None:
        rows = data[data["suite"] == suite]
        seeds = seed_table(rows)
        head = headline(summarise(rows, seeds), seeds, rows)
    head = head[head["suite"] == suite]
    styles = method_styles(sorted(head["method"].dropna().astype(str).unique()))
    ex = final_examples(examples)
    key = _input_key(ok, head, ex, suite)
    written: list[Path] = []
    try:
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.85):
            for kind, plotter in _PLOTTERS.items():
                target = plot_path(plots_dir, suite, kind)
                if _drawn_from(target) == key:
                    written.append(target)
                    continue
                path = plotter(ok, head, suite, Target(target, key), styles, ex)
                if path is not None:
                    written.append(path)
                else:  # no data now (e.g. the suite's population was dropped): no figure of earlier results
                    target.unlink(missing_ok=True)
    finally:
        _STEPS_MEMO.clear()
    return written


def make_plots(df: pd.DataFrame, plots_dir: Path, head: pd.DataFrame | None = None,
               examples: pd.DataFrame | None = None) -> list[Path]:  # fmt: skip
    """:func:`plot_suite` for every suite of ``df`` (sorted by name)."""
    data = normalise(df)
    paths: list[Path] = []
    for suite in sorted(data["suite"].dropna().unique()):
        paths += plot_suite(data, suite, plots_dir, head=head, examples=examples)
    return paths
