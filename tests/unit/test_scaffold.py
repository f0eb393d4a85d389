"""``unlearn-bench new-method``: the scaffold passes the conformance checks out of the box, is lint-clean,
and never overwrites anything."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import benchmark.plugins.scaffold as scaffold
from benchmark.cli import main
from benchmark.plugins import CHECKS, ScaffoldError, run_conformance, scaffold_method
from benchmark.unlearners.base import _REGISTRY, available_unlearners

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A project directory (cwd, on sys.path); scaffolded methods are unregistered afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(available_unlearners())  # discover first: only the scaffolded ones are removed
    yield tmp_path
    for name in set(_REGISTRY) - before:
        del _REGISTRY[name]
    for mod in [m for m in sys.modules if m.startswith("myplugins")]:
        del sys.modules[mod]


def load(path: Path, module: str):
    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    return mod


def test_scaffold_passes_conformance_and_its_own_test(workdir):
    method_file, test_file = scaffold_method("my_unlearner", Path("myplugins"), Path("tests"))
    assert method_file == Path("myplugins/my_unlearner.py") and test_file == Path(
        "tests/test_my_unlearner.py"
    )
    src = method_file.read_text()
    assert '@register_unlearner("my_unlearner")' in src and "class MyUnlearner(Unlearner):" in src
    assert "Update rule" in src and "Reference:" in src and "test_params = {" in src
    assert "import myplugins.my_unlearner" in test_file.read_text()

    # the generated test imports the module (registering the method) and runs each conformance check as
    # its own test, ids my_unlearner-<check>
    generated = load(test_file, "generated_test_my_unlearner")
    (mark,) = generated.test_my_unlearner_conforms.pytestmark
    assert mark.args[0] == ("method", "check_name")
    assert [p.id for p in mark.args[1]] == [f"my_unlearner-{c}" for c in CHECKS]
    for p in mark.args[1]:
        generated.test_my_unlearner_conforms(*p.values)
    assert _REGISTRY["my_unlearner"].__module__ == "myplugins.my_unlearner"
    assert all(r.passed for r in run_conformance("my_unlearner"))


def test_scaffold_for_a_builtin_is_lint_clean(workdir, monkeypatch):
    pkg = workdir / "benchmark_unlearners"  # stands in for benchmark/unlearners
    monkeypatch.setattr(scaffold, "builtin_package", SimpleNamespace(__path__=[str(pkg)]))
    method_file, test_file = scaffold_method("lint_me", pkg, workdir / "tests")
    text = test_file.read_text()
    assert "import benchmark_unlearners" not in text  # discovery imports built-ins: nothing to import
    cfg = ["--config", str(ROOT / "pyproject.toml")]
    for cmd in (["check", *cfg], ["format", "--check", *cfg]):
        proc = subprocess.run(
            [str(RUFF), *cmd, str(method_file), str(test_file)], capture_output=True, text=True, cwd=ROOT
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_refuses_to_overwrite(workdir):
    method_file, test_file = scaffold_method("twice", Path("myplugins"), Path("tests"))
    method_file.write_text("# my work\n")
    with pytest.raises(ScaffoldError, match="already exists; refusing to overwrite"):
        scaffold_method("twice", Path("myplugins"), Path("tests"))
    assert method_file.read_text() == "# my work\n"
    # an existing test file alone also blocks, and nothing is half-written
    (workdir / "tests" / "test_solo.py").write_text("# mine\n")
    with pytest.raises(ScaffoldError, match="test_solo.py: already exists"):
        scaffold_method("solo", Path("myplugins"), Path("tests"))
    assert not (workdir / "myplugins" / "solo.py").exists()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("1abc", "lowercase python identifier"),
        ("my-method", "lowercase python identifier"),
        ("MyMethod", "lowercase python identifier"),
        ("_hidden", "lowercase python identifier"),
        ("class", "reserved"),
        ("finetune", "already registered by benchmark.unlearners.finetune"),
    ],
)
def test_rejects_bad_or_taken_names(workdir, name, words):
    with pytest.raises(ScaffoldError, match=words):
        scaffold_method(name, Path("myplugins"), Path("tests"))
    assert not (workdir / "myplugins").exists()


def test_cli_new_method(workdir, capsys):
    args = ["new-method", "cli_method", "--dir", "myplugins", "--tests-dir", "tests"]
    assert main(args) == 0
    assert "wrote myplugins/cli_method.py and tests/test_cli_method.py" in capsys.readouterr().out
    assert main(args) == 2  # second time: a one-line error, nothing overwritten
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to overwrite" in err[0]
    assert main(["new-method", "bad-name"]) == 2


@pytest.mark.parametrize(
    ("method_dir", "module"),
    [
        ("myplugins", "myplugins.solo"),
        ("src/acme_unlearn", "acme_unlearn.solo"),  # src layout: `src` is a folder, not a package
        ("src", "solo"),  # a top-level module of the src layout
        ("my-plugins", "solo"),  # not a dotted path: the module's own name
    ],
)
def test_generated_test_imports_the_module_by_its_importable_name(workdir, method_dir, module):
    _, test_file = scaffold_method("solo", Path(method_dir), Path("tests"))
    assert f"import {module}  # noqa: F401" in test_file.read_text()
