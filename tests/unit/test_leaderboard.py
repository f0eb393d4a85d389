"""Aggregation over seeds and the rendered leaderboard (files, formatting, determinism)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.leaderboard import (
    PAIRED_COLUMNS,
    RESULT_COLUMNS,
    final_rows,
    mean_ci,
    metrics_json,
    normalise,
    plot_suite,
    summarise,
    summarise_steps,
    write_leaderboard,
)

T_975_2 = 4.302653  # scipy.stats.t.ppf(0.975, 2), i.e. n = 3 seeds
SKIP_REASON = "needs an explicit Hessian: 1.2M parameters > 50k limit"


def _row(**kw) -> dict:
    base = {"suite": "s", "dataset": "d", "model": "m", "protocol": "p", "method": "ft", "params_id": "ft",
            "status": "ok", "error": None}  # fmt: skip
    return {**base, **kw}


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


def test_metrics_json_rounds_and_nulls():
    mj = metrics_json(summarise(_small_frame()))
    cell = mj["s"]["p"]
    assert set(cell) == {"bad[x=1]", "ft", "nw", "short"}
    assert cell["ft"] == {"tow": 0.8, "acc_forget": 0.5, "js_test": None, "wall_s": None, "speedup": None,
                          "mia_efficacy": None, "js_ratio_forget": None, "neurips_score": None,
                          "tow_p_vs_best": None}  # fmt: skip
    assert cell["nw"]["tow"] is None
    summ = summarise(_small_frame())
    summ.loc[summ["params_id"] == "ft", "tow_mean"] = 0.123456789
    assert metrics_json(summ)["s"]["p"]["ft"]["tow"] == 0.1235
    json.dumps(mj, allow_nan=False)  # strict JSON: no NaN


def _paired_frame() -> pd.DataFrame:
    """_small_frame plus methods whose final ToW differs from the best (ft: 0.8, 0.9, 0.7) by set amounts."""
    rows = []
    for s, (same, close, far) in enumerate([(0.8, 0.7, 0.1), (0.9, 0.7, 0.2), (0.7, 0.6, 0.1)]):
        for pid, v in (("same", same), ("close", close), ("far", far)):
            rows.append(_row(method=pid, params_id=pid, seed=s, step=2, tow=v))
    return pd.concat([_small_frame(), pd.DataFrame(rows)], ignore_index=True)


def test_paired_t_test_against_best_by_hand():
    summ = summarise(_paired_frame()).set_index("params_id")
    assert set(PAIRED_COLUMNS) <= set(summ.columns)
    assert (summ["best_params_id"].dropna() == "ft").all()
    ft = summ.loc["ft"]
    assert ft["tied_with_best"] is True and ft["tow_diff_vs_best"] == 0.0 and math.isnan(ft["tow_p_vs_best"])
    # close - ft = -0.1, -0.2, -0.1: mean -2/15, sd 1/sqrt(300) -> t = -4 on 2 dof;
    # for 2 dof the two-sided p = 1 - |t| / sqrt(t^2 + 2) = 1 - 4/sqrt(18) = 0.057191
    close = summ.loc["close"]
    assert close["tow_diff_vs_best"] == pytest.approx(-2 / 15)
    assert close["tow_p_vs_best"] == pytest.approx(1 - 4 / math.sqrt(18), abs=1e-9)
    assert close["tied_with_best"] is True and close["tow_n_pairs"] == 3  # p >= 0.05: not distinguishable
    far = summ.loc["far"]  # -0.7, -0.7, -0.6: t = -0.6667 / (0.057735 / sqrt 3) = -20 -> p = 0.00249
    assert far["tow_p_vs_best"] == pytest.approx(1 - 20 / math.sqrt(402), abs=1e-9)
    assert far["tied_with_best"] is False
    same = summ.loc["same"]  # identical values on every seed: p = 1
    assert same["tow_p_vs_best"] == 1.0 and same["tied_with_best"] is True
    bad = summ.loc["bad[x=1]"]  # one ok seed: no test
    assert math.isnan(bad["tow_p_vs_best"]) and bad["tied_with_best"] is None and bad["tow_n_pairs"] == 1


def test_population_metric_is_reported_once_without_ci():
    df = _small_frame()
    df.loc[df["params_id"] == "ft", "neurips_score"] = 0.25
    summ = summarise(df).set_index("params_id")
    assert summ.loc["ft", "neurips_score_mean"] == 0.25 and math.isnan(summ.loc["ft", "neurips_score_ci"])
    assert math.isnan(summ.loc["bad[x=1]", "neurips_score_mean"])


def test_normalise_fills_missing_columns():
    raw = pd.DataFrame({"suite": ["s"], "protocol": ["p"], "method": ["m"], "seed": [0], "step": [1]})
    df = normalise(raw)
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert df.loc[0, "status"] == "ok" and df.loc[0, "params_id"] == "m" and math.isnan(df.loc[0, "tow"])


# ------------------------------------------------------------------------------------------------ render
@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, list[Path], pd.DataFrame]:
    df = make_results()
    out = tmp_path_factory.mktemp("lb")
    prov = {"git_rev": "deadbeef", "packages": {"torch": "2.14.1", "numpy": "2.0"}, "hardware": "cpu x16"}
    return out, write_leaderboard(df, out, provenance=prov), df


def test_write_leaderboard_creates_all_files(rendered):
    out, paths, _ = rendered
    names = {p.relative_to(out).as_posix() for p in paths}
    expected = {"README.md", "index.html", "summary.csv", "metrics.json", "cifar_cnn.csv", "mnist_mlp.csv"}
    for suite in ("cifar_cnn", "mnist_mlp"):
        expected |= {f"plots/{suite}_{k}.png" for k in ("tow_by_step", "pareto", "forget_acc_by_step",
                                                          "js_by_step")}  # fmt: skip
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
            assert "**" in by_method["finetune[epochs=5]"].split("|")[2]
            assert "**" not in by_method["retrain"] and "**" not in by_method["original"]
            assert lines[0].startswith("| `retrain`")  # ranked by ToW
            assert f"skipped: {SKIP_REASON}" in by_method["newton[L=1]"]
            assert "3/3" in by_method["finetune[epochs=5]"] and "0/3" in by_method["newton[L=1]"]
            assert by_method["finetune[epochs=5]"].split("|")[3].strip() == "best"  # the "vs best" column
            assert "p=" in by_method["original"].split("|")[3]
        for kind in ("tow_by_step", "pareto", "forget_acc_by_step", "js_by_step"):
            assert f"(plots/{suite}_{kind}.png)" in readme
    assert readme.index("## Provenance") > readme.index("## Suite `mnist_mlp`")
    assert "- **git_rev**: deadbeef" in readme and "  - torch: 2.14.1" in readme and "cpu x16" in readme


def test_html_is_self_contained(rendered):
    out, _, _ = rendered
    page = (out / "index.html").read_text()
    assert page.count('<table class="lb">') == 4 and "<script>" in page and "addEventListener" in page
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
    mj = json.loads((out / "metrics.json").read_text())
    assert sorted(mj) == ["cifar_cnn", "mnist_mlp"]
    cell = mj["cifar_cnn"]["class_2x5pct"]
    assert cell["newton[L=1]"]["tow"] is None and 0.8 < cell["finetune[epochs=5]"]["tow"] < 1.0


def test_rerun_is_byte_identical(rendered, tmp_path):
    out, paths, df = rendered
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # row order must not matter
    prov = {"hardware": "cpu x16", "packages": {"numpy": "2.0", "torch": "2.14.1"}, "git_rev": "deadbeef"}
    again = write_leaderboard(shuffled, tmp_path, provenance=prov)
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
