"""``datasets.dvc``: a fresh clone rebuilds the snapshots offline and verifies them against the committed
content hash; ``dvc push`` / ``dvc pull`` move them through a local-directory remote; tampering is caught."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.test_pipeline import BIN, ROOT, sh

COMMITTED = yaml.safe_load((ROOT / "datasets.dvc").read_text())["outs"][0]["md5"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fail(*cmd: str, cwd: Path) -> str:
    import os
    import subprocess

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, f"{' '.join(cmd)} should have failed:\n{proc.stdout}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of a repository holding the shipped params.yaml, dvc.yaml and datasets.dvc."""
    origin = tmp_path_factory.mktemp("origin")
    shutil.copytree(ROOT / "benchmark", origin / "benchmark", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml", "datasets.dvc", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, origin / name)
    sh("git", "init", "-q", cwd=origin)
    sh("dvc", "init", "-q", cwd=origin)
    sh("git", "add", "-A", cwd=origin)
    sh("git", "commit", "-qm", "snapshot", cwd=origin)
    clone = tmp_path_factory.mktemp("clone") / "repo"
    sh("git", "clone", "-q", str(origin), str(clone), cwd=origin)
    return clone


@pytest.mark.integration
def test_fresh_clone_rebuilds_offline_and_verifies(clone: Path):
    assert not (clone / "datasets").exists()
    # without the snapshots and without a remote DVC alone cannot restore the data source ...
    assert "missing data" in _fail("dvc", "repro", "datasets.dvc", cwd=clone)
    # ... so bench.sh rebuilds them offline first: byte-identical, checked against the committed hash
    out = sh("unlearn-bench", "fetch", cwd=clone).stdout
    assert f"verified against datasets.dvc ({COMMITTED})" in out, out
    assert sh("git", "status", "--porcelain", "datasets.dvc", cwd=clone).stdout == ""
    assert "up to date" in sh("dvc", "status", "datasets.dvc", cwd=clone).stdout
    sh("dvc", "repro", "datasets.dvc", cwd=clone)  # the pipeline's data source is now satisfied
    assert sh("git", "status", "--porcelain", "datasets.dvc", cwd=clone).stdout == ""


@pytest.mark.integration
def test_push_then_pull_restores_identical_files(clone: Path, tmp_path: Path):
    before = _files(clone / "datasets")
    sh("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"), cwd=clone)
    sh("dvc", "push", "datasets.dvc", cwd=clone)
    shutil.rmtree(clone / "datasets")
    shutil.rmtree(clone / ".dvc" / "cache")
    sh("dvc", "pull", "datasets.dvc", cwd=clone)
    assert _files(clone / "datasets") == before
    assert COMMITTED in sh("unlearn-bench", "fetch", "--check", cwd=clone).stdout


@pytest.mark.integration
def test_tampered_snapshot_is_detected_and_rebuilt(clone: Path):
    parquet = clone / "datasets" / "digits" / "train.parquet"
    good = parquet.read_bytes()
    parquet.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
    assert "differs from datasets.dvc" in _fail("unlearn-bench", "fetch", "--check", cwd=clone)
    assert "modified" in sh("dvc", "status", "datasets.dvc", cwd=clone).stdout
    assert "verified" in sh("unlearn-bench", "fetch", cwd=clone).stdout
    assert parquet.read_bytes() == good


@pytest.mark.integration
def test_same_inputs_different_bytes_fail_changed_inputs_record(clone: Path):
    dvcfile = clone / "datasets.dvc"
    shipped = dvcfile.read_text()
    dvcfile.write_text(shipped.replace(COMMITTED, "0" * 32 + ".dir"))  # as if the source's bytes had changed
    assert "for the same inputs" in _fail("unlearn-bench", "fetch", cwd=clone)
    dvcfile.write_text(shipped)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["datasets"]["digits"]["split_seed"] = 1
    (clone / "params.yaml").write_text(yaml.safe_dump(params))
    out = sh("unlearn-bench", "fetch", cwd=clone).stdout
    assert "inputs changed" in out, out
    assert COMMITTED not in dvcfile.read_text()
    assert "up to date" in sh("dvc", "status", "datasets.dvc", cwd=clone).stdout
    sh("git", "checkout", "params.yaml", "datasets.dvc", cwd=clone)
