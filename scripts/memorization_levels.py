"""The `memorization-levels` preset's report: each method's ToW AUC by RUM memorisation level.

Zhao et al. 2024 ("What makes unlearning hard and what to do about it", RUM) found unlearning harder the more
memorised the forget set. The preset (``presets/memorization-levels.yaml``) runs the ``memorized``
protocol of both default suites at every level (``level: low | mid | high | mix``,
:mod:`benchmark.data.protocols`); this script reads

* the leaderboard's headline (``leaderboards/headline.csv``: one row per method and protocol, its tuned
  configuration, ToW AUC mean and 95 % CI over the model seeds),
* ``params.yaml`` (which ``memorized`` protocol holds which level),
* the forget sets and memorisation scores under ``runs/<suite>/`` (the mean Feldman–Zhang score of the
  final forget set, the union of the K requests, averaged over the seeds: where each level sits),

and writes ``<out>/README.md`` (a section per suite: the table and how much each level's ranking agrees with
``high``'s), ``<out>/<suite>_levels.csv`` (the headline rows of the level protocols) and
``<out>/<suite>_tow_by_level.png`` (the figure: levels on the x axis in order of their measured mean score,
one line per method, 95 % CI bars).

**Rank agreement** with the default level: Kendall's τ-b (:func:`scipy.stats.kendalltau`) between the ToW
AUC of the unlearning methods (every method but the references ``original`` and ``retrain``) on a level and
on ``high``; 1 is the same ranking, 0 none in common.

    python scripts/memorization_levels.py [--suite S ...] [--out leaderboards/memorization-levels]

Without ``--suite``: every suite that holds two or more levels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy.stats import kendalltau  # noqa: E402

from benchmark.config import Params, load_params  # noqa: E402
from benchmark.data.protocols import cumulative  # noqa: E402
from benchmark.leaderboard.plots import method_styles  # noqa: E402
from benchmark.runner.memorization import load_memorization  # noqa: E402
from benchmark.runner.suite import open_suite  # noqa: E402

LEVEL_ORDER = ("low", "mid", "high", "mix")
REFERENCES = ("original", "retrain")  # left out of the rank agreement: they are not unlearning methods
# the headline columns kept in <out>/<suite>_levels.csv (one row per level and method)
CSV_COLUMNS = ("suite", "protocol", "level", "method", "params_id", "n_seeds", "n_ok", "tow_auc_mean",
               "tow_auc_ci", "tow_step1_mean", "tow_step1_ci", "tow_mean", "tow_ci", "acc_forget_mean",
               "acc_retain_mean", "acc_test_mean", "margin_vs_original", "margin_vs_original_ci",
               "margin_vs_original_p", "tuning_constraint")  # fmt: skip


def suite_levels(params: Params, suite: str) -> dict[str, str]:
    """{level: protocol} for the suite's ``memorized`` protocols in :data:`LEVEL_ORDER` (one per level; an
    error names a clash)."""
    levels: dict[str, str] = {}
    for name in params.suite(suite).protocols:
        cfg = params.protocols[name]
        if cfg.kind != "memorized":
            continue
        if cfg.level in levels:
            raise SystemExit(
                f"{suite}: protocols {levels[cfg.level]!r} and {name!r} both hold level {cfg.level!r}"
            )
        levels[cfg.level] = name
    return {lv: levels[lv] for lv in LEVEL_ORDER if lv in levels}


def level_protocols(params: Params, suite: str) -> dict[str, str]:
    """:func:`suite_levels`, with an error when the suite holds fewer than two (the preset not applied)."""
    levels = suite_levels(params, suite)
    if len(levels) < 2:
        raise SystemExit(
            f"{suite}: {len(levels)} memorisation level(s) in params.yaml; apply the preset first "
            "(bash scripts/bench.sh --preset memorization-levels)"
        )
    return levels


def level_suites(params: Params) -> list[str]:
    """The suites of ``params`` that hold two or more levels (an error when none does)."""
    suites = [s for s in params.suites if len(suite_levels(params, s)) >= 2]
    if not suites:
        raise SystemExit(
            "no suite holds two or more memorisation levels in params.yaml; apply the preset first "
            "(bash scripts/bench.sh --preset memorization-levels)"
        )
    return suites


def forget_scores(params: Params, suite: str, protocols: dict[str, str]) -> pd.DataFrame:
    """Per level: the mean memorisation score of the final forget set (mean and range over the seeds)."""
    run = open_suite(params, suite)
    mem = load_memorization(run)
    rows = []
    for level, proto in protocols.items():
        per_seed = []
        for seed in run.suite.seeds:
            reqs = run.requests(proto, seed)
            per_seed.append(float(mem[cumulative(reqs, len(reqs))].mean()))
        rows.append({"level": level, "protocol": proto, "mem_mean": float(np.mean(per_seed)),
                     "mem_min": float(np.min(per_seed)), "mem_max": float(np.max(per_seed))})  # fmt: skip
    return pd.DataFrame(rows)


def level_rows(headline: pd.DataFrame, suite: str, protocols: dict[str, str]) -> pd.DataFrame:
    """The headline rows of the suite's level protocols, with their ``level``."""
    head = headline[(headline["suite"] == suite) & headline["protocol"].isin(protocols.values())]
    if head.empty:
        raise SystemExit(f"{suite}: no headline rows for {sorted(protocols.values())}; run dvc repro first")
    level_of = {p: lv for lv, p in protocols.items()}
    return head.assign(level=head["protocol"].map(level_of))


def level_table(head: pd.DataFrame, protocols: dict[str, str]) -> pd.DataFrame:
    """One row per method, one (mean, ci) column pair per level: the headline ToW AUC (``head``: the
    :func:`level_rows`)."""
    mean = head.pivot_table(index="method", columns="level", values="tow_auc_mean", aggfunc="first")
    ci = head.pivot_table(index="method", columns="level", values="tow_auc_ci", aggfunc="first")
    levels = [lv for lv in protocols if lv in mean.columns]
    out = pd.concat({"mean": mean[levels], "ci": ci[levels]}, axis=1)
    order = mean[levels].mean(axis=1).sort_values(ascending=False).index
    return out.loc[order]


def rank_agreement(table: pd.DataFrame, reference: str = "high") -> dict[str, float]:
    """{level: Kendall's τ-b between the methods' ToW AUC on the level and on ``reference``}, over the
    methods with a value on both (the :data:`REFERENCES` rows left out); levels other than ``reference``."""
    means = table["mean"].drop(index=[m for m in REFERENCES if m in table.index])
    if reference not in means.columns:
        return {}
    out: dict[str, float] = {}
    for level in means.columns:
        if level == reference:
            continue
        both = means[[level, reference]].dropna()
        out[level] = float(kendalltau(both[level], both[reference]).statistic) if len(both) > 1 else np.nan
    return out


def write_figure(table: pd.DataFrame, scores: pd.DataFrame, suite: str, path: Path) -> None:
    by_score = scores.sort_values("mem_mean")
    levels = [lv for lv in by_score["level"] if lv in table["mean"].columns]
    x = np.arange(len(levels), dtype=float)
    styles = method_styles(sorted(table.index))
    fig = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    with sns.axes_style("whitegrid"):
        ax = fig.subplots()
        for method in table.index:
            y = table.loc[method, "mean"][levels].to_numpy(dtype=float)
            ci = np.nan_to_num(table.loc[method, "ci"][levels].to_numpy(dtype=float))
            st = styles[method]
            ax.errorbar(
                x, y, yerr=ci, color=st["color"], linestyle=st["linestyle"], marker=st["marker"] or "o",
                markersize=4, linewidth=1.4, capsize=2, label=method,
            )  # fmt: skip
        mem = dict(zip(by_score["level"], by_score["mem_mean"], strict=True))
        ax.set_xticks(x, [f"{lv}\n(mean score {mem[lv]:.2f})" for lv in levels])
        ci_all = table["ci"][levels].fillna(0).to_numpy(dtype=float)
        low = np.nanmin(table["mean"][levels].to_numpy(dtype=float) - ci_all)
        ax.set_ylim(max(-0.02, np.floor(low * 20) / 20 - 0.02), 1.02)
        ax.set_xlabel("memorisation level of the forget sets (Feldman–Zhang score, mean over seeds)")
        ax.set_ylabel("ToW AUC (mean over the K requests)")
        ax.set_title(f"{suite}: unlearning by memorisation level (mean ± 95% CI over seeds)")
        fig.legend(
            *ax.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
            ncol=4, fontsize="small", title="method (tuned configuration per level)",
        )  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight", metadata={"Software": None})


def markdown(table: pd.DataFrame, scores: pd.DataFrame, protocols: dict[str, str]) -> str:
    levels = list(table["mean"].columns)
    mem = scores.set_index("level")
    lines = [
        "| method | " + " | ".join(f"{lv} (`{protocols[lv]}`)" for lv in levels) + " |",
        "|---|" + "---|" * len(levels),
        "| *mean score of the forget sets* | "
        + " | ".join(
            f"{mem.loc[lv, 'mem_mean']:.3f} [{mem.loc[lv, 'mem_min']:.3f}, {mem.loc[lv, 'mem_max']:.3f}]"
            for lv in levels
        )
        + " |",  # fmt: skip
    ]
    for method in table.index:
        cells = []
        for lv in levels:
            m, c = table.loc[method, ("mean", lv)], table.loc[method, ("ci", lv)]
            cells.append(
                "—" if not np.isfinite(m) else f"{m:.3f} ± {c:.3f}" if np.isfinite(c) else f"{m:.3f}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    tau = rank_agreement(table)
    if tau:
        n = len(table.index.difference(list(REFERENCES)))
        lines += ["", f"Rank agreement with `high` (Kendall's τ-b over the {n} unlearning methods): "
                  + ", ".join(f"{lv} {t:.2f}" for lv, t in tau.items()) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


INTRO = """# By memorisation level: the `memorization-levels` preset

`bash scripts/bench.sh --preset memorization-levels`, then `python scripts/memorization_levels.py` (this page;
`git checkout params.yaml` restores the default). The default `memorized` protocol is RUM's `high` level (Zhao
et al. 2024); the preset adds `low` (the least memorised samples; `digits-mlp` only, where it told no method
apart), `mid` (scores closest to 0.5) and `mix` (a third of every request from each), with the same sizes (K =
5 requests of 0.5 % of D from a 3 % pool, the tuning reserve per level). Each method is tuned on each level
like on the default protocols; cells: its tuned configuration's ToW AUC (mean ToW over the K requests), mean ±
95 % CI over the model seeds. The first row places each level: the mean Feldman–Zhang score of the final
forget set (the union of the K requests), mean [min, max] over the seeds.
"""

SECTION = """
## `{suite}` ({n_seeds} model seeds)

"""


def suite_section(params: Params, headline: pd.DataFrame, suite: str, out: Path) -> str:
    """Write the suite's CSV and figure under ``out``; return its section of the page."""
    protocols = level_protocols(params, suite)
    scores = forget_scores(params, suite, protocols)
    head = level_rows(headline, suite, protocols)
    table = level_table(head, protocols)
    rows = head[[c for c in CSV_COLUMNS if c in head.columns]]
    rows.sort_values(["level", "method"]).to_csv(out / f"{suite}_levels.csv", index=False)
    fig = out / f"{suite}_tow_by_level.png"
    write_figure(table, scores, suite, fig)
    section = SECTION.format(suite=suite, n_seeds=len(params.suite(suite).seeds))
    section += markdown(table, scores, protocols)
    return section + f"\n[![{suite}: ToW AUC by memorisation level]({fig.name})]({fig.name})\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", nargs="*", help="suites (default: every suite with two or more levels)")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--headline", type=Path, default=Path("leaderboards/headline.csv"))
    ap.add_argument("--out", type=Path, default=Path("leaderboards/memorization-levels"))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    suites = args.suite or level_suites(params)
    for suite in suites:
        level_protocols(params, suite)  # every suite checked before anything is written
    headline = pd.read_csv(args.headline)
    args.out.mkdir(parents=True, exist_ok=True)
    page = INTRO + "".join(suite_section(params, headline, s, args.out) for s in suites)
    (args.out / "README.md").write_text(page, encoding="utf-8")
    print(page)
    print(f"wrote {args.out / 'README.md'} and each suite's CSV and figure", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
