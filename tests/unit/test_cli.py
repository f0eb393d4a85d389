from pathlib import Path

import pytest
import yaml

from benchmark.cli import _with_executor, build_parser, main
from benchmark.config import parse_params

ROOT = Path(__file__).resolve().parents[2]

SUBCOMMANDS = [
    "fetch",
    "memorize",
    "protocols",
    "train",
    "gold",
    "population",
    "unlearn",
    "evaluate",
    "leaderboard",
    "methods",
    "validate",
]


def test_every_stage_has_a_subcommand():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(SUBCOMMANDS) <= set(choices)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: unlearn-bench" in capsys.readouterr().out


def test_methods_lists_builtins_with_origin_and_hash(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("original", "retrain", "finetune", "gradient_ascent", "cure_newton"):
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert "builtin" in line


def test_unknown_suite_is_a_one_line_error(capsys):
    assert main(["train", "--suite", "no-such-suite"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "suites.no-such-suite" in err[0]


def test_runtime_error_is_one_line_with_exit_1(tmp_path, capsys):
    # evaluate before any stage ran: the snapshot is missing -> one line naming the path, exit 1
    assert main(["--root", str(tmp_path), "evaluate", "--suite", "digits-mlp"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "datasets/digits" in err[0] and "--debug" in err[0]
    with pytest.raises(Exception):  # noqa: B017  (--debug re-raises whatever it was)
        main(["--debug", "--root", str(tmp_path), "evaluate", "--suite", "digits-mlp"])


def test_unknown_method_filter_is_a_config_error(tmp_path, capsys):
    import shutil
    from pathlib import Path as P

    root = P(__file__).resolve().parents[2]
    assert main(["--root", str(tmp_path), "fetch", "--dataset", "digits"]) == 0
    shutil.copy(root / "params.yaml", tmp_path / "params.yaml")
    capsys.readouterr()
    code = main(["--root", str(tmp_path), "unlearn", "--suite", "digits-mlp", "--method", "nonexistent"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--method nonexistent" in err[0]
@pytest.mark.parametrize(
    ("file_cfg", "argv", "expected"),
    [
        ({}, [], ("local", None, None)),
        ({}, ["--executor", "ray", "--num-cpus", "2"], ("ray", None, 2)),
        ({}, ["--address", "auto"], ("ray", "auto", None)),
        ({"kind": "ray", "address": "10.0.0.1:6379"}, ["--executor", "local"], ("local", None, None)),
        ({"kind": "ray", "address": "10.0.0.1:6379"}, ["--num-cpus", "2"], ("ray", None, 2)),
        ({"kind": "ray", "num_cpus": 4}, [], ("ray", None, 4)),
    ],
)
def test_executor_flags_override_the_params_file(file_cfg, argv, expected):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = parse_params({**raw, "executor": file_cfg})
    for command in ("memorize", "train", "gold", "tune", "population", "unlearn", "evaluate"):
        args = build_parser().parse_args([command, *argv])
        cfg = _with_executor(args, params).executor
        assert (cfg.kind, cfg.address, cfg.num_cpus) == expected


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--executor", "local", "--address", "auto"], "--address"),
        (["--address", "a", "--num-cpus", "2"], "--num-cpus"),
    ],
)
def test_contradictory_executor_flags_are_a_one_line_error(argv, flag, capsys):
    assert main(["gold", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err


def test_check_plugin_set_overrides_and_deprecated_params_alias(tmp_path, monkeypatch, capsys):
    """``check-plugin --set KEY=VALUE`` overrides test_params; ``--params KEY=VALUE`` still works but warns,
    because ``--params`` before the subcommand names the params.yaml file."""
    monkeypatch.chdir(tmp_path)
    assert main(["check-plugin", "finetune", "--set", "epochs=2,lr_scale=0.5"]) == 0
    captured = capsys.readouterr()
    assert "conforms" in captured.out and "deprecated" not in captured.err
    assert main(["check-plugin", "finetune", "--params", "epochs=2"]) == 0
    assert "`check-plugin --params KEY=VALUE` is deprecated, use `--set KEY=VALUE`" in capsys.readouterr().err
    assert main(["check-plugin", "finetune", "--set", "epochs"]) == 2
    assert "--set 'epochs': expected KEY=VALUE" in capsys.readouterr().err
    args = build_parser().parse_args(["--params", "other.yaml", "check-plugin", "finetune", "--set", "a=1"])
    assert args.params == Path("other.yaml") and args.method_params == ["a=1"]
