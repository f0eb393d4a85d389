from pathlib import Path

import pytest
import yaml

from benchmark.cli import main
from benchmark.config import ConfigError, parse_params
from benchmark.presets import apply_preset, available_presets, merge

ROOT = Path(__file__).resolve().parents[2]


def test_merge_mappings_by_key_and_replaces_the_rest():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    assert merge(base, {"a": {"y": [3]}, "c": 4}) == {"a": {"x": 1, "y": [3]}, "b": 2, "c": 4}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}  # the input is left alone


def test_full_preset_runs_the_converged_exact_cubic_method_and_full_grids():
    assert "full" in available_presets(ROOT)
    merged = apply_preset("full", ROOT / "params.yaml", ROOT)
    params = parse_params(merged)
    assert params.grid == "full"
    assert {} in params.method_grids["cure_newton"]  # the converged default beside the paper row
    for suite in params.suites.values():
        assert {"cure_newton", "newton_pinv", "newton_damped"} <= set(suite.methods)
    assert params.suites.keys() == yaml.safe_load((ROOT / "params.yaml").read_text())["suites"].keys()


def test_unknown_preset_and_invalid_result_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="known presets: full"):
        apply_preset("nope", ROOT / "params.yaml", ROOT)
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "bad.yaml").write_text("grid: huge\n")
    with pytest.raises(ConfigError, match="^grid"):
        apply_preset("bad", ROOT / "params.yaml", tmp_path)


def test_cli_writes_the_merged_file(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["--root", str(ROOT), "preset", "full", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["grid"] == "full"
