"""The evaluate stage on a tiny suite on disk: every new column is there, and finite for ok rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from benchmark.config import parse_params
from benchmark.data.protocols import make_requests, protocol_path, save_requests
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import run_unlearning
from benchmark.runner.evaluate import COLUMNS, EvalConfig, evaluate_suite
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_gold, train_originals

SEEDS = [0, 1, 2]
METHODS = ["original", "finetune"]

# defined for every ok row whatever the protocol, once there are >= 3 seeds
ALWAYS = [
    "acc_forget", "tow", "js_forget", "js_test", "kl_forget", "kl_test", "js_forget_pop", "js_test_pop",
    "kl_forget_pop", "kl_test_pop", "js_gg_test", "kl_gg_test", "js_ratio_test", "kl_ratio_test",
    "gold_pop_forget", "n_gg_forget", "dist_to_gold", "dist_gold_gold", "dist_to_gold_rel", "mia_loss_auc",
    "mia_loss_bacc", "gold_mia_loss_auc", "mia_efficacy", "gold_mia_efficacy", "lira_z_forget",
    "lira_member_frac", "epochs_equiv", "speedup",
]  # fmt: skip
# defined when several seeds share forget examples (the `shared` protocol below)
SHARED = ["js_gg_forget", "kl_gg_forget", "js_ratio_forget", "kl_ratio_forget"]
FINAL = ["relearn_steps", "relearn_capped", "gold_relearn_steps", "gold_relearn_capped"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    raw = {
        "datasets": {"digits": {"source": "digits"}},
        "protocols": {
            "shared": {"kind": "random", "requests": 2, "fraction": 0.02},
            "class": {"kind": "class", "requests": 2},
        },
        "methods": {"finetune": {"epochs": [1]}},
        "suites": {
            "t": {
                "dataset": "digits",
                "model": {"arch": "mlp", "hidden": [8]},
                "train": {"epochs": 4, "batch_size": 64, "lr": 0.01},
                "protocols": ["shared", "class"],
                "seeds": SEEDS,
                "methods": METHODS,
            }
        },
    }
    params = parse_params(raw)
    root = tmp_path_factory.mktemp("evaluate")
    fetch_dataset(params, "digits", Layout(root))
    run = open_suite(params, "t", root)
    write_protocols(run)
    # `shared`: every seed gets seed 0's forget sets, so the gold models of all seeds are valid
    # retrains of the same request (the setting the population metrics are designed for)
    labels = run.snapshot.y_train.numpy()
    cfg = run.protocol("shared")
    for seed in SEEDS:
        path = protocol_path(run.layout.protocols_dir("t"), "shared", seed)
        save_requests(path, make_requests(cfg, labels, 0), cfg, seed, labels)
    train_originals(run)
    train_gold(run)
    run_unlearning(run)
    return run, evaluate_suite(run, EvalConfig(relearn_max_steps=20))


@pytest.fixture(scope="module")
def results(built) -> pd.DataFrame:
    return built[1]


@pytest.mark.parametrize("which", ["gold", "original"])
def test_stale_gold_or_original_is_refused_naming_it(built, which):
    from benchmark.runner.artifacts import read_json, write_json
    from benchmark.runner.evaluate import StaleArtifactError

    run = built[0]
    path = run.layout.gold_path("t", "class", 1, 2) if which == "gold" else run.original_path(1, "class")
    meta_path = path.with_suffix(".json")
    meta = read_json(meta_path)
    write_json(meta_path, {**meta, "key": "made-with-other-params"})
    try:
        with pytest.raises(StaleArtifactError) as err:
            evaluate_suite(run, EvalConfig(relearn=False))
        msg = str(err.value)
        assert str(path) in msg and f"unlearn-bench {'gold' if which == 'gold' else 'train'}" in msg
        assert "\n" not in msg
    finally:
        write_json(meta_path, meta)


def test_columns_and_rows(results):
    assert list(results.columns) == COLUMNS
    assert len(results) == len(METHODS) * 2 * len(SEEDS) * 2
    assert set(results.status) == {"ok"}


def test_new_metrics_are_finite_for_ok_rows(results):
    ok = results[results.status == "ok"]
    for col in ALWAYS:
        assert np.isfinite(ok[col].astype(float)).all(), col
    shared = ok[ok.protocol == "shared"]
    for col in SHARED:
        assert np.isfinite(shared[col].astype(float)).all(), col
    final = ok[ok.step == 2]
    for col in FINAL:
        assert np.isfinite(final[col].astype(float)).all(), col
    assert ok.loc[ok.step == 1, "relearn_steps"].isna().all()  # relearn time only at the final step
    assert ok["cuda_peak_mb"].isna().all()  # not recorded by the unlearn stage on CPU


def test_value_ranges(results):
    ok = results[results.status == "ok"]
    for col in ("mia_loss_auc", "gold_mia_loss_auc", "mia_efficacy", "gold_mia_efficacy", "lira_member_frac"):
        assert ok[col].between(0, 1).all(), col
    assert ok["mia_loss_bacc"].between(0.5, 1).all()
    assert (ok["js_forget_pop"] <= math.log(2)).all() and (ok["kl_forget"] >= 0).all()
    np.testing.assert_allclose(ok["dist_to_gold_rel"], ok["dist_to_gold"] / ok["dist_gold_gold"])


def test_shared_forget_sets_make_every_gold_admissible(results):
    shared = results[results.protocol == "shared"]
    assert (shared["gold_pop_forget"] == len(SEEDS)).all()
    assert (shared["n_gg_forget"] == shared["n_forget"]).all()
    # the gold-to-gold reference does not depend on the method
    assert (shared.groupby(["seed", "step"])["js_gg_forget"].nunique() == 1).all()


def test_original_row_is_judged_like_any_cell(results):
    orig = results[results.method == "original"]
    assert (orig["update_norm"] == 0).all()
    assert (orig.loc[orig.step == 2, "relearn_steps"] == 0).all()  # it *is* the original: nothing to relearn
    # the do-nothing model still knows the deleted classes: forget examples look like members
    cls = orig[orig.protocol == "class"]
    assert (cls["mia_loss_auc"] > cls["gold_mia_loss_auc"]).all()
    assert (cls["mia_efficacy"] < cls["gold_mia_efficacy"]).all()
    assert (cls["lira_z_forget"] > 0).all()


def _csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False, float_format="%.6g").encode()


def test_evaluation_cache_judges_only_changed_cells(built, monkeypatch):
    """Evaluate twice: the second run judges no cell and gives the same bytes; a method whose code changed
    has exactly its cells re-judged; a full evaluation without the cache gives the same table."""
    from benchmark.core.results import TIMING_COLUMNS
    from benchmark.runner.evaluate import evaluate_suite_counted
    from benchmark.unlearners.base import get_unlearner

    run, first = built
    cfg = EvalConfig(relearn_max_steps=20)  # the fixture's config (part of the cache key)
    n_cells = len(METHODS) * 2 * len(SEEDS)
    # (the stale-artifact tests above evaluated some cells with another config: one entry per cell, so
    # those are judged again here)
    settled, _ = evaluate_suite_counted(run, cfg)
    assert _csv(settled) == _csv(first)
    again, counts = evaluate_suite_counted(run, cfg)
    assert counts == {"judged": 0, "cached": n_cells, "references_read": 0, "references_computed": 0}
    assert _csv(again) == _csv(first)

    finetune = get_unlearner("finetune")
    monkeypatch.setenv("UNLEARN_BENCH_ISOLATE", "0")  # the patched hash below lives in this process only
    monkeypatch.setattr(finetune, "code_hash", classmethod(lambda cls: "edited-finetune-code"))
    monkeypatch.setenv("UNLEARN_BENCH_ISOLATE", "0")  # the patch lives in this process: run cells here
    assert run_unlearning(run) == {"run": 2 * len(SEEDS), "cached": n_cells - 2 * len(SEEDS)}
    after, counts = evaluate_suite_counted(run, cfg)
    assert (counts["judged"], counts["cached"]) == (2 * len(SEEDS), n_cells - 2 * len(SEEDS))
    # the gold references of the re-judged cells come from the reference cache: none is recomputed
    assert counts["references_computed"] == 0 and counts["references_read"] > 0
    full, counts = evaluate_suite_counted(run, cfg, use_cache=False)
    assert counts == {"judged": n_cells, "cached": 0}
    assert _csv(full) == _csv(after)
    stable = [c for c in COLUMNS if c not in TIMING_COLUMNS and c != "code_hash"]
    assert _csv(after[stable]) == _csv(first[stable])  # same numbers: the method is deterministic
    assert set(after.loc[after.method == "finetune", "code_hash"]) == {"edited-finetune-code"}


def test_reference_cache_gives_the_same_rows_and_recomputes_a_damaged_entry(built):
    """Rows judged against cached gold references (predictions, MIA numbers, relearn times) are byte-identical
    to rows judged from scratch; a truncated reference file is a miss, recomputed and rewritten."""
    import shutil

    from benchmark.runner.evaluate import evaluate_suite_counted

    run, _ = built
    run_unlearning(run)  # current cells (a test above ran some with patched method code)
    cfg = EvalConfig(relearn_max_steps=20)
    scratch, _ = evaluate_suite_counted(run, cfg, use_cache=False)
    ref_dir = run.layout.reference_cache_dir("t")
    files = sorted(ref_dir.rglob("*.pt"))
    assert {p.relative_to(ref_dir).parts[0] for p in files} == {"gold", "relearn"}
    # drop the judged rows, keep the references: every cell is judged again, no reference is recomputed
    for d in (ref_dir.parent / p for p in ("shared", "class")):
        shutil.rmtree(d)
    n_cells = len(METHODS) * 2 * len(SEEDS)
    cached_refs, counts = evaluate_suite_counted(run, cfg)
    assert (counts["judged"], counts["references_computed"]) == (n_cells, 0)
    assert counts["references_read"] == len(files)
    assert cached_refs.to_csv(index=False) == scratch.to_csv(index=False)  # full precision
    # a damaged reference: recomputed (exactly one), same rows
    victim = files[0]
    victim.write_bytes(victim.read_bytes()[:100])
    for d in (ref_dir.parent / p for p in ("shared", "class")):
        shutil.rmtree(d)
    again, counts = evaluate_suite_counted(run, cfg)
    assert counts["references_computed"] == 1 and counts["references_read"] == len(files) - 1
    assert again.to_csv(index=False) == scratch.to_csv(index=False)


def test_metric_code_hash_ignores_docstrings_and_comments(tmp_path):
    """Issue 11: editing documentation invalidates no evaluated row; editing code does."""
    from benchmark.runner.eval_code import metric_code_hash, tree_hash

    assert len(metric_code_hash()) == 16
    pkg = tmp_path / "pkg"
    (pkg / "metrics").mkdir(parents=True)
    src = '"""Module doc."""\n\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n'
    (pkg / "metrics" / "a.py").write_text(src)
    (pkg / "scoring.py").write_text("Y = 2\n")
    paths = ("metrics", "scoring.py")
    before = tree_hash(pkg, paths)
    (pkg / "metrics" / "a.py").write_text(src.replace("Doc.", "Other words.").replace("# one", "# two"))
    assert tree_hash(pkg, paths) == before
    (pkg / "metrics" / "a.py").write_text(src.replace("x + 1", "x + 2"))
    assert tree_hash(pkg, paths) != before
