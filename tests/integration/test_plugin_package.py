"""``unlearn-bench new-method NAME --package DIR``: the scaffolded package's own tests pass under plain
``pytest`` run from DIR (before installing), and once installed (a real wheel build with pip into a target
folder, found through its entry point) ``unlearn-bench check-plugin NAME`` and ``unlearn-bench methods``
see it as a plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
           "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.integration
def test_new_method_package_installs_and_passes_its_tests(tmp_path: Path) -> None:
    py = sys.executable
    out = run(py, "-m", "benchmark.cli", "new-method", "acme_shrink", "--package", "acme-unlearn",
              cwd=tmp_path, pythonpath=[ROOT]).stdout  # fmt: skip
    pkg = tmp_path / "acme-unlearn"
    assert (pkg / "pyproject.toml").is_file() and "pip install -e ." in out
    toml = (pkg / "pyproject.toml").read_text()
    assert '[project.entry-points."benchmark.unlearners"]' in toml
    assert 'acme_shrink = "acme_unlearn.acme_shrink:AcmeShrink"' in toml
    # plain pytest from the package folder, nothing installed: pyproject's pythonpath = ["src"]
    res = run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=pkg, pythonpath=[ROOT]).stdout
    assert " passed" in res and "failed" not in res and "error" not in res.lower(), res
    # a real install (wheel built by setuptools, offline) into a throwaway site folder
    site = tmp_path / "site"
    run(py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site),
        str(pkg), cwd=tmp_path, pythonpath=[ROOT])  # fmt: skip
    assert list(site.glob("acme_unlearn-0.1.0.dist-info/entry_points.txt"))
    checked = run(py, "-m", "benchmark.cli", "check-plugin", "acme_shrink", cwd=tmp_path,
                  pythonpath=[site, ROOT]).stdout  # fmt: skip
    assert "acme_shrink:" in checked and "; conforms" in checked, checked
    listed = run(py, "-m", "benchmark.cli", "methods", cwd=tmp_path, pythonpath=[site, ROOT]).stdout
    line = next(x for x in listed.splitlines() if x.lstrip().startswith("acme_shrink"))
    assert "plugin:acme-unlearn" in line or "plugin:acme_unlearn" in line, line
    # its tests pass against the installed copy as well (src/ off the path: only the install is importable)
    (pkg / "pyproject.toml").write_text(toml.replace('pythonpath = ["src"]', "pythonpath = []"))
    res = run(py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=pkg,
              pythonpath=[site, ROOT]).stdout  # fmt: skip
    assert " passed" in res and "failed" not in res, res
