"""``unlearn-bench new-method NAME``: write a method file and its conformance test from templates.

The method file holds a registered :class:`~benchmark.unlearners.base.Unlearner` with docstring
placeholders for the update rule and the paper, a parameter grid, ``test_params`` and a working placeholder
``unlearn`` (a few minibatch steps on the retain set) so that ``unlearn-bench check-plugin NAME`` passes
before the author writes a line. The test file runs every check as its own test, through
:func:`benchmark.plugins.parametrize_with_checks` and :func:`benchmark.plugins.check`.
Nothing is ever overwritten.

``new-method NAME --package DIR`` (:func:`scaffold_package`) writes an installable plugin package instead:
``DIR/pyproject.toml`` (the entry point ``NAME = "<package>.NAME:<Class>"`` in group
``benchmark.unlearners``, setuptools, src layout, pytest's ``pythonpath = ["src"]``), ``DIR/README.md``,
``DIR/src/<package>/{__init__,NAME}.py`` and ``DIR/tests/test_NAME.py``; the package is the folder's name
with ``-`` -> ``_`` and ``.`` -> ``_``, lower-cased (a folder whose name does not make one is refused).
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from string import Template

import benchmark.unlearners as builtin_package
from benchmark.config import ConfigError
from benchmark.unlearners.base import available_unlearners, plugin_errors

NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


class ScaffoldError(ConfigError):
    """A name or target path that the scaffold refuses (reported as a one-line CLI error)."""


def _template(name: str) -> Template:
    return Template(resources.files("benchmark.plugins").joinpath("templates", name).read_text("utf-8"))


def class_name(name: str) -> str:
    """``my_method`` -> ``MyMethod``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or name


def validate_name(name: str) -> None:
    """A new method name: a lowercase python identifier, not a keyword, not taken by any method."""
    if not NAME_RE.fullmatch(name) or not name.isidentifier():
        raise ScaffoldError(
            f"method name {name!r}: use a lowercase python identifier (letters, digits, '_'; e.g. my_method)"
        )
    if keyword.iskeyword(name) or name in {"base"}:
        raise ScaffoldError(f"method name {name!r} is reserved")
    taken = available_unlearners()
    if name in taken:
        raise ScaffoldError(f"method name {name!r} is already registered by {taken[name].__module__}")
    if name in plugin_errors():
        raise ScaffoldError(f"method name {name!r} is already claimed by an installed (broken) plugin")


def _import_line(method_file: Path) -> str:
    """How the generated test makes the method registered: nothing for built-ins (discovery imports them),
    else the module's dotted path from the working directory, without a leading ``src`` (the src layout:
    ``src/acme_unlearn/m.py`` is ``acme_unlearn.m``, importable once installed or with pytest's
    ``pythonpath = ["src"]``, as the ``--package`` scaffold configures)."""
    folder = method_file.parent.resolve()
    if any(folder == Path(p).resolve() for p in builtin_package.__path__):
        return ""
    try:
        parts = method_file.resolve().with_suffix("").relative_to(Path.cwd().resolve()).parts
    except ValueError:
        parts = (method_file.stem,)
    if len(parts) > 1 and parts[0] == "src":
        parts = parts[1:]
    if not all(p.isidentifier() for p in parts):
        parts = (method_file.stem,)
    module = ".".join(parts)
    return f"import {module}  # noqa: F401  (registers the method; make this module importable)\n"


def scaffold_method(
    name: str, method_dir: Path = Path("benchmark/unlearners"), tests_dir: Path = Path("tests/unit")
) -> tuple[Path, Path]:
    """Write ``<method_dir>/<name>.py`` and ``<tests_dir>/test_<name>.py``; return both paths."""
    validate_name(name)
    method_file = Path(method_dir) / f"{name}.py"
    test_file = Path(tests_dir) / f"test_{name}.py"
    for path in (method_file, test_file):
        if path.exists():
            raise ScaffoldError(f"{path}: already exists; refusing to overwrite it")
    fields = {"name": name, "class_name": class_name(name), "import_line": _import_line(method_file)}
    method_src = _template("method.py.tmpl").substitute(fields)
    test_src = _template("test_method.py.tmpl").substitute(fields)
    method_file.parent.mkdir(parents=True, exist_ok=True)
    test_file.parent.mkdir(parents=True, exist_ok=True)
    with method_file.open("x", encoding="utf-8") as fh:  # "x": never overwrite, even in a race
        fh.write(method_src)
    try:
        with test_file.open("x", encoding="utf-8") as fh:
            fh.write(test_src)
    except BaseException:
        method_file.unlink()
        raise
    return method_file, test_file


def package_names(package_dir: Path) -> tuple[str, str]:
    """(distribution name, import package) for a plugin package folder: ``acme-unlearn`` ->
    (``acme-unlearn``, ``acme_unlearn``)."""
    dist = Path(package_dir).resolve().name
    package = dist.replace("-", "_").replace(".", "_").lower()
    if not package.isidentifier() or keyword.iskeyword(package):
        raise ScaffoldError(f"{package_dir}: the folder's name must make a python package name "
                            "(letters, digits, '-', '_'; e.g. acme-unlearn)")  # fmt: skip
    return dist, package


def scaffold_package(name: str, package_dir: Path) -> list[Path]:
    """Write an installable plugin package for method ``name`` under ``package_dir``; return the files.

    Refuses to write into a folder that already has a ``pyproject.toml`` or any of the files.
    """
    validate_name(name)
    root = Path(package_dir)
    dist, package = package_names(root)
    fields = {"name": name, "class_name": class_name(name), "dist": dist, "package": package,
              "import_line": f"import {package}.{name}  # noqa: F401  (registers the method)\n"}  # fmt: skip
    files = {
        root / "pyproject.toml": _template("package_pyproject.toml.tmpl").substitute(fields),
        root / "README.md": _template("package_readme.md.tmpl").substitute(fields),
        root / "src" / package / "__init__.py": f'"""The ``{name}`` method for unlearn-bench."""\n',
        root / "src" / package / f"{name}.py": _template("method.py.tmpl").substitute(fields),
        root / "tests" / f"test_{name}.py": _template("test_method.py.tmpl").substitute(fields),
    }
    for path in files:
        if path.exists():
            raise ScaffoldError(f"{path}: already exists; refusing to overwrite it")
    written: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as fh:
                fh.write(text)
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink()
        raise
    return written
