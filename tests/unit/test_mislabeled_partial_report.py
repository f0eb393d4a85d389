"""scripts/mislabeled_partial.py: which protocols it reports and the table it renders."""

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
    return script("mislabeled_partial")


def test_the_preset_adds_a_half_identified_mislabeled_protocol_to_mnist(report, tmp_path):
    with pytest.raises(SystemExit, match="apply the preset"):
        report.mislabeled_protocols(load_params(ROOT / "params.yaml"), "mnist5k-mlp")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(apply_preset("mislabeled-partial", ROOT / "params.yaml", ROOT)))
    preset = load_params(params)
    assert report.mislabeled_protocols(preset, "mnist5k-mlp") == {"mislabeled": 1.0, "mislabeled_half": 0.5}
    default = load_params(ROOT / "params.yaml").suite("mnist5k-mlp").protocols
    assert preset.suite("mnist5k-mlp").protocols == (*default, "mislabeled_half")
    full, half = preset.protocols["mislabeled"], preset.protocols["mislabeled_half"]
    assert (half.corrupt_fraction, half.requests) == (full.corrupt_fraction, full.requests)


def test_markdown_ranks_by_tow_auc_and_shows_unidentified_accuracy_only_when_some_are_left(report):
    nan = np.nan
    head = pd.DataFrame({
        "suite": ["s"] * 5,
        "protocol": ["all", "all", "half", "half", "random"],
        "method": ["a", "b", "a", "b", "a"],
        "tow_auc_mean": [0.9, 0.95, 0.8, 0.7, 0.1],
        "tow_auc_ci": [0.01, 0.02, 0.03, 0.04, 0.0],
        "margin_vs_original": [0.1, 0.2, 0.3, nan, 0.0],
        "margin_vs_original_ci": [0.01, 0.02, nan, nan, 0.0],
        "margin_vs_original_p": [0.001, 0.5, 0.01, nan, 1.0],
        "acc_forget_true_mean": [0.5, 0.6, 0.7, 0.8, nan],
        "acc_forget_true_ci": [0.01, 0.01, 0.01, 0.01, nan],
        "acc_unidentified_true_mean": [nan, nan, 0.25, 0.5, nan],
        "acc_unidentified_true_ci": [nan, nan, 0.05, nan, nan],
        "acc_test_mean": [0.9] * 5,
        "acc_test_ci": [0.0] * 5,
        "gold_acc_forget_true_mean": [0.8, 0.8, 0.85, 0.85, nan],
        "gold_acc_unidentified_true_mean": [nan, nan, 0.2, 0.2, nan],
    })  # fmt: skip
    protocols = {"all": 1.0, "half": 0.5}
    md = report.markdown(report.protocol_rows(head, "s", protocols), protocols).splitlines()
    assert md[0] == "### `all`: 100% of the flipped samples identified"
    assert "unidentified" not in md[2]
    assert md[4] == "| `b` | 0.950 ± 0.020 | +0.200 ± 0.020 (p=0.5) | 60.0 ± 1.0 | 90.0 ± 0.0 |"
    assert md[5] == "| `a` | 0.900 ± 0.010 | +0.100 ± 0.010 (p=0.001) | 50.0 ± 1.0 | 90.0 ± 0.0 |"
    half = md.index("### `half`: 50% of the flipped samples identified")
    assert md[half + 2].endswith("| unidentified: acc (true labels) % | test acc % |")
    assert md[half + 4] == "| `a` | 0.800 ± 0.030 | +0.300 (p=0.01) | 70.0 ± 1.0 | 25.0 ± 5.0 | 90.0 ± 0.0 |"
    assert md[half + 5] == "| `b` | 0.700 ± 0.040 | — | 80.0 ± 1.0 | 50.0 | 90.0 ± 0.0 |"
    gold = "Gold model (retrained without the deleted samples): 85.0 % on the deleted samples' true labels"
    assert md[half + 7] == gold + ", 20.0 % on the unidentified ones'."


def test_the_page_names_the_machines_that_computed_the_reported_rows(report, tmp_path):
    results = tmp_path / "s.csv"
    intel, amd = "x86_64 (Intel Xeon)", "x86_64 (AMD EPYC)"
    rows = {"protocol": ["all", "half", "random", "all"], "hardware": [intel, intel, amd, None]}
    pd.DataFrame(rows).to_csv(results, index=False)
    assert report.made_on(results, {"all": 1.0, "half": 0.5}) == "Computed on: `x86_64 (Intel Xeon)`.\n\n"
    assert "AMD" in report.made_on(results, {"random": 1.0})
    assert report.made_on(tmp_path / "missing.csv", {"all": 1.0}) == ""
