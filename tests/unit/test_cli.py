import pytest

from benchmark.cli import build_parser, main

SUBCOMMANDS = [
    "fetch",
    "protocols",
    "train",
    "gold",
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
