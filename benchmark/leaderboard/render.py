"""Write the leaderboard: README.md, index.html, summary.csv, metrics.json, per-suite CSVs, plots.

Everything written is a deterministic function of the input rows (sorted orders, fixed float
formatting, no timestamps, PNGs without version metadata), so re-running on the same results
reproduces the same bytes and a changed result shows up as a small diff.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.leaderboard.aggregate import (
    GROUP_KEYS,
    final_rows,
    metrics_json,
    normalise,
    summarise,
)
from benchmark.leaderboard.plots import PLOT_KINDS, make_plots, plot_path

__all__ = ["FLOAT_FORMAT", "render_html", "render_markdown", "write_csv", "write_leaderboard"]

FLOAT_FORMAT = "%.6g"  # CSV floats: 6 significant digits, so reruns diff cleanly
REFERENCE_NOTES = {"retrain": "reference: independent retrain (seed-to-seed)", "original": "do-nothing floor"}
TITLE = "Machine unlearning leaderboard"
HOW_TO_READ = (
    "Each table is one deletion protocol of a suite, evaluated after its final request; numbers are "
    "the mean ± 95% Student-t confidence half-width over seeds. **ToW** (tug-of-war; Zhao et al. 2024, "
    "*What makes unlearning hard and what to do about it*) is "
    "(1 − |Δ forget acc|)·(1 − |Δ retain acc|)·(1 − |Δ test acc|), the differences taken against a "
    "model retrained from scratch without the deleted data (the gold model): **ToW = 1 means "
    "indistinguishable from retraining by accuracy; higher is better.** `original` is the do-nothing "
    "floor (the model before any unlearning); `retrain` is an independent retrain with another seed, "
    "i.e. the seed-to-seed reference that no method can be expected to beat, so it is not eligible for "
    "the bold best. *vs best* is the paired t-test over seeds of the final ToW against the bold best "
    "(p-value; **≈** = not distinguishable from the best at p ≥ 0.05 with this many seeds). "
    "*MIA-eff.* is SalUn's MIA-efficacy: the share of the forget set that an SVC membership attack on "
    "the true-class confidence (trained on retain vs test examples) calls non-members — higher is more "
    "forgotten; aim at the gold model's value, given under the table. *JS test* is the mean "
    "Jensen–Shannon divergence (nats, lower is closer) between the method's and the gold model's "
    "predictions on the test set; *JS/gg forget* is the method's mean JS divergence on the forget set "
    "to the gold models of all seeds that never trained on each example, divided by the mean JS "
    "divergence between two such gold models (≈ 1: as close as another retrain; on `random` protocols "
    "it rests on the few forget examples that several seeds share). *Relearn* is the number of "
    "fine-tuning steps on the forget set (batch 32, recipe optimiser) until its accuracy is back to the "
    "original model's (≥: capped at the limit for some seed; few steps = the information was hidden, "
    "not removed). *Wall s* is the wall-clock seconds of the final request; *speedup* the retraining "
    "time divided by the method's time. *Seeds* counts successful seeds out of those run. Every other "
    "metric (KL divergences, loss-threshold MIA AUC, LiRA z-scores, weight distances, the NeurIPS 2023 "
    "competition score, CPU/memory cost) is in the CSV files."
)
COLUMNS = ("Method", "ToW ↑", "vs best", "Forget acc %", "Retain acc %", "Test acc %", "MIA-eff. %",
           "JS test ↓", "JS/gg forget", "Relearn", "Wall s", "Speedup ×", "Seeds", "Notes")  # fmt: skip


# ---------------------------------------------------------------------------------------- formatting
def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _mean_ci(mean: Any, ci: Any, digits: int, scale: float = 1.0) -> str:
    if not _finite(mean):
        return "–"
    text = f"{float(mean) * scale:.{digits}f}"
    if _finite(ci):
        text += f" ± {float(ci) * scale:.{digits}f}"
    return text


def _num(x: Any, fmt: str, suffix: str = "") -> str:
    return f"{float(x):{fmt}}{suffix}" if _finite(x) else "–"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Cell:
    text: str
    sort: str = ""  # value used by the HTML click-to-sort ("" sorts last)
    bold: bool = False
    code: bool = False


@dataclass
class Table:
    suite: str
    protocol: str
    final_step: Any
    rows: list[list[Cell]] = field(default_factory=list)
    gold: str = ""
    extra: list[str] = field(default_factory=list)  # further lines under the table


def _notes(r: pd.Series) -> str:
    status, error = str(r["status"]), _short(r["error"] or "")
    if status == "skipped":
        return f"skipped: {error}" if error and error != "skipped" else "skipped"
    if status == "partial":
        return f"{r['n_failed']} of {r['n_seeds']} seeds failed: {error}"
    if status != "ok":
        return f"{status}: {error}" if error and error != status else status
    return REFERENCE_NOTES.get(str(r["method"]), "")


def _sort_value(x: Any) -> str:
    return repr(round(float(x), 10)) if _finite(x) else ""


def _stat(r: pd.Series, m: str, digits: int, scale: float = 1.0) -> Cell:
    return Cell(_mean_ci(r[f"{m}_mean"], r[f"{m}_ci"], digits, scale), _sort_value(r[f"{m}_mean"]))


def _numcell(r: pd.Series, m: str, fmt: str, suffix: str = "") -> Cell:
    return Cell(_num(r[f"{m}_mean"], fmt, suffix), _sort_value(r[f"{m}_mean"]))


def _vs_best(r: pd.Series) -> Cell:
    """ "best", "≈ p=0.41" (not distinguishable from the best), "p=0.003", or "–" (no test)."""
    if r.get("best_params_id") is not None and r["params_id"] == r.get("best_params_id"):
        return Cell("best", "-1")
    p = r.get("tow_p_vs_best")
    if not _finite(p):
        return Cell("–")
    text = f"p={float(p):.2g}"
    tied = r.get("tied_with_best")
    if isinstance(tied, bool | np.bool_) and tied:
        text = "≈ " + text
    return Cell(text, _sort_value(p))


def _relearn(r: pd.Series) -> Cell:
    mean = r.get("relearn_steps_mean")
    if not _finite(mean):
        return Cell("–")
    capped = _finite(r.get("relearn_capped_mean")) and float(r["relearn_capped_mean"]) > 0
    return Cell(("≥" if capped else "") + f"{float(mean):.0f}", _sort_value(mean))


def _table_rows(summary: pd.DataFrame) -> list[list[Cell]]:
    """Rows ranked by final ToW (best first; rows without a ToW last), the best non-retrain in bold."""
    s = summary.assign(_tow=summary["tow_mean"].where(summary["tow_mean"].map(_finite)))
    s = s.sort_values(["_tow", "method", "params_id"], ascending=[False, True, True], na_position="last",
                      kind="mergesort")  # fmt: skip
    eligible = s[(s["method"] != "retrain") & s["_tow"].notna()]
    best = eligible["_tow"].max() if len(eligible) else math.nan
    rows = []
    for _, r in s.iterrows():
        is_best = _finite(best) and r["method"] != "retrain" and r["_tow"] == best
        tow_cell = _stat(r, "tow", 3)
        tow_cell.bold = bool(is_best)
        notes = _notes(r)
        rows.append([
            Cell(str(r["params_id"]), str(r["params_id"]), code=True),
            tow_cell,
            _vs_best(r),
            _stat(r, "acc_forget", 1, 100.0),
            _stat(r, "acc_retain", 1, 100.0),
            _stat(r, "acc_test", 1, 100.0),
            _stat(r, "mia_efficacy", 1, 100.0),
            _numcell(r, "js_test", ".4f"),
            _numcell(r, "js_ratio_forget", ".2f"),
            _relearn(r),
            _numcell(r, "wall_s", ".3g"),
            _numcell(r, "speedup", ".3g", "×"),
            Cell(f"{r['n_ok']}/{r['n_seeds']}", str(r["n_ok"])),
            Cell(notes, notes),
        ])  # fmt: skip
    return rows


def _gold_line(final: pd.DataFrame) -> str:
    ok = final[final["status"] == "ok"]
    if ok[["gold_acc_forget", "gold_acc_retain", "gold_acc_test"]].notna().sum().sum() == 0:
        return ""
    parts = [
        f"{name} {_num(ok[col].mean() * 100, '.1f')}%"
        for name, col in (
            ("forget", "gold_acc_forget"),
            ("retain", "gold_acc_retain"),
            ("test", "gold_acc_test"),
        )
    ]
    text = "Retrained (gold) model: " + ", ".join(parts)
    if ok["gold_mia_efficacy"].notna().any():
        text += f"; MIA-efficacy {_num(ok['gold_mia_efficacy'].mean() * 100, '.1f')}%"
    if ok["gold_relearn_steps"].notna().any():
        capped = (ok["gold_relearn_capped"].fillna(0) > 0).any()
        text += f"; relearn {'≥' if capped else ''}{_num(ok['gold_relearn_steps'].mean(), '.0f')} steps"
    if ok["gold_wall_s"].notna().any():
        text += f"; retraining takes {_num(ok['gold_wall_s'].mean(), '.3g')} s"
    return text + " (means over seeds)."


def _neurips_line(summary: pd.DataFrame) -> str:
    """One line with the NeurIPS 2023 competition scores of the table's rows, when any is available."""
    s = summary[summary["neurips_score_mean"].map(_finite)]
    if s.empty:
        return ""
    s = s.sort_values(["neurips_score_mean", "params_id"], ascending=[False, True], kind="mergesort")
    n_ex = s["neurips_n_examples_mean"].max()
    scores = ", ".join(f"`{r['params_id']}` {float(r['neurips_score_mean']):.3f}" for _, r in s.iterrows())
    return (f"NeurIPS 2023 unlearning-competition score (forgetting quality × utility, higher is better; "
            f"low precision: estimated from the seeds whose forget sets share an example, "
            f"{_num(n_ex, '.0f')} forget examples, vs 512 models per example in the competition): "
            f"{scores}.")  # fmt: skip


def build_tables(df: pd.DataFrame) -> list[Table]:
    """The leaderboard tables, one per (suite, protocol), sorted by name."""
    data = normalise(df)
    summary = summarise(data)
    final = final_rows(data)
    tables = []
    for (suite, proto), sub in summary.groupby(["suite", "protocol"], sort=True, dropna=False):
        in_proto = (data["suite"] == suite) & (data["protocol"] == proto)
        steps = data.loc[in_proto, "step"].dropna()
        t = Table(str(suite), str(proto), int(steps.max()) if len(steps) else None)
        t.rows = _table_rows(sub)
        t.gold = _gold_line(final[(final["suite"] == suite) & (final["protocol"] == proto)])
        nips = _neurips_line(sub)
        if nips:
            t.extra.append(nips)
        tables.append(t)
    return tables


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
    for key in sorted(provenance or {}):
        items.append((str(key), provenance[key]))
    revs = sorted({str(v) for v in data["git_rev"].dropna()})
    if revs:
        items.append(("git revisions of the result rows", ", ".join(revs)))
    hashes = sorted({str(v) for v in data["code_hash"].dropna()})
    if hashes:
        items.append(("distinct method code hashes", str(len(hashes))))
    n_ok = int((data["status"] == "ok").sum())
    items.append(("result rows", f"{len(data)} ({n_ok} ok)"))
    return items


def _fmt_value(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v)
    return str(v)


# ------------------------------------------------------------------------------------------- markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_cell(c: Cell) -> str:
    text = _md_escape(c.text)
    if c.code and text:
        text = f"`{text}`"
    if c.bold and text:
        text = f"**{text}**"
    return text


def render_markdown(
    df: pd.DataFrame,
    plots: dict[str, list[tuple[str, str]]],
    provenance: dict | None,
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """README.md text. ``plots`` maps a suite to its (title, relative path) figures; ``links`` are
    (title, relative path) pages listed under the introduction."""
    data = normalise(df)
    lines = [f"# {TITLE}", "", "## How to read this", "", HOW_TO_READ, ""]
    lines += [f"See also: [{title}]({rel})." for title, rel in links] + ([""] if links else [])
    tables = build_tables(data)
    if not tables:
        lines += ["*No results.*", ""]
    for suite in sorted({t.suite for t in tables}):
        lines += [f"## Suite `{suite}`", ""]
        meta = _suite_meta(data, suite)
        if meta:
            lines += [meta, ""]
        for t in (t for t in tables if t.suite == suite):
            step = f" — after request {t.final_step}" if t.final_step is not None else ""
            lines += [f"### Protocol `{t.protocol}`{step}", ""]
            lines.append("| " + " | ".join(COLUMNS) + " |")
            lines.append("|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 2) + [":---"]) + "|")
            for row in t.rows:
                lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
            lines.append("")
            if t.gold:
                lines += [t.gold, ""]
            for line in t.extra:
                lines += [line, ""]
        if plots.get(suite):
            lines += ["#### Plots", ""]
            for title, rel in plots[suite]:
                lines += [f"[![{title}]({rel})]({rel})", ""]
    lines += ["## Provenance", ""]
    for key, value in _provenance_items(data, provenance):
        if isinstance(value, dict):
            lines.append(f"- **{key}**:")
            lines += [f"  - {k}: {_fmt_value(value[k])}" for k in sorted(value, key=str)]
        else:
            lines.append(f"- **{key}**: {_fmt_value(value)}")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- html
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;white-space:nowrap}
td:first-child,th:first-child,td:last-child,th:last-child{text-align:left;white-space:normal}
th{background:#f2f2f2;cursor:pointer;user-select:none}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
tr:nth-child(even) td{background:#fafafa}
code{background:#f4f4f4;padding:0 .2em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
""".strip()

_JS = """
document.querySelectorAll("table.lb th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0];
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute("data-dir") !== "asc";
    table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
    th.setAttribute("data-dir", asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[idx].getAttribute("data-v"), y = b.cells[idx].getAttribute("data-v");
      if (x === "" && y === "") return 0;
      if (x === "") return 1;
      if (y === "") return -1;
      var nx = Number(x), ny = Number(y), c;
      c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
""".strip()


def _html_cell(c: Cell) -> str:
    text = html.escape(c.text)
    if c.code and text:
        text = f"<code>{text}</code>"
    if c.bold and text:
        text = f"<strong>{text}</strong>"
    return f'<td data-v="{html.escape(c.sort)}">{text}</td>'


def render_html(
    df: pd.DataFrame,
    plots: dict[str, list[tuple[str, str]]],
    provenance: dict | None,
    links: Sequence[tuple[str, str]] = (),
) -> str:
    """index.html text: the README tables with click-to-sort headers, and the plots (self-contained
    apart from the PNG files it references)."""
    data = normalise(df)
    e = html.escape
    how = e(HOW_TO_READ)
    for marker, tag in (("**", "strong"), ("*", "em"), ("`", "code")):  # the paragraph's light markdown
        parts = how.split(marker)
        how = "".join(p if i % 2 == 0 else f"<{tag}>{p}</{tag}>" for i, p in enumerate(parts))
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{e(TITLE)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>",
           f"<h1>{e(TITLE)}</h1>", "<h2>How to read this</h2>", f"<p>{how}</p>",
           "<p><em>Click a column header to sort.</em></p>"]  # fmt: skip
    out += [f'<p>See also: <a href="{e(rel)}">{e(title)}</a>.</p>' for title, rel in links]
    tables = build_tables(data)
    if not tables:
        out.append("<p><em>No results.</em></p>")
    for suite in sorted({t.suite for t in tables}):
        out.append(f"<h2>Suite <code>{e(suite)}</code></h2>")
        meta = _suite_meta(data, suite)
        if meta:
            out.append(f"<p>{e(meta)}</p>")
        for t in (t for t in tables if t.suite == suite):
            step = f" — after request {t.final_step}" if t.final_step is not None else ""
            out.append(f"<h3>Protocol <code>{e(t.protocol)}</code>{e(step)}</h3>")
            out.append('<table class="lb">')
            out.append("<thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in COLUMNS) + "</tr></thead>")
            out.append("<tbody>")
            out += ["<tr>" + "".join(_html_cell(c) for c in row) + "</tr>" for row in t.rows]
            out.append("</tbody></table>")
            if t.gold:
                out.append(f"<p>{e(t.gold)}</p>")
            out += [f"<p>{e(line)}</p>" for line in t.extra]
        for title, rel in plots.get(suite, []):
            out.append(
                f'<figure><img src="{e(rel)}" alt="{e(title)}"><figcaption>{e(title)}</figcaption></figure>'
            )
    out.append("<h2>Provenance</h2>")
    out.append("<ul>")
    for key, value in _provenance_items(data, provenance):
        if isinstance(value, dict):
            sub = "".join(f"<li>{e(str(k))}: {e(_fmt_value(value[k]))}</li>" for k in sorted(value, key=str))
            out.append(f"<li><strong>{e(key)}</strong>:<ul>{sub}</ul></li>")
        else:
            out.append(f"<li><strong>{e(key)}</strong>: {e(_fmt_value(value))}</li>")
    out += ["</ul>", f"<script>\n{_JS}\n</script>", "</body>", "</html>", ""]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ io
def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """CSV with fixed float formatting (:data:`FLOAT_FORMAT`), ``\\n`` line ends and UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format=FLOAT_FORMAT, lineterminator="\n", encoding="utf-8")
    return path


def _suite_file(suite: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in suite) + ".csv"


# hand-written pages kept beside the generated files, linked when present
EXTRA_PAGES: tuple[tuple[str, str], ...] = (
    ("paper-scale measurements on an accelerator (ResNet-18 speedup, Krylov memory)", "gpu/README.md"),
)


def write_leaderboard(df: pd.DataFrame, out_dir: Path, provenance: dict | None = None) -> list[Path]:
    """Render the result rows ``df`` into ``out_dir``; returns the paths written.

    Writes ``README.md``, ``index.html``, ``metrics.json`` (:func:`metrics_json`, sorted keys,
    indent 2), ``summary.csv`` (:func:`summarise`, the final-step summary), ``<suite>.csv`` (the
    per-step per-seed rows of each suite, sorted by protocol, method, params_id, seed, step, in
    :data:`RESULT_COLUMNS` order then any extra columns by name) and ``plots/<suite>_*.png``.
    ``provenance`` (e.g. ``{"git_rev": ..., "packages": {...}, "hardware": ...}``) is listed at the
    end of the README and the HTML page.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = normalise(df)
    data = data.sort_values([*GROUP_KEYS, "seed", "step"], na_position="last", kind="mergesort")
    data = data.reset_index(drop=True)

    plot_files = make_plots(data, out_dir / "plots")
    plots: dict[str, list[tuple[str, str]]] = {}
    for suite in sorted(data["suite"].dropna().unique()):
        for kind, title in PLOT_KINDS.items():
            p = plot_path(out_dir / "plots", suite, kind)
            if p in plot_files:
                plots.setdefault(str(suite), []).append((title, p.relative_to(out_dir).as_posix()))

    links = [(title, rel) for title, rel in EXTRA_PAGES if (out_dir / rel).is_file()]
    written: list[Path] = []
    readme = out_dir / "README.md"
    readme.write_text(render_markdown(data, plots, provenance, links), encoding="utf-8")
    written.append(readme)
    index = out_dir / "index.html"
    index.write_text(render_html(data, plots, provenance, links), encoding="utf-8")
    written.append(index)

    summary = summarise(data)
    metrics = out_dir / "metrics.json"
    metrics.write_text(json.dumps(metrics_json(summary), indent=2, sort_keys=True, allow_nan=False) + "\n",
                       encoding="utf-8")  # fmt: skip
    written.append(metrics)
    written.append(write_csv(summary, out_dir / "summary.csv"))
    for suite, rows in data.groupby("suite", sort=True):
        written.append(write_csv(rows, out_dir / _suite_file(str(suite))))
    return written + plot_files
