"""Write the leaderboard: README.md, index.html, summary/headline/per-suite CSVs, metrics, plots.

The pages are rendered from Jinja2 templates in ``benchmark/leaderboard/templates`` (``readme.md.j2``,
``index.html.j2`` with ``style.css`` and ``script.js``; the shared explanation ``how_to_read.md`` is
Markdown, converted for the HTML page by :func:`md_inline`). This module builds the tables (cells with
display text and sort value) and hands them to the templates.

Everything written is a deterministic function of the input rows (sorted orders, fixed float
formatting, no timestamps, PNGs without version metadata), so re-running on the same results
reproduces the same bytes and a changed result shows up as a small diff.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from benchmark.core.status import PARTIAL, Status
from benchmark.leaderboard.aggregate import (
    GROUP_KEYS,
    SEQUENCE_METRICS,
    metrics_json,
    normalise,
    seed_table,
    summarise,
)
from benchmark.leaderboard.dvc_files import write_dvc_files
from benchmark.leaderboard.headline import headline
from benchmark.leaderboard.plots import PLOT_KINDS, make_plots, plot_path
from benchmark.leaderboard.population import attach_population

__all__ = ["FLOAT_FORMAT", "Leaderboard", "build", "md_inline", "render_html", "render_markdown", "write_csv",
           "write_leaderboard"]  # fmt: skip

FLOAT_FORMAT = "%.6g"  # CSV floats: 6 significant digits, so reruns diff cleanly
REFERENCE_NOTES = {"retrain": "reference: independent retrain (noise floor)", "original": "do-nothing floor"}
TITLE = "Machine unlearning leaderboard"
TEMPLATES = Path(__file__).parent / "templates"


# ---------------------------------------------------------------------------------------- formatting
def _finite_float(x: Any) -> float | None:
    """``float(x)`` when ``x`` is a finite number, else None (missing, NaN, ±inf or not a number)."""
    try:
        value = float(x)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _is_finite_number(x: Any) -> bool:
    return _finite_float(x) is not None


def _mean_ci(mean: Any, ci: Any, digits: int, scale: float = 1.0) -> str:
    if not _is_finite_number(mean):
        return "–"
    text = f"{float(mean) * scale:.{digits}f}"
    if _is_finite_number(ci):
        text += f" ± {float(ci) * scale:.{digits}f}"
    return text


def _num(x: Any, fmt: str, suffix: str = "") -> str:
    return f"{float(x):{fmt}}{suffix}" if _is_finite_number(x) else "–"


def _squash(text: str, limit: int = 160) -> str:
    """``text`` on one line (runs of whitespace become one space), cut to ``limit`` characters with "…"."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _str(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA else str(x)


@dataclass
class TableCell:
    text: str
    sort: str = ""  # value used by the HTML click-to-sort ("" sorts last)
    bold: bool = False
    code: bool = False


@dataclass
class Column:
    key: str
    title: str
    cell: Callable[[pd.Series], TableCell]
    numeric: bool = True
    when: Callable[[pd.DataFrame], bool] | None = None  # shown only if true for the table's rows


@dataclass
class Table:
    suite: str
    protocol: str
    final_step: Any
    columns: list[Column] = field(default_factory=list)
    rows: list[list[TableCell]] = field(default_factory=list)  # the headline: one row per method
    grid: list[list[TableCell]] = field(default_factory=list)  # every params_id
    grid_columns: list[Column] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # Markdown lines under the table

    @property
    def anchor(self) -> str:
        return re.sub(r"[^A-Za-z0-9_-]+", "-", f"{self.suite}--{self.protocol}")


def _notes(r: pd.Series) -> str:
    status, error = str(r["status"]), _squash(_str(r["error"]))
    if status == Status.SKIPPED:
        return f"skipped: {error}" if error and error != Status.SKIPPED else "skipped"
    if status == PARTIAL:
        return f"{r['n_failed']} of {r['n_seeds']} seeds failed: {error}"
    if status != Status.OK:
        return f"{status}: {error}" if error and error != status else status
    if r.get("tuning_constraint") == "violated":
        return ("tuning: no configuration kept retain accuracy within tuning.max_retain_drop of the gold "
                "model's; the closest is shown")
    return REFERENCE_NOTES.get(str(r["method"]), "")


def _sort_value(x: Any) -> str:
    return repr(round(float(x), 10)) if _is_finite_number(x) else ""


def _stat(m: str, digits: int, scale: float = 1.0) -> Callable[[pd.Series], TableCell]:
    return lambda r: TableCell(_mean_ci(r.get(f"{m}_mean"), r.get(f"{m}_ci"), digits, scale),
                          _sort_value(r.get(f"{m}_mean")))  # fmt: skip


def _numcell(col: str, fmt: str, suffix: str = "") -> Callable[[pd.Series], TableCell]:
    return lambda r: TableCell(_num(r.get(col), fmt, suffix), _sort_value(r.get(col)))


def _vs_best(r: pd.Series) -> TableCell:
    """ "best", "≈ p=0.41" (not distinguishable from the best), "p=0.003", or "–" (no test)."""
    if r.get("best_params_id") is not None and r["params_id"] == r.get("best_params_id"):
        return TableCell("best", "-1")
    p = _finite_float(r.get("tow_auc_p_vs_best"))
    if p is None:
        return TableCell("–")
    text = f"p={p:.2g}"
    tied = r.get("tied_with_best")
    if isinstance(tied, bool | np.bool_) and tied:
        text = "≈ " + text
    return TableCell(text, _sort_value(p))


def _margin(r: pd.Series) -> TableCell:
    """``+0.412 ± 0.031 (p=0.001)``: paired AUC margin over ``original``."""
    m = _finite_float(r.get("margin_vs_original"))
    if m is None:
        return TableCell("–")
    if r["method"] == "original":
        return TableCell("0 (reference)", _sort_value(0.0))
    text = f"{m:+.3f}"
    if _is_finite_number(r.get("margin_vs_original_ci")):
        text += f" ± {float(r['margin_vs_original_ci']):.3f}"
    if _is_finite_number(r.get("margin_vs_original_p")):
        text += f" (p={float(r['margin_vs_original_p']):.2g})"
    return TableCell(text, _sort_value(m))


def _klom(r: pd.Series) -> TableCell:
    m = _finite_float(r.get("klom_mean"))
    if m is None:
        return TableCell("–")
    text = f"{m:.3g}"
    if _is_finite_number(r.get("klom_lo")) and _is_finite_number(r.get("klom_hi")):
        text += f" [{float(r['klom_lo']):.3g}, {float(r['klom_hi']):.3g}]"
    return TableCell(text, _sort_value(m))


def _relearn(r: pd.Series) -> TableCell:
    mean = _finite_float(r.get("relearn_steps_mean"))
    if mean is None:
        return TableCell("–")
    capped = (_finite_float(r.get("relearn_capped_mean")) or 0.0) > 0
    return TableCell(("≥" if capped else "") + f"{mean:.0f}", _sort_value(mean))


def _params(r: pd.Series) -> TableCell:
    pid = _str(r["params_id"])
    n = _finite_float(r.get("n_params"))
    how = _str(r.get("params_choice"))
    text = pid
    if n is not None and int(n) > 1:
        text += f" ({how} of {int(n)})"
    return TableCell(text, pid)


def _any_finite(col: str) -> Callable[[pd.DataFrame], bool]:
    return lambda s: col in s.columns and bool(s[col].map(_is_finite_number).any())


def _code(r: pd.Series) -> TableCell:
    text = _str(r.get("code_hash"))
    return TableCell(text, text, code=bool(text))


COLUMNS: tuple[Column, ...] = (
    Column("method", "Method", lambda r: TableCell(_str(r["method"]), _str(r["method"]), code=True), False),
    Column("params", "Params", _params, numeric=False),
    Column("tow_auc", "ToW AUC ↑", _stat("tow_auc", 3)),
    Column("vs_best", "vs best", _vs_best),
    Column("margin", "Δ AUC vs original", _margin),
    Column("tow_step1", "ToW step 1", _stat("tow_step1", 3)),
    Column("tow_final", "ToW final", _stat("tow", 3)),
    Column("acc_forget", "Forget acc %", _stat("acc_forget", 1, 100.0)),
    Column("acc_forget_true", "Forget acc (true labels) %", _stat("acc_forget_true", 1, 100.0),
           when=_any_finite("acc_forget_true_mean")),
    Column("acc_unidentified_true", "Unidentified flipped: acc (true labels) %",
           _stat("acc_unidentified_true", 1, 100.0), when=_any_finite("acc_unidentified_true_mean")),
    Column("acc_retain", "Retain acc %", _stat("acc_retain", 1, 100.0)),
    Column("acc_test", "Test acc %", _stat("acc_test", 1, 100.0)),
    Column("klom", "KLoM [95% CI] ↓", _klom, when=_any_finite("klom_mean")),
    Column("neurips", "NeurIPS score ↑", _numcell("neurips_score", ".3f"), when=_any_finite("neurips_score")),
    Column("mia", "MIA-eff. %", _stat("mia_efficacy", 1, 100.0)),
    Column("js_test", "JS test ↓", _numcell("js_test_mean", ".4f")),
    Column("js_ratio", "JS/gg forget", _numcell("js_ratio_forget_mean", ".2f")),
    Column("relearn", "Relearn", _relearn),
    Column("wall", "Wall s", _numcell("wall_s_mean", ".3g")),
    Column("speedup", "Speedup ×", _numcell("speedup_mean", ".3g", "×")),
    Column("seeds", "Seeds", lambda r: TableCell(f"{r['n_ok']}/{r['n_seeds']}", str(r["n_ok"]))),
    Column("origin", "Origin", lambda r: TableCell(_str(r.get("origin")), _str(r.get("origin"))),
           numeric=False),
    Column("code", "Code hash", _code, numeric=False),
    Column("notes", "Notes", lambda r: TableCell(_notes(r), _notes(r)), numeric=False),
)  # fmt: skip


def _ranked(rows: pd.DataFrame) -> pd.DataFrame:
    """Ranked by ToW AUC (best first; rows without one last), then method, params_id."""
    s = rows.assign(_auc=rows["tow_auc_mean"].where(rows["tow_auc_mean"].map(_is_finite_number)))
    return s.sort_values(["_auc", "method", "params_id"], ascending=[False, True, True], na_position="last",
                         kind="mergesort")  # fmt: skip


def _cells(rows: pd.DataFrame, columns: list[Column], bold_tied: bool) -> list[list[TableCell]]:
    """Table cells; the ToW AUC of the best and of those not distinguishable from it in bold."""
    out = []
    for _, r in _ranked(rows).iterrows():
        cells = [c.cell(r) for c in columns]
        tied = r.get("tied_with_best")
        if bold_tied and r["method"] != "retrain" and isinstance(tied, bool | np.bool_) and tied:
            cells[[c.key for c in columns].index("tow_auc")].bold = True
        out.append(cells)
    return out


def _gold_line(final: pd.DataFrame) -> str:
    ok = final[final["status"] == Status.OK]
    if ok[["gold_acc_forget", "gold_acc_retain", "gold_acc_test"]].notna().sum().sum() == 0:
        return ""
    parts = [
        f"{name} {_num(ok[col].mean() * 100, '.1f')}%"
        for name, col in (("forget", "gold_acc_forget"), ("retain", "gold_acc_retain"),
                          ("test", "gold_acc_test"))
    ]
    if ok["gold_acc_forget_true"].notna().any():
        parts.append(f"forget (true labels) {_num(ok['gold_acc_forget_true'].mean() * 100, '.1f')}%")
    if ok["gold_acc_unidentified_true"].notna().any():
        acc = _num(ok["gold_acc_unidentified_true"].mean() * 100, ".1f")
        parts.append(f"unidentified flipped samples (true labels) {acc}%")
    text = "Retrained (gold) model: " + ", ".join(parts)
    if ok["gold_mia_efficacy"].notna().any():
        text += f"; MIA-efficacy {_num(ok['gold_mia_efficacy'].mean() * 100, '.1f')}%"
    if ok["gold_relearn_steps"].notna().any():
        capped = (ok["gold_relearn_capped"].fillna(0) > 0).any()
        text += f"; relearn {'≥' if capped else ''}{_num(ok['gold_relearn_steps'].mean(), '.0f')} steps"
    if ok["gold_wall_s"].notna().any():
        text += f"; retraining takes {_num(ok['gold_wall_s'].mean(), '.3g')} s"
    return text + " (means over seeds)."


def _floor_line(head: pd.DataFrame) -> str:
    floor = head["floor_tow_auc"].dropna() if "floor_tow_auc" in head.columns else pd.Series(dtype=float)
    if floor.empty:
        return ""
    ci = head["floor_tow_auc_ci"].dropna()
    f = float(floor.iloc[0])
    text = f"**Noise floor**: `retrain` (an independent retrain, judged like a method) has ToW AUC {f:.3f}"
    if len(ci):
        text += f" ± {float(ci.iloc[0]):.3f}"
    text += f", i.e. 1 − AUC = {1 - f:.3f}: a method this close to 1 is as good as retraining."
    klom_floor = head["klom_floor"].dropna() if "klom_floor" in head.columns else pd.Series(dtype=float)
    if len(klom_floor):
        text += f" KLoM of another retrain population: {float(klom_floor.median()):.3g}."
    return text


def _grid_note(head: pd.DataFrame) -> str:
    n = head["n_params"].fillna(1).astype(int)
    multi = head[n > 1]
    if multi.empty:
        return ""
    return (f"{len(multi)} method(s) have several parameter settings: the row shows the one the tuning stage "
            f"selected, else the one named like the method, else the first (see *Params*); every setting "
            f"is in `summary.csv`.")  # fmt: skip


@dataclass
class Leaderboard:
    """Everything the templates need: tables grouped by suite, plots, links and provenance."""

    tables: list[Table]
    suites: list[dict[str, Any]]  # {"name", "meta", "tables", "plots": [(title, rel)]}
    provenance: list[tuple[str, Any]]
    links: list[tuple[str, str]]
    summary: pd.DataFrame
    headline: pd.DataFrame


def _suite_meta(data: pd.DataFrame, suite: str) -> str:
    sub = data[data["suite"] == suite]
    bits = []
    for col in ("dataset", "model"):
        vals = sorted({str(v) for v in sub[col].dropna()})
        if vals:
            bits.append(f"{col}: {', '.join(vals)}")
    return " · ".join(bits)


def _provenance_items(data: pd.DataFrame, provenance: dict | None) -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in sorted((provenance or {}).items()):
        items.append((str(key), value))
    revs = sorted({str(v) for v in data["git_rev"].dropna()})
    if revs:
        items.append(("git revisions of the result rows", ", ".join(revs)))
    hashes = sorted({str(v) for v in data["code_hash"].dropna()})
    if hashes:
        items.append(("distinct method code hashes", str(len(hashes))))
    n_ok = int((data["status"] == Status.OK).sum())
    items.append(("result rows", f"{len(data)} ({n_ok} ok)"))
    return items


def _fmt_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v)
    return str(v)


def build(
    df: pd.DataFrame,
    population: pd.DataFrame | None = None,
    plots: dict[str, list[tuple[str, str]]] | None = None,
    provenance: dict | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> Leaderboard:
    """The leaderboard's content: summary (full grid, with population columns), headline and tables."""
    data = normalise(df)
    seeds = seed_table(data)  # final_rows(data) plus the per-seed sequence columns
    summary = attach_population(summarise(data, seeds), population)
    head = headline(summary, seeds, data)
    final = seeds.drop(columns=list(SEQUENCE_METRICS))
    tables = []
    for (suite, proto), sub in head.groupby(["suite", "protocol"], sort=True, dropna=False):
        steps = data.loc[(data["suite"] == suite) & (data["protocol"] == proto), "step"].dropna()
        t = Table(str(suite), str(proto), int(steps.max()) if len(steps) else None)
        t.columns = [c for c in COLUMNS if c.when is None or c.when(sub)]
        t.rows = _cells(sub, t.columns, bold_tied=True)
        grid = summary[(summary["suite"] == suite) & (summary["protocol"] == proto)]
        grid_cols = [c for c in t.columns if c.key != "params"]
        grid_cols.insert(1, Column("params_id", "params_id", lambda r: TableCell(_str(r["params_id"]),
                                                                            _str(r["params_id"]), code=True),
                                   numeric=False))  # fmt: skip
        t.grid_columns = grid_cols
        t.grid = _cells(grid, grid_cols, bold_tied=True)
        t.notes = [line for line in (
            _floor_line(sub),
            _gold_line(final[(final["suite"] == suite) & (final["protocol"] == proto)]),
            _grid_note(sub),
        ) if line]  # fmt: skip
        tables.append(t)
    suites = []
    for suite in sorted({t.suite for t in tables}):
        suites.append({"name": suite, "meta": _suite_meta(data, suite),
                       "tables": [t for t in tables if t.suite == suite],
                       "plots": (plots or {}).get(suite, [])})  # fmt: skip
    prov = [(k, v if isinstance(v, dict) else _fmt_value(v)) for k, v in _provenance_items(data, provenance)]
    return Leaderboard(tables, suites, prov, list(links), summary, head)


# -------------------------------------------------------------------------------------------- templates
def md_escape(text: str) -> str:
    """Text for a Markdown table cell: ``|`` escaped, newlines folded."""
    return str(text).replace("|", "\\|").replace("\n", " ")


_INLINE = (("**", "strong"), ("*", "em"), ("`", "code"))


def md_inline(text: str) -> str:
    """HTML for one paragraph of light Markdown: escaped, then ``**bold**``, ``*em*``, `` `code` `` and
    ``[title](href)`` links converted (nothing else is used in the pages' Markdown)."""
    out = html.escape(str(text), quote=True)
    code_parts = out.split("`")  # code spans first, so that * inside them stays literal
    for i in range(0, len(code_parts), 2):
        part = code_parts[i]
        for marker, tag in _INLINE[:2]:
            bits = part.split(marker)
            part = "".join(b if j % 2 == 0 else f"<{tag}>{b}</{tag}>" for j, b in enumerate(bits))
        part = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', part)
        code_parts[i] = part
    return "".join(p if i % 2 == 0 else f"<code>{p}</code>" for i, p in enumerate(code_parts))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md_escape"] = md_escape
    env.filters["md_inline"] = lambda t: jinja2.utils.markupsafe.Markup(md_inline(t))
    return env


def _how_to_read() -> list[str]:
    text = (TEMPLATES / "how_to_read.md").read_text(encoding="utf-8")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def render_markdown(lb: Leaderboard) -> str:
    """README.md text (template ``readme.md.j2``)."""
    return _environment().get_template("readme.md.j2").render(title=TITLE, how=_how_to_read(), lb=lb)


def render_html(lb: Leaderboard) -> str:
    """index.html text (template ``index.html.j2`` with ``style.css`` and ``script.js`` inlined):
    tabs per suite, a section per protocol, sortable headers, a filter box, sticky method column."""
    env = _environment()
    return env.get_template("index.html.j2").render(
        title=TITLE, how=_how_to_read(), lb=lb, css=(TEMPLATES / "style.css").read_text(encoding="utf-8"),
        js=(TEMPLATES / "script.js").read_text(encoding="utf-8"),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ io
def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """CSV with fixed float formatting (:data:`FLOAT_FORMAT`), ``\\n`` line ends and UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n", encoding="utf-8")
    return path


def _suite_file(suite: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in suite) + ".csv"


# pages kept beside the generated files (hand-written, or a preset's committed results), linked when present
EXTRA_PAGES: tuple[tuple[str, str], ...] = (
    ("paper-scale measurements on an accelerator (ResNet-18 speedup, Krylov memory)", "gpu/README.md"),
    ("KLoM on mnist5k-mlp's memorized and mislabeled (klom-mnist preset)", "klom-mnist/README.md"),
    ("KLoM on random, M large enough for its small gap (klom-random preset)", "klom-random/README.md"),
    ("both suites by memorisation level, RUM's low / mid / high / mix (memorization-levels preset)",
     "memorization-levels/README.md"),
    ("mnist5k-mlp with half of the flipped labels identified (mislabeled-partial preset)",
     "mislabeled-partial/README.md"),
)


def write_leaderboard(
    df: pd.DataFrame,
    out_dir: Path,
    provenance: dict | None = None,
    population: pd.DataFrame | None = None,
    population_examples: pd.DataFrame | None = None,
) -> list[Path]:
    """Render the result rows ``df`` into ``out_dir``; returns the paths written.

    Writes ``README.md``, ``index.html``, ``metrics_by_method.json`` (:func:`metrics_json` of the
    headline, sorted keys, indent 2), the files DVC reads (:mod:`benchmark.leaderboard.dvc_files`:
    ``metrics/<suite>.<protocol>.json``, ``dvc_plots/*.json``), ``summary.csv`` (every params_id:
    :func:`summarise` plus the population columns), ``headline.csv`` (one row per method),
    ``<suite>.csv`` (the per-step per-seed rows of each suite, sorted by protocol, method, params_id,
    seed, step, in :data:`RESULT_COLUMNS` order) and
    ``plots/<suite>_*.png``. ``population`` / ``population_examples`` are the optional
    ``results/<suite>_population.csv`` / ``_population_examples.csv`` rows
    (:mod:`benchmark.leaderboard.population`); without them the KLoM / NeurIPS columns and the KLoM CDF
    are omitted. ``provenance`` (e.g. ``{"git_rev": ..., "packages": {...}}``) is listed at the end.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = normalise(df)
    data = data.sort_values([*GROUP_KEYS, "seed", "step"], na_position="last", kind="mergesort")
    data = data.reset_index(drop=True)

    lb = build(data, population, None, provenance)
    plot_files = make_plots(data, out_dir / "plots", head=lb.headline, examples=population_examples)
    plots: dict[str, list[tuple[str, str]]] = {}
    for suite in sorted(data["suite"].dropna().unique()):
        for kind, title in PLOT_KINDS.items():
            p = plot_path(out_dir / "plots", suite, kind)
            if p in plot_files:
                plots.setdefault(str(suite), []).append((title, p.relative_to(out_dir).as_posix()))
    for s in lb.suites:
        s["plots"] = plots.get(s["name"], [])
    lb.links = [(title, rel) for title, rel in EXTRA_PAGES if (out_dir / rel).is_file()]

    written: list[Path] = []
    readme = out_dir / "README.md"
    readme.write_text(render_markdown(lb), encoding="utf-8")
    written.append(readme)
    index = out_dir / "index.html"
    index.write_text(render_html(lb), encoding="utf-8")
    written.append(index)
    metrics = out_dir / "metrics_by_method.json"  # every method: a plain file, not a DVC metric
    text = json.dumps(metrics_json(lb.headline), indent=2, sort_keys=True, allow_nan=False)
    metrics.write_text(text + "\n", encoding="utf-8")
    written.append(metrics)
    written += write_dvc_files(data, lb.headline, out_dir)
    written.append(write_csv(lb.summary, out_dir / "summary.csv"))
    written.append(write_csv(lb.headline, out_dir / "headline.csv"))
    for suite, rows in data.groupby("suite", sort=True):
        written.append(write_csv(rows, out_dir / _suite_file(str(suite))))
    return written + plot_files
