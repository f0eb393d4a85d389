"""The `mislabeled-partial` preset's report: corrective unlearning when part of the flipped labels is found.

Goel et al. 2024 ("Corrective Machine Unlearning") ask what unlearning does when only part of the
manipulated training data is identified. The preset (``presets/mislabeled-partial.yaml``) runs, beside the
default ``mislabeled`` protocol (5 % of the labels flipped, every flipped sample deleted over the K
requests), ``mislabeled_half`` (the same corruption rate, half of the flipped samples deleted; the rest stay
in training, flipped, for the original, the gold retrains and the unlearned models alike). This script reads
the leaderboard's headline (``leaderboards/headline.csv``) and ``params.yaml`` and writes
``<out>/README.md`` (a table per method: ToW AUC, its paired margin over ``original``, and the accuracies on
the true labels of the deleted and of the unidentified flipped samples, after the final request) and
``<out>/<suite>_mislabeled.csv`` (the headline rows of the suite's ``mislabeled`` protocols).

    python scripts/mislabeled_partial.py [--suite mnist5k-mlp] [--out leaderboards/mislabeled-partial]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config import Params, load_params

CSV_COLUMNS = ("suite", "protocol", "identified", "method", "params_id", "n_seeds", "n_ok", "tow_auc_mean",
               "tow_auc_ci", "margin_vs_original", "margin_vs_original_ci", "margin_vs_original_p",
               "acc_forget_true_mean", "acc_forget_true_ci", "acc_unidentified_true_mean",
               "acc_unidentified_true_ci", "acc_test_mean", "acc_test_ci", "gold_acc_forget_true_mean",
               "gold_acc_unidentified_true_mean", "tuning_constraint")  # fmt: skip


def mislabeled_protocols(params: Params, suite: str) -> dict[str, float]:
    """{protocol: identified share} of the suite's ``mislabeled`` protocols, most identified first (an error
    unless one of them identifies only part of the flipped samples: the preset not applied)."""
    found = {
        name: params.protocols[name].identified
        for name in params.suite(suite).protocols
        if params.protocols[name].kind == "mislabeled"
    }
    if not any(share < 1 for share in found.values()):
        raise SystemExit(
            f"{suite}: no mislabeled protocol with identified < 1 in params.yaml; apply the preset first "
            "(bash scripts/bench.sh --preset mislabeled-partial)"
        )
    return dict(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))


def protocol_rows(headline: pd.DataFrame, suite: str, protocols: dict[str, float]) -> pd.DataFrame:
    """The headline rows of the suite's ``mislabeled`` protocols, with their ``identified`` share."""
    head = headline[(headline["suite"] == suite) & headline["protocol"].isin(list(protocols))]
    if head.empty:
        raise SystemExit(f"{suite}: no headline rows for {sorted(protocols)}; run dvc repro first")
    return head.assign(identified=head["protocol"].map(protocols))


def _pct(mean: float, ci: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{mean * 100:.1f} ± {ci * 100:.1f}" if np.isfinite(ci) else f"{mean * 100:.1f}"


def _margin(r: pd.Series) -> str:
    m, c, p = r.get("margin_vs_original"), r.get("margin_vs_original_ci"), r.get("margin_vs_original_p")
    if m is None or not np.isfinite(m):
        return "—"
    text = f"{m:+.3f} ± {c:.3f}" if np.isfinite(c) else f"{m:+.3f}"
    return text + (f" (p={p:.2g})" if p is not None and np.isfinite(p) else "")


def markdown(rows: pd.DataFrame, protocols: dict[str, float]) -> str:
    """One table per protocol (most identified first), methods ranked by ToW AUC; a line on the gold model."""
    out = []
    for name, share in protocols.items():
        sub = rows[rows["protocol"] == name].sort_values("tow_auc_mean", ascending=False)
        partial = share < 1
        header = ["method", "ToW AUC ↑", "Δ AUC vs original", "deleted: acc (true labels) %"]
        if partial:
            header.append("unidentified: acc (true labels) %")
        header.append("test acc %")
        out += [f"### `{name}`: {share:.0%} of the flipped samples identified", "",
                "| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1)]  # fmt: skip
        for _, r in sub.iterrows():
            cells = [f"`{r['method']}`", f"{r['tow_auc_mean']:.3f} ± {r['tow_auc_ci']:.3f}", _margin(r),
                     _pct(r["acc_forget_true_mean"], r["acc_forget_true_ci"])]  # fmt: skip
            if partial:
                cells.append(_pct(r["acc_unidentified_true_mean"], r["acc_unidentified_true_ci"]))
            cells.append(_pct(r["acc_test_mean"], r["acc_test_ci"]))
            out.append("| " + " | ".join(cells) + " |")
        deleted = sub["gold_acc_forget_true_mean"].mean() * 100
        gold = "Gold model (retrained without the deleted samples): "
        gold += f"{deleted:.1f} % on the deleted samples' true labels"
        if partial:
            unidentified = sub["gold_acc_unidentified_true_mean"].mean() * 100
            gold += f", {unidentified:.1f} % on the unidentified ones'"
        out += ["", gold + ".", ""]
    return "\n".join(out)


INTRO = """# `{suite}` with part of the flipped labels found: the `mislabeled-partial` preset

`bash scripts/bench.sh --preset mislabeled-partial`, then `python scripts/mislabeled_partial.py` (this page;
`git checkout params.yaml` restores the default). Corrective unlearning (Goel et al. 2024): 5 % of the
training labels are flipped before the original is trained. In the default `mislabeled` the K = 5 requests
delete every flipped sample; in `mislabeled_half` they delete half of them, and the other half stays in
training, flipped, for every model (original, gold retrains, unlearned). Each method is tuned on each
protocol (against the gold model of that protocol). ToW AUC and its paired margin over `original`: mean ±
95 % CI over the {n_seeds} model seeds; accuracies after the final request, on the true labels of the deleted
samples and of the flipped samples no request deletes ("unidentified").

"""


def made_on(results: Path, protocols: dict[str, float]) -> str:
    """A line naming the machines (the rows' ``hardware``) that computed the protocols' rows in ``results``
    (a suite's ``results/<suite>.csv``): bits differ between CPU vendors (README, *Known problems*). Empty
    when the file is missing."""
    if not results.exists():
        return ""
    df = pd.read_csv(results, usecols=["protocol", "hardware"])
    machines = sorted(set(df.loc[df["protocol"].isin(list(protocols)), "hardware"].dropna()))
    return "Computed on: " + "; and ".join(f"`{m}`" for m in machines) + ".\n\n" if machines else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="mnist5k-mlp")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--headline", type=Path, default=Path("leaderboards/headline.csv"))
    ap.add_argument("--out", type=Path, default=Path("leaderboards/mislabeled-partial"))
    ap.add_argument("--results", type=Path, default=Path("results"), help="the suites' results/<suite>.csv")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    protocols = mislabeled_protocols(params, args.suite)
    rows = protocol_rows(pd.read_csv(args.headline), args.suite, protocols)
    args.out.mkdir(parents=True, exist_ok=True)
    kept = rows[[c for c in CSV_COLUMNS if c in rows.columns]]
    kept.sort_values(["protocol", "method"]).to_csv(args.out / f"{args.suite}_mislabeled.csv", index=False)
    n_seeds = len(params.suite(args.suite).seeds)
    machines = made_on(args.results / f"{args.suite}.csv", protocols)
    page = INTRO.format(suite=args.suite, n_seeds=n_seeds) + machines + markdown(rows, protocols)
    (args.out / "README.md").write_text(page, encoding="utf-8")
    print(page)
    print(f"wrote {args.out / 'README.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
