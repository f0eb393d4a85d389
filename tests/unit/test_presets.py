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


def test_null_removes_a_key():
    base = {"suites": {"a": {"x": 1}, "b": {"y": 2}}, "z": 3}
    merged = merge(base, {"suites": {"a": None, "c": {"w": 4}}, "z": None})
    assert merged == {"suites": {"b": {"y": 2}, "c": {"w": 4}}}


@pytest.mark.parametrize(
    ("name", "suite", "dataset", "source", "arch", "protocols"),
    [
        ("fmnist-cnn", "fmnist-cnn", "fmnist", "fashion_mnist", "cnn", {"random", "memorized", "class"}),
        ("cifar10-resnet18", "cifar10-resnet18", "cifar10", "cifar10", "resnet18", {"random", "class"}),
    ],
)
def test_paper_presets_replace_the_default_suites(name, suite, dataset, source, arch, protocols):
    params = parse_params(apply_preset(name, ROOT / "params.yaml", ROOT))
    assert list(params.suites) == [suite] and list(params.datasets) == [dataset]
    s = params.suites[suite]
    assert params.datasets[dataset].source == source and s.model["arch"] == arch
    assert s.device == "auto" and set(s.protocols) == protocols and len(s.seeds) == 3
    assert all(params.protocols[p].requests == 5 for p in s.protocols)  # sequential, 5 rounds
    assert {"cure_newton_krylov", "cure_newton_stochastic", "finetune", "gradient_ascent"} <= set(s.methods)
    assert not {"cure_newton", "newton_pinv", "newton_damped"} & set(s.methods)  # no exact Hessians


def test_full_preset_runs_the_converged_exact_cubic_method_and_full_grids():
    assert "full" in available_presets(ROOT)
    merged = apply_preset("full", ROOT / "params.yaml", ROOT)
    params = parse_params(merged)
    assert params.grid == "full"
    assert {} in params.method_grids["cure_newton"]  # the converged default beside the paper row
    for suite in params.suites.values():
        assert {"cure_newton", "newton_pinv", "newton_damped"} <= set(suite.methods)
    assert params.suites.keys() == yaml.safe_load((ROOT / "params.yaml").read_text())["suites"].keys()


@pytest.mark.parametrize("name", available_presets(ROOT))
def test_every_preset_applies_to_the_default_params(name):
    """A preset overlays the current params.yaml: a change of the default (e.g. a population set to null)
    must not leave a preset that merges into it incomplete."""
    parse_params(apply_preset(name, ROOT / "params.yaml", ROOT))


def test_klom_random_preset_keeps_the_methods_of_the_populations():
    params = parse_params(apply_preset("klom-random", ROOT / "params.yaml", ROOT))
    pops = {name: s.population for name, s in params.suites.items()}
    assert all(p is not None and p.protocols == ("random",) for p in pops.values())
    assert pops["mnist5k-mlp"].methods == pops["digits-mlp"].methods  # type: ignore[union-attr]


def test_klom_mnist_preset_adds_the_mnist_population_the_default_leaves_out():
    default = parse_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert default.suites["mnist5k-mlp"].population is None  # the cold-run budget (README, Populations)
    params = parse_params(apply_preset("klom-mnist", ROOT / "params.yaml", ROOT))
    pop = params.suites["mnist5k-mlp"].population
    assert pop is not None and pop.models == 20 and pop.protocols == ("memorized", "mislabeled")
    assert params.suites["digits-mlp"] == default.suites["digits-mlp"]  # nothing else changes


def test_unknown_preset_and_invalid_result_are_config_errors(tmp_path):
    known = "known presets: cifar10-resnet18, fmnist-cnn, full, klom-mnist, klom-random"
    with pytest.raises(ConfigError, match=known):
        apply_preset("nope", ROOT / "params.yaml", ROOT)
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "bad.yaml").write_text("grid: huge\n")
    with pytest.raises(ConfigError, match="^grid"):
        apply_preset("bad", ROOT / "params.yaml", tmp_path)
    (tmp_path / "presets" / "broken.yaml").write_text("suites:\n  x: [1,\n")
    with pytest.raises(ConfigError) as err:
        apply_preset("broken", ROOT / "params.yaml", tmp_path)
    assert str(err.value) == (
        f"{tmp_path / 'presets' / 'broken.yaml'}: invalid YAML: line 3, column 1: "
        "expected the node content, but found '<stream end>'"
    )


def test_cli_writes_the_merged_file(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    assert main(["--root", str(ROOT), "preset", "full", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["grid"] == "full"
