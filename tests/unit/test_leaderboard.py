"""Aggregation over seeds and the rendered leaderboard (files, formatting, determinism)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.core.results import SchemaError, make_row
from benchmark.leaderboard import (
    PAIRED_COLUMNS,
    RESULT_COLUMNS,
    choose_params,
    final_rows,
    headline,
    mean_ci,
    metrics_json,
    normalise,
    plot_suite,
    population_summary,
    seed_table,
    summarise,
    summarise_steps,
    write_leaderboard,
)
from benchmark.leaderboard.aggregate import HEADLINE_METRICS
from benchmark.leaderboard.plots import clip_band, repel
from benchmark.leaderboard.render import md_inline

T_975_2 = 4.302653  # scipy.stats.t.ppf(0.975, 2), i.e. n = 3 seeds
SKIP_REASON = "needs an explicit Hessian: 1.2M parameters > 50k limit"


def _row(**kw) -> dict:
    """A complete result row (every ResultRow column; the unset measurements None)."""
    base = {"suite": "s", "dataset": "d", "model": "m", "protocol": "p", "method": "ft", "params_id": "ft",
            "seed": None, "step": None, "status": "ok", "error": None}  # fmt: skip
    return make_row({**base, **kw})


def make_results(seed: int = 0) -> pd.DataFrame:
    """2 suites x 2 protocols x 4 methods (incl. a skipped one) x 3 seeds x 2 steps."""
    rng = np.random.default_rng(seed)
    methods = [("original", "original", 0.55), ("retrain", "retrain", 0.985),
               ("finetune", "finetune[epochs=5]", 0.93)]  # fmt: skip
    rows = []
    for suite, dataset in (("cifar_cnn", "cifar10"), ("mnist_mlp", "mnist")):
        arch = suite.split("_")[1]
        for proto in ("random_10x1pct", "class_2x5pct"):
            for s in range(3):
                for step in (1, 2):
                    gold_f = 0.88 - 0.01 * step
                    for method, pid, quality in methods:
                        q = quality - 0.02 * step + rng.normal(0, 0.01)
                        wall = {"original": 0.0, "retrain": 12.0}.get(method, 2.0) + rng.uniform(0, 0.1)
                        rows.append(_row(
                            suite=suite, dataset=dataset, model=arch, protocol=proto, method=method,
                            params_id=pid, seed=s, step=step, acc_forget=min(1.0, gold_f + (1 - q)),
                            acc_retain=0.99, acc_test=0.9, gold_acc_forget=gold_f, gold_acc_retain=0.99,
                            gold_acc_test=0.9, gap_forget=1 - q, gap_retain=0.0, gap_test=0.0, tow=q,
                            js_forget=0.05 * (1 - q), js_test=0.01 * (1 - q), update_norm=3.0 * (1 - q),
                            dist_to_gold=1.0, wall_s=wall, gold_wall_s=12.0, speedup=12.0 / max(wall, 1e-3),
                            grad_samples=1000 * step, hvps=0, epochs_equiv=0.5, code_hash="abc123",
                            git_rev="deadbeef",
                        ))  # fmt: skip
                rows.append(_row(suite=suite, dataset=dataset, model=arch, protocol=proto, method="newton",
                                 params_id="newton[L=1]", seed=s, step=None, status="skipped",
                                 error=SKIP_REASON))  # fmt: skip
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ aggregate
def test_mean_ci_by_hand():
    mean, half, n = mean_ci([0.8, 0.9, 0.7])
    assert (mean, n) == (pytest.approx(0.8), 3)
    assert half == pytest.approx(T_975_2 * 0.1 / math.sqrt(3), rel=1e-6)  # sd = 0.1
    assert math.isnan(mean_ci([0.5])[1]) and mean_ci([0.5])[0] == 0.5
    assert math.isnan(mean_ci([])[0]) and mean_ci([np.nan, 1.0])[2] == 1


def _small_frame() -> pd.DataFrame:
    rows = []
    for s, (t1, t2) in enumerate([(0.5, 0.8), (0.6, 0.9), (0.4, 0.7)]):
        rows += [_row(seed=s, step=1, tow=t1, acc_forget=0.5), _row(seed=s, step=2, tow=t2, acc_forget=0.5)]
    # a method with a failed seed, a timeout and one ok seed
    rows += [
        _row(method="bad", params_id="bad[x=1]", seed=0, step=1, tow=0.2),
        _row(method="bad", params_id="bad[x=1]", seed=0, step=2, tow=0.3),
        _row(method="bad", params_id="bad[x=1]", seed=1, step=1, status="failed", error="RuntimeError: boom"),
        _row(method="bad", params_id="bad[x=1]", seed=2, step=2, status="timeout", error="budget of 60s"),
    ]
    rows += [_row(method="nw", params_id="nw", seed=s, status="skipped", error="too big") for s in range(3)]
    rows += [_row(method="short", params_id="short", seed=0, step=1, tow=0.9)]  # stops before the last step
    return pd.DataFrame(rows)


def test_summarise_final_step_mean_ci_and_failures():
    summ = summarise(_small_frame()).set_index("params_id")
    assert list(summ.index) == ["bad[x=1]", "ft", "nw", "short"]  # sorted by method, params_id

    ft = summ.loc["ft"]  # final step (2): 0.8, 0.9, 0.7
    assert ft["status"] == "ok" and ft["n_seeds"] == 3 and ft["n_ok"] == 3 and ft["n_failed"] == 0
    assert ft["tow_mean"] == pytest.approx(0.8)
    assert ft["tow_ci"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3), rel=1e-6)  # = 0.248414
    assert ft["tow_ci"] == pytest.approx(0.248414, abs=1e-6)
    assert ft["acc_forget_mean"] == 0.5 and ft["acc_forget_ci"] == 0.0
    assert ft["error"] == ""

    bad = summ.loc["bad[x=1]"]  # seed 0 ok (0.3), seed 1 failed at step 1, seed 2 timed out at step 2
    assert bad["status"] == "partial" and bad["n_seeds"] == 3 and bad["n_ok"] == 1 and bad["n_failed"] == 2
    assert bad["tow_mean"] == pytest.approx(0.3) and math.isnan(bad["tow_ci"])  # n = 1 -> no CI
    assert bad["error"] == "RuntimeError: boom"  # first error text, by seed

    nw = summ.loc["nw"]
    assert nw["status"] == "skipped" and nw["error"] == "too big" and nw["n_skipped"] == 3
    assert nw["n_ok"] == 0 and all(math.isnan(nw[f"{m}_mean"]) for m in ("tow", "acc_test", "wall_s"))

    short = summ.loc["short"]  # an ok row at step 1 of 2 is not a final result
    assert short["status"] == "failed" and short["error"].startswith("incomplete: last step 1 of 2")
    assert math.isnan(short["tow_mean"])


def test_summarise_steps_has_every_step():
    steps = summarise_steps(_small_frame())
    ft = steps[steps["params_id"] == "ft"].set_index("step")
    assert ft.loc[1, "tow_mean"] == pytest.approx(0.5) and ft.loc[2, "tow_mean"] == pytest.approx(0.8)
    assert ft.loc[1, "tow_ci"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3), rel=1e-6)
    bad = steps[steps["params_id"] == "bad[x=1]"].set_index("step")
    assert bad.loc[1, "n_failed"] == 1 and bad.loc[1, "tow_mean"] == pytest.approx(0.2)
    nw = steps[steps["params_id"] == "nw"]
    assert len(nw) == 1 and nw["step"].isna().all() and (nw["status"] == "skipped").all()


def test_final_rows_one_per_seed():
    fr = final_rows(_small_frame())
    assert len(fr) == 3 + 3 + 3 + 1
    assert fr.loc[fr["params_id"] == "ft", "step"].tolist() == [2, 2, 2]


def _headline_of(df: pd.DataFrame) -> pd.DataFrame:
    return headline(summarise(df), seed_table(df), df)


def test_metrics_json_rounds_and_nulls():
    mj = metrics_json(_headline_of(_small_frame()))
    cell = mj["s"]["p"]
    assert set(cell) == {"bad", "ft", "nw", "short"}  # one entry per method
    # ft: AUC per seed (0.5+0.8)/2, (0.6+0.9)/2, (0.4+0.7)/2 -> 0.65; final ToW 0.8; no original/population
    assert cell["ft"] == {"tow_auc": 0.65, "tow_final": 0.8, "margin_vs_original": None, "klom_mean": None,
                          "neurips_score": None}  # fmt: skip
    assert cell["nw"]["tow_auc"] is None
    head = _headline_of(_small_frame())
    head.loc[head["method"] == "ft", "tow_auc_mean"] = 0.123456789
    assert metrics_json(head)["s"]["p"]["ft"]["tow_auc"] == 0.1235
    json.dumps(mj, allow_nan=False)  # strict JSON: no NaN


def test_auc_per_seed_by_hand():
    seeds = seed_table(_small_frame()).set_index(["params_id", "seed"])
    for s, (t1, t2) in enumerate([(0.5, 0.8), (0.6, 0.9), (0.4, 0.7)]):
        assert seeds.loc[("ft", s), "tow_auc"] == pytest.approx((t1 + t2) / 2)
        assert seeds.loc[("ft", s), "tow_step1"] == pytest.approx(t1)
        assert seeds.loc[("ft", s), "tow"] == pytest.approx(t2)
    assert seeds.loc[("bad[x=1]", 0), "tow_auc"] == pytest.approx(0.25)
    assert math.isnan(seeds.loc[("bad[x=1]", 1), "tow_auc"])  # failed at step 1: no AUC
    assert math.isnan(seeds.loc[("bad[x=1]", 2), "tow_auc"])  # step 1 missing, step 2 timed out
    assert math.isnan(seeds.loc[("short", 0), "tow_auc"])  # stopped after step 1 of 2
    assert seeds.loc[("short", 0), "tow_step1"] == pytest.approx(0.9)
    summ = summarise(_small_frame()).set_index("params_id")
    assert summ.loc["ft", "tow_auc_mean"] == pytest.approx(0.65)
    assert summ.loc["ft", "tow_auc_ci"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3), rel=1e-6)
    assert summ.loc["ft", "tow_step1_mean"] == pytest.approx(0.5)


def test_margin_vs_original_matches_scipy():
    rows = [r for r in _small_frame().to_dict("records") if r["params_id"] == "ft"]
    orig = [(0.1, 0.0), (0.05, 0.1), (0.2, 0.2)]
    for s, (t1, t2) in enumerate(orig):
        rows += [_row(method="original", params_id="original", seed=s, step=1, tow=t1),
                 _row(method="original", params_id="original", seed=s, step=2, tow=t2)]  # fmt: skip
    rows += [_row(method="retrain", params_id="retrain", seed=s, step=k, tow=0.99 - 0.01 * s)
             for s in range(3) for k in (1, 2)]  # fmt: skip
    summ = summarise(pd.DataFrame(rows)).set_index("params_id")
    ft_auc = np.array([0.65, 0.75, 0.55])
    orig_auc = np.array([np.mean(o) for o in orig])
    d = ft_auc - orig_auc
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    ft = summ.loc["ft"]
    assert ft["margin_vs_original"] == pytest.approx(d.mean())
    assert ft["margin_vs_original_ci"] == pytest.approx(half)
    assert ft["margin_vs_original_p"] == pytest.approx(stats.ttest_rel(ft_auc, orig_auc).pvalue)
    assert ft["margin_n_pairs"] == 3
    assert summ.loc["original", "margin_vs_original"] == 0.0
    assert math.isnan(summ.loc["original", "margin_vs_original_ci"])
    # the noise floor is the retrain AUC, on every row of the protocol
    np.testing.assert_allclose(summ["floor_tow_auc"].to_numpy(float), 0.98)
    assert summ.loc["ft", "best_params_id"] == "ft"  # retrain (0.98) is not eligible for the best


def _paired_frame() -> pd.DataFrame:
    """_small_frame plus methods whose ToW AUC differs from the best's (ft: 0.65, 0.75, 0.55) by set
    amounts (the same ToW at both steps, so the AUC is that value)."""
    rows = []
    for s, (same, close, far) in enumerate([(0.65, 0.55, 0.0), (0.75, 0.55, 0.1), (0.55, 0.45, 0.0)]):
        for pid, v in (("same", same), ("close", close), ("far", far)):
            rows += [_row(method=pid, params_id=pid, seed=s, step=k, tow=v) for k in (1, 2)]
    return pd.concat([_small_frame(), pd.DataFrame(rows)], ignore_index=True)


def test_paired_t_test_against_best_by_hand():
    summ = summarise(_paired_frame()).set_index("params_id")
    assert set(PAIRED_COLUMNS) <= set(summ.columns)
    assert (summ["best_params_id"].dropna() == "ft").all()  # ties with "same": first by method name
    ft = summ.loc["ft"]
    assert ft["tied_with_best"] is True and ft["tow_auc_diff_vs_best"] == 0.0
    assert math.isnan(ft["tow_auc_p_vs_best"])
    # close - ft = -0.1, -0.2, -0.1: mean -2/15, sd 1/sqrt(300) -> t = -4 on 2 dof;
    # for 2 dof the two-sided p = 1 - |t| / sqrt(t^2 + 2) = 1 - 4/sqrt(18) = 0.057191
    close = summ.loc["close"]
    assert close["tow_auc_diff_vs_best"] == pytest.approx(-2 / 15)
    assert close["tow_auc_p_vs_best"] == pytest.approx(1 - 4 / math.sqrt(18), abs=1e-9)
    assert close["tied_with_best"] is True and close["tow_auc_n_pairs"] == 3  # p >= 0.05
    far = summ.loc["far"]  # -0.65, -0.65, -0.55
    d = np.array([-0.65, -0.65, -0.55])
    assert far["tow_auc_p_vs_best"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-9)
    assert far["tied_with_best"] is False
    same = summ.loc["same"]  # identical values on every seed: p = 1
    assert same["tow_auc_p_vs_best"] == 1.0 and same["tied_with_best"] is True
    bad = summ.loc["bad[x=1]"]  # one seed with an AUC: no test
    assert math.isnan(bad["tow_auc_p_vs_best"]) and bad["tied_with_best"] is None
    assert bad["tow_auc_n_pairs"] == 1


def _grid_frame(selected: str | None) -> pd.DataFrame:
    rows = []
    for pid, v in (("sgd", 0.6), ("sgd[lr=0.1]", 0.9), ("adam[lr=1]", 0.5), ("adam[lr=2]", 0.7)):
        method = pid.split("[")[0]
        for s in range(3):
            for k in (1, 2):
                r = _row(method=method, params_id=pid, seed=s, step=k, tow=v + 0.01 * s)
                if selected is not None:
                    r["selected"] = pid == selected
                rows.append(r)
    return pd.DataFrame(rows)


def test_headline_one_row_per_method():
    head = _headline_of(_grid_frame(None)).set_index("method")
    assert list(head.index) == ["adam", "sgd"]
    # sgd: the params_id named like the method wins over a better one; adam: the first in sort order
    assert head.loc["sgd", "params_id"] == "sgd" and head.loc["sgd", "params_choice"] == "default"
    assert head.loc["adam", "params_id"] == "adam[lr=1]" and head.loc["adam", "params_choice"] == "first"
    assert (head["n_params"] == 2).all()
    # best recomputed among the headline rows: sgd (0.61) beats adam[lr=1] (0.51)
    assert (head["best_params_id"] == "sgd").all()
    sel = _headline_of(_grid_frame("adam[lr=2]")).set_index("method")
    assert sel.loc["adam", "params_id"] == "adam[lr=2]" and sel.loc["adam", "params_choice"] == "selected"
    assert sel.loc["sgd", "params_id"] == "sgd"  # nothing selected for sgd: the exact name
    # the tuning stage's selection comes before the bare (built-in default) name
    sel = _headline_of(_grid_frame("sgd[lr=0.1]")).set_index("method")
    assert sel.loc["sgd", "params_id"] == "sgd[lr=0.1]" and sel.loc["sgd", "params_choice"] == "selected"
    assert choose_params("m", ["m", "m[a=1]"], {"m[a=1]"}) == ("m[a=1]", "selected")
    assert choose_params("m", ["m[b=2]", "m[a=1]"], set()) == ("m[a=1]", "first")
    assert choose_params("m", ["m[b=2]", "m[a=1]"], {"m[b=2]"}) == ("m[b=2]", "selected")
    assert len(summarise(_grid_frame(None))) == 4  # the full grid stays in the summary


def test_ci_band_clipped_to_valid_range():
    lo, hi = clip_band(np.array([0.95, 0.05, 0.5]), np.array([0.1, 0.2, 0.1]), "tow")
    np.testing.assert_allclose(lo, [0.85, 0.0, 0.4])
    np.testing.assert_allclose(hi, [1.0, 0.25, 0.6])
    lo, hi = clip_band(np.array([0.68]), np.array([0.1]), "js_forget")
    assert hi[0] == pytest.approx(math.log(2)) and lo[0] == pytest.approx(0.58)
    lo, hi = clip_band(np.array([5.0]), np.array([10.0]), "wall_s")  # no known range: unclipped
    assert lo[0] == -5.0 and hi[0] == 15.0


def test_repel_separates_coincident_labels():
    pts = np.array([[100.0, 100.0], [100.0, 100.0], [101.0, 100.0], [300.0, 50.0]])
    off = repel(pts, min_dist=12.0)
    lab = pts + off
    dists = [np.hypot(*(lab[i] - lab[j])) for i in range(3) for j in range(i + 1, 3)]
    assert min(dists) > 8.0  # pushed apart (the pull-back keeps them near their points)
    np.testing.assert_allclose(off[3], [6.0, 6.0])  # an isolated label stays at its default offset
    np.testing.assert_array_equal(repel(pts, min_dist=12.0), off)  # deterministic


def test_md_inline_converts_light_markdown():
    assert md_inline("**a** *b* `c*d` <x> [t](u.md)") == (
        '<strong>a</strong> <em>b</em> <code>c*d</code> &lt;x&gt; <a href="u.md">t</a>'
    )


def _population(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Population rows (steps 1 and 2, per params_id) and per-example KLoM values at both steps."""
    pop, ex = [], []
    keys = df[["suite", "protocol", "method", "params_id"]].drop_duplicates().itertuples(index=False)
    for i, (suite, proto, method, pid) in enumerate(keys):
        for step in (1, 2):
            pop.append({"suite": suite, "protocol": proto, "method": method, "params_id": pid, "step": step,
                        "n_unlearned": 3, "n_retrained": 3, "klom_mean": 0.1 * (i + 1) * step,
                        "klom_lo": 0.05 * (i + 1) * step, "klom_hi": 0.2 * (i + 1) * step, "klom_p95": 1.0,
                        "klom_floor": 0.08, "neurips_score": 0.5 - 0.01 * i, "neurips_f": 0.7, "status": "ok",
                        "error": None})  # fmt: skip
            ex += [{"suite": suite, "protocol": proto, "params_id": pid, "step": step, "index": j,
                    "klom": 0.01 * (j + 1) * (i + 1)} for j in range(20)]  # fmt: skip
    return pd.DataFrame(pop), pd.DataFrame(ex)


def test_population_summary_takes_the_final_step():
    pop, _ = _population(_small_frame())
    pop = pop[~((pop["params_id"] == "nw") & (pop["step"] == 2))]  # nw has no final-step row
    ps = population_summary(pop).set_index("params_id")
    assert ps.loc["ft", "pop_step"] == 2 and ps.loc["ft", "klom_mean"] == pytest.approx(0.1 * 2)
    assert ps.loc["nw", "pop_status"] == "incomplete" and math.isnan(ps.loc["nw", "klom_mean"])
    assert population_summary(None).empty


def test_normalise_types_a_complete_row_and_refuses_a_missing_or_unexpected_column():
    raw = pd.DataFrame([_row(method="m", params_id=None, status=None, seed=0, step=1)])
    df = normalise(raw[list(reversed(raw.columns))])  # any column order in; the schema's order out
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert df.loc[0, "status"] == "ok" and df.loc[0, "params_id"] == "m" and math.isnan(df.loc[0, "tow"])
    assert df.loc[0, "selected"] is np.False_ or df.loc[0, "selected"] is False
    for bad, name in ((raw.drop(columns="tow"), "missing column tow"),
                      (raw.assign(extra_metric=1.0), "unexpected column extra_metric")):  # fmt: skip
        with pytest.raises(SchemaError) as err:
            normalise(bad)
        assert name in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SchemaError, match="unexpected column 'tow_typo'"):
        _row(tow_typo=0.5)


# ------------------------------------------------------------------------------------------------ render
@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, list[Path], pd.DataFrame]:
    df = make_results()
    out = tmp_path_factory.mktemp("lb")
    prov = {"git_rev": "deadbeef", "packages": {"torch": "2.14.1", "numpy": "2.0"}, "hardware": "cpu x16"}
    pop, ex = _population(df)
    return out, write_leaderboard(df, out, provenance=prov, population=pop, population_examples=ex), df


def test_write_leaderboard_creates_all_files(rendered):
    out, paths, _ = rendered
    names = {p.relative_to(out).as_posix() for p in paths}
    expected = {"README.md", "index.html", "summary.csv", "headline.csv", "metrics_by_method.json",
                "cifar_cnn.csv", "mnist_mlp.csv", "dvc_plots/tow_steps.json",
                "dvc_plots/headline.json"}  # fmt: skip
    expected |= {f"metrics/{s}.{p}.json" for s in ("cifar_cnn", "mnist_mlp")
                 for p in ("random_10x1pct", "class_2x5pct")}  # fmt: skip
    for suite in ("cifar_cnn", "mnist_mlp"):
        expected |= {f"plots/{suite}_{k}.png" for k in ("tow_by_step", "pareto", "forget_acc_by_step",
                                                          "js_by_step", "klom_cdf")}  # fmt: skip
    assert names == expected
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths if p.suffix == ".png")


def _table_lines(readme: str, suite: str, protocol: str) -> list[str]:
    section = readme.split(f"## Suite `{suite}`", 1)[1]
    block = section.split(f"### Protocol `{protocol}`", 1)[1].split("\n\n", 2)[1]
    return [line for line in block.splitlines() if line.startswith("| `")]


def test_readme_content(rendered):
    out, _, _ = rendered
    readme = (out / "README.md").read_text()
    assert readme.startswith("# ")
    assert "ToW = 1 means indistinguishable from retraining" in readme and "higher is better" in readme
    for suite in ("cifar_cnn", "mnist_mlp"):
        for proto in ("random_10x1pct", "class_2x5pct"):
            lines = _table_lines(readme, suite, proto)
            assert len(lines) == 4
            by_method = {line.split("`")[1]: line for line in lines}
            # retrain has the highest ToW but is the reference: the bold best is finetune's
            assert "**" in by_method["finetune"].split("|")[3]
            assert "**" not in by_method["retrain"] and "**" not in by_method["original"]
            assert lines[0].startswith("| `retrain`")  # ranked by ToW
            assert f"skipped: {SKIP_REASON}" in by_method["newton"]
            assert "3/3" in by_method["finetune"] and "0/3" in by_method["newton"]
            assert by_method["finetune"].split("|")[4].strip() == "best"  # the "vs best" column
            assert "p=" in by_method["original"].split("|")[4]
            assert "(p=" in by_method["finetune"].split("|")[5]  # margin over original, paired
            assert "finetune[epochs=5]" in by_method["finetune"].split("|")[2]  # the chosen params_id
            assert " [" in by_method["finetune"].split("|")[11]  # KLoM mean [lo, hi] (population)
        for kind in ("tow_by_step", "pareto", "forget_acc_by_step", "js_by_step", "klom_cdf"):
            assert f"(plots/{suite}_{kind}.png)" in readme
    assert readme.index("## Provenance") > readme.index("## Suite `mnist_mlp`")
    assert "- **git_rev**: deadbeef" in readme and "  - torch: 2.14.1" in readme and "cpu x16" in readme


def test_html_is_self_contained(rendered):
    out, _, _ = rendered
    page = (out / "index.html").read_text()
    assert page.count('<table class="lb headline">') == 4 and page.count('<table class="lb grid">') == 4
    assert "<script>" in page and "addEventListener" in page and 'id="filter"' in page
    assert "**" not in page and "`" not in page  # no raw Markdown leaks into the HTML
    assert '<img src="plots/cifar_cnn_pareto.png"' in page
    assert "<strong>" in page and "http" not in page  # nothing fetched from the network


def test_csv_round_trips(rendered):
    out, _, df = rendered
    back = pd.read_csv(out / "cifar_cnn.csv")
    ref = normalise(df[df["suite"] == "cifar_cnn"])
    ref = ref.sort_values(["suite", "protocol", "method", "params_id", "seed", "step"], na_position="last",
                          kind="mergesort").reset_index(drop=True)  # fmt: skip
    assert list(back.columns) == list(RESULT_COLUMNS) and len(back) == len(ref)
    for col in RESULT_COLUMNS:
        if not pd.api.types.is_numeric_dtype(ref[col]):
            assert back[col].fillna("").astype(str).tolist() == ref[col].fillna("").astype(str).tolist(), col
        else:
            np.testing.assert_allclose(back[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-5,
                                       equal_nan=True, err_msg=col)  # fmt: skip
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * 2 * 4 and "tow_mean" in summary.columns and "tow_ci" in summary.columns


def test_metrics_json_file(rendered):
    out, _, _ = rendered
    mj = json.loads((out / "metrics_by_method.json").read_text())
    assert sorted(mj) == ["cifar_cnn", "mnist_mlp"]
    cell = mj["cifar_cnn"]["class_2x5pct"]
    assert cell["newton"]["tow_auc"] is None and 0.8 < cell["finetune"]["tow_auc"] < 1.0
    assert cell["finetune"]["margin_vs_original"] > 0.3 and cell["finetune"]["klom_mean"] is not None
    keys = {"tow_auc", "tow_final", "margin_vs_original", "klom_mean", "neurips_score"}
    assert set(cell["finetune"]) == keys


def test_dvc_metrics_files_are_compact(rendered):
    """One small file per suite x protocol for `dvc metrics show`: the best unlearning method (original,
    retrain and the skipped newton excluded), its AUC and margin, and the two reference rows' AUCs."""
    out, _, df = rendered
    head = pd.read_csv(out / "headline.csv").set_index(["suite", "protocol", "method"])
    for suite in ("cifar_cnn", "mnist_mlp"):
        for proto in ("random_10x1pct", "class_2x5pct"):
            m = json.loads((out / "metrics" / f"{suite}.{proto}.json").read_text())
            assert tuple(sorted(m)) == tuple(sorted(HEADLINE_METRICS))
            assert m["best_method"] == "finetune"
            # ToW AUC of one seed = mean over its steps; the metric is the mean over seeds
            ft = df[(df.suite == suite) & (df.protocol == proto) & (df.method == "finetune")]
            assert m["best_tow_auc"] == pytest.approx(ft.groupby("seed").tow.mean().mean(), abs=1e-4)
            assert m["best_margin_vs_original"] == pytest.approx(
                head.loc[(suite, proto, "finetune"), "margin_vs_original"], abs=1e-4)  # fmt: skip
            for ref in ("original", "retrain"):
                assert m[f"{ref}_tow_auc"] == pytest.approx(head.loc[(suite, proto, ref), "tow_auc_mean"],
                                                            abs=1e-4)  # fmt: skip


def test_dvc_plot_data(rendered):
    """Per-step ToW means (one record per suite x protocol x method x step) and one bar per method."""
    out, _, df = rendered
    steps = json.loads((out / "dvc_plots" / "tow_steps.json").read_text())
    assert len(steps) == 2 * 2 * 3 * 2  # suites x protocols x (methods with rows) x steps; newton skipped
    rec = next(r for r in steps if r["panel"] == "mnist_mlp / class_2x5pct" and r["method"] == "retrain"
               and r["step"] == 2)  # fmt: skip
    sel = df[(df.suite == "mnist_mlp") & (df.protocol == "class_2x5pct") & (df.method == "retrain")
             & (df.step == 2)]  # fmt: skip
    assert rec["tow"] == pytest.approx(sel.tow.mean(), abs=1e-4)
    bars = json.loads((out / "dvc_plots" / "headline.json").read_text())
    assert len(bars) == 2 * 2 * 3 and {b["method"] for b in bars} == {"original", "retrain", "finetune"}


def test_rerun_is_byte_identical(rendered, tmp_path):
    out, paths, df = rendered
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # row order must not matter
    prov = {"hardware": "cpu x16", "packages": {"numpy": "2.0", "torch": "2.14.1"}, "git_rev": "deadbeef"}
    pop, ex = _population(df)
    again = write_leaderboard(shuffled, tmp_path, provenance=prov,
                              population=pop.sample(frac=1.0, random_state=2), population_examples=ex)
    assert [p.relative_to(tmp_path) for p in again] == [p.relative_to(out) for p in paths]
    for p in paths:
        if p.suffix in {".md", ".csv", ".json", ".html", ".png"}:
            assert (tmp_path / p.relative_to(out)).read_bytes() == p.read_bytes(), p.name


def test_plots_skip_without_ok_data(tmp_path):
    df = make_results()
    only_skipped = df[df["status"] == "skipped"]
    assert plot_suite(only_skipped, "cifar_cnn", tmp_path) == []
    paths = write_leaderboard(only_skipped, tmp_path)
    assert not any(p.suffix == ".png" for p in paths)
    readme = (tmp_path / "README.md").read_text()
    assert SKIP_REASON in readme and "plots/" not in readme


def test_a_figure_without_data_now_removes_its_earlier_file(tmp_path, rendered):
    """A suite whose population was dropped from params.yaml: its KLoM CDF of the earlier run goes too."""
    _, _, df = rendered
    pop, ex = _population(df)
    first = write_leaderboard(df, tmp_path, population=pop, population_examples=ex)
    cdfs = [p for p in first if p.name.endswith("_klom_cdf.png")]
    assert cdfs and all(p.exists() for p in cdfs)
    again = write_leaderboard(df, tmp_path)  # no population files this time
    assert not any(p.name.endswith("_klom_cdf.png") for p in again)
    assert not any(p.exists() for p in cdfs)
    assert "_klom_cdf.png" not in (tmp_path / "README.md").read_text()


def test_hand_written_pages_beside_the_leaderboard_are_linked(tmp_path, rendered):
    _, _, df = rendered
    write_leaderboard(df, tmp_path)
    assert "gpu/README.md" not in (tmp_path / "README.md").read_text()
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "README.md").write_text("# measured elsewhere\n")
    write_leaderboard(df, tmp_path)
    assert "(gpu/README.md)" in (tmp_path / "README.md").read_text()
    assert 'href="gpu/README.md"' in (tmp_path / "index.html").read_text()
    assert (tmp_path / "gpu" / "README.md").read_text() == "# measured elsewhere\n"  # left alone
    # a preset's committed results (e.g. leaderboards/memorization-levels/) are linked the same way
    assert "memorization-levels/README.md" not in (tmp_path / "README.md").read_text()
    (tmp_path / "memorization-levels").mkdir()
    (tmp_path / "memorization-levels" / "README.md").write_text("# by level\n")
    write_leaderboard(df, tmp_path)
    assert 'href="memorization-levels/README.md"' in (tmp_path / "index.html").read_text()


def test_unchanged_figures_are_not_drawn_again(tmp_path):
    """Each PNG records the hash of its inputs: re-rendering unchanged results draws nothing and writes the
    same bytes; changing one suite's rows redraws that suite's figures only."""
    import benchmark.leaderboard.plots as plots_mod

    df = make_results()
    first = write_leaderboard(df, tmp_path)
    pngs = {p: p.read_bytes() for p in first if p.suffix == ".png"}
    suites = sorted(df["suite"].unique())
    assert len(pngs) >= 2 and len(suites) >= 2

    drawn: list[str] = []

    def recording(plotter):
        def draw(ok, head, suite, path, styles, ex):
            out = plotter(ok, head, suite, path, styles, ex)
            if out is not None:  # a figure without data (no KLoM examples here) is asked for every time
                drawn.append(suite)
            return out

        return draw

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots_mod, "_PLOTTERS", {k: recording(f) for k, f in plots_mod._PLOTTERS.items()})
        again = write_leaderboard(df, tmp_path)
        assert drawn == [] and [p for p in again if p.suffix == ".png"] == list(pngs)
        assert all(p.read_bytes() == b for p, b in pngs.items())
        changed = df.copy()
        changed.loc[changed["suite"] == suites[0], "tow"] *= 0.5
        write_leaderboard(changed, tmp_path)
    assert drawn and set(drawn) == {suites[0]}


def test_a_selection_that_violated_the_utility_constraint_says_so(tmp_path):
    """A selected configuration whose tuning found no trial within tuning.max_retain_drop (result rows:
    ``tuning_constraint = violated``) carries a note in the headline table; one that met it does not."""
    df = make_results()
    bad = (df["method"] == "finetune") & (df["suite"] == df["suite"].iloc[0])
    df["tuning_constraint"] = "met"
    df.loc[bad, "tuning_constraint"] = "violated"
    write_leaderboard(df, tmp_path)
    head = pd.read_csv(tmp_path / "headline.csv")
    marked = head[head["tuning_constraint"] == "violated"]
    assert set(marked["method"]) == {"finetune"} and set(marked["suite"]) == {df["suite"].iloc[0]}
    text = (tmp_path / "README.md").read_text()
    note = "tuning: no configuration kept retain accuracy within tuning.max_retain_drop"
    assert text.count(note) == len(marked)


def test_corrective_accuracies_get_columns_and_a_gold_line_only_where_measured(tmp_path):
    """A protocol with flipped labels left in training (mislabeled, identified < 1) shows the accuracy on the
    unidentified samples' true labels, as a column (mean ± CI over seeds) and in the gold model's line."""
    df = make_results()
    mis = df["protocol"] == "class_2x5pct"
    df.loc[mis, "acc_forget_true"] = 0.5
    df.loc[mis, "gold_acc_forget_true"] = 0.9
    df.loc[mis, "acc_unidentified_true"] = 0.25
    df.loc[mis, "gold_acc_unidentified_true"] = 0.125
    write_leaderboard(df, tmp_path)
    readme = (tmp_path / "README.md").read_text()
    suite = df["suite"].iloc[0]
    section = readme.split(f"## Suite `{suite}`", 1)[1]
    for proto, measured in (("class_2x5pct", True), ("random_10x1pct", False)):
        block = section.split(f"### Protocol `{proto}`", 1)[1].split("### Protocol", 1)[0]
        assert ("Unidentified flipped: acc (true labels) %" in block) is measured
        assert ("unidentified flipped samples (true labels) 12.5%" in block) is measured
        assert ("Forget acc (true labels) %" in block) is measured
    line = next(ln for ln in _table_lines(readme, suite, "class_2x5pct") if ln.startswith("| `finetune`"))
    assert "25.0 ± 0.0" in line
    head = pd.read_csv(tmp_path / "headline.csv")
    assert set(head[head["protocol"] == "class_2x5pct"]["acc_unidentified_true_mean"].dropna()) == {0.25}
