"""scripts/memorization_levels.py: which protocol holds which level, and the table it renders."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.config import load_params
from benchmark.presets import apply_preset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(script):
    return script("memorization_levels")


def test_the_preset_gives_both_suites_every_level_and_the_default_only_high(report, tmp_path):
    default = load_params(ROOT / "params.yaml")
    with pytest.raises(SystemExit, match="apply the preset"):
        report.level_protocols(default, "digits-mlp")
    with pytest.raises(SystemExit, match="apply the preset"):
        report.level_suites(default)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(apply_preset("memorization-levels", ROOT / "params.yaml", ROOT)))
    preset = load_params(params)
    assert report.level_suites(preset) == ["digits-mlp", "mnist5k-mlp"]
    assert report.level_protocols(preset, "digits-mlp") == {
        "low": "low_memorized", "mid": "mid_memorized", "high": "memorized", "mix": "mix_memorized"
    }  # fmt: skip
    # MNIST-5k without `low` (it told no method apart on digits)
    assert report.level_protocols(preset, "mnist5k-mlp") == {
        "mid": "mid_memorized", "high": "memorized", "mix": "mix_memorized"
    }  # fmt: skip
    # the default protocols stay (a warm default checkout reuses them; the leaderboard is the default's plus)
    assert preset.suite("digits-mlp").protocols[:3] == default.suite("digits-mlp").protocols
    assert preset.suite("mnist5k-mlp").protocols[:4] == default.suite("mnist5k-mlp").protocols


def test_rank_agreement_is_kendalls_tau_over_the_unlearning_methods(report):
    # high ranks a > b > c > d; mid swaps c and d (1 discordant pair of 6: tau = (5 - 1) / 6); low reverses
    # it (tau = -1). original and retrain are left out: they would add concordant pairs to every level
    means = {"a": (0.1, 0.9, 0.9), "b": (0.2, 0.8, 0.8), "c": (0.3, 0.6, 0.7), "d": (0.4, 0.7, 0.6),
             "original": (0.0, 0.0, 0.0), "retrain": (1.0, 1.0, 1.0)}  # fmt: skip
    mean = pd.DataFrame(means, index=["low", "mid", "high"]).T
    table = pd.concat({"mean": mean, "ci": mean * 0}, axis=1)
    tau = report.rank_agreement(table)
    assert tau == pytest.approx({"low": -1.0, "mid": 4 / 6})
    assert report.rank_agreement(table.drop(columns=[("mean", "high"), ("ci", "high")])) == {}


def test_level_table_pivots_the_headline_by_level_and_ranks_by_the_mean(report):
    protocols = {"low": "lo", "high": "hi"}
    head = pd.DataFrame(
        {
            "suite": ["s"] * 5,
            "protocol": ["lo", "hi", "lo", "hi", "random"],
            "method": ["a", "a", "b", "b", "a"],
            "tow_auc_mean": [0.9, 0.5, 0.95, 0.8, 0.1],
            "tow_auc_ci": [0.01, 0.02, 0.03, np.nan, 0.0],
        }
    )
    table = report.level_table(report.level_rows(head, "s", protocols), protocols)
    assert list(table.index) == ["b", "a"]  # mean over levels 0.875 > 0.7; `random` is not a level
    assert table.loc["a", ("mean", "high")] == 0.5 and table.loc["b", ("ci", "low")] == 0.03
    scores = pd.DataFrame({"level": ["low", "high"], "protocol": ["lo", "hi"], "mem_mean": [0.01, 0.6],
                           "mem_min": [0.0, 0.5], "mem_max": [0.02, 0.7]})  # fmt: skip
    md = report.markdown(table, scores, protocols).splitlines()
    assert md[0] == "| method | low (`lo`) | high (`hi`) |"
    assert md[2] == "| *mean score of the forget sets* | 0.010 [0.000, 0.020] | 0.600 [0.500, 0.700] |"
    assert md[3] == "| b | 0.950 ± 0.030 | 0.800 |" and md[4] == "| a | 0.900 ± 0.010 | 0.500 ± 0.020 |"
    # both methods rank b above a on both levels
    assert md[-1] == "Rank agreement with `high` (Kendall's τ-b over the 2 unlearning methods): low 1.00."
