"""``datasets.dvc``: the dataset snapshots' content hash, checked against an offline rebuild.

``datasets/`` is a DVC *data source* tracked by the top-level ``datasets.dvc`` (as ``dvc add datasets``
writes it), so ``dvc push`` shares the snapshots and ``dvc pull`` restores them. A fresh clone without a
remote rebuilds them offline (``unlearn-bench fetch``, which ``scripts/bench.sh`` runs before ``dvc repro``)
and this module checks the rebuild against the recorded hash.

The hash is DVC 3's directory hash (``dvc_data.hashfile.tree.Tree.digest`` with ``hash: md5``)::

    md5( json.dumps(sorted([{"md5": md5(file bytes), "relpath": posix path}], by relpath), sort_keys=True) )
    + ".dir"

``meta.inputs`` in ``datasets.dvc`` fingerprints what the snapshots are built from (the ``datasets:``
section of params.yaml and the bytes of ``benchmark/data/sources.py`` and ``snapshot.py``). With the same
inputs a rebuild must reproduce the recorded hash byte for byte (anything else means a source or library
changed, or a file was tampered with); with changed inputs the new hash is recorded (commit
``datasets.dvc``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml

from benchmark.config import Params
from benchmark.core.hashing import file_digest
from benchmark.data.snapshot import SnapshotError

DVC_FILE = "datasets.dvc"
DATASETS_DIR = "datasets"
_CODE = ("sources.py", "snapshot.py")


def file_md5(path: Path) -> str:
    """Hex md5 of a file's bytes (DVC 3's ``hash: md5``)."""
    return file_digest(path, "md5")


def dir_md5(path: Path) -> str:
    """DVC 3's hash of a directory (``<md5>.dir``, formula in the module docstring)."""
    root = Path(path)
    files = (f for f in root.rglob("*") if f.is_file())
    entries = sorted(
        ({"md5": file_md5(f), "relpath": f.relative_to(root).as_posix()} for f in files),
        key=lambda e: e["relpath"],
    )
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def inputs_fingerprint(params: Params) -> str:
    """sha256 of the ``datasets:`` configs (canonical JSON) and the snapshot-building code's bytes."""
    code_dir = Path(__file__).resolve().parent
    body = {
        "datasets": {n: dataclasses.asdict(c) for n, c in sorted(params.datasets.items())},
        "code": {name: hashlib.sha256((code_dir / name).read_bytes()).hexdigest() for name in _CODE},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def recorded(root: Path) -> tuple[str | None, str | None]:
    """``(md5 of datasets/, meta.inputs)`` recorded in ``root/datasets.dvc`` (``None`` where absent)."""
    path = Path(root) / DVC_FILE
    if not path.is_file():
        return None, None
    doc = yaml.safe_load(path.read_text()) or {}
    md5 = next((o.get("md5") for o in doc.get("outs", []) if o.get("path") == DATASETS_DIR), None)
    return md5, (doc.get("meta") or {}).get("inputs")


def check(root: Path) -> str:
    """Verify ``datasets/`` against ``datasets.dvc``; return a one-line summary, raise on a mismatch."""
    md5, _ = recorded(root)
    if md5 is None:
        raise SnapshotError(f"{Path(root) / DVC_FILE}: missing or records no md5 for {DATASETS_DIR}/")
    actual = dir_md5(Path(root) / DATASETS_DIR)
    if actual != md5:
        raise SnapshotError(
            f"{DATASETS_DIR}/: content hash {actual} differs from {DVC_FILE} ({md5}): modified or "
            "incomplete; `unlearn-bench fetch` rebuilds it from the sources, `dvc pull datasets.dvc` "
            "restores it"
        )
    return f"{DATASETS_DIR}/ matches {DVC_FILE} ({md5})"


def sync(params: Params, root: Path) -> str:
    """After a rebuild of every dataset: verify against ``datasets.dvc``, or record the new hash.

    Same inputs as recorded -> the rebuilt hash must equal the recorded one (else :class:`SnapshotError`).
    No record, or changed inputs -> record the new hash and inputs. In a DVC repository the snapshots are
    also committed to the DVC cache (``dvc commit``/``dvc add``), so ``dvc push`` can share them.
    """
    root = Path(root)
    data = root / DATASETS_DIR
    stale = sorted(p for p in data.iterdir() if p.is_dir() and p.name not in params.datasets)
    if stale:
        raise SnapshotError(
            f"{data}: holds {[p.name for p in stale]}, not datasets in params.yaml; remove them first"
        )
    fingerprint = inputs_fingerprint(params)
    md5, inputs = recorded(root)
    actual = dir_md5(data)
    if md5 is not None and inputs == fingerprint:
        if actual != md5:
            raise SnapshotError(
                f"{data}: rebuilt snapshots hash to {actual}, but {DVC_FILE} records {md5} for the same "
                "inputs "
                "(a source or library version changed the bytes); `dvc pull datasets.dvc` restores the "
                "recorded snapshots"
            )
        msg = f"{DATASETS_DIR}/ verified against {DVC_FILE} ({md5})"
        _dvc(root, "commit", "-f", "-q", DVC_FILE)
        return msg
    if not _dvc(root, "add", "-q", DATASETS_DIR):
        out = {"md5": actual, "path": DATASETS_DIR, "hash": "md5"}
        (root / DVC_FILE).write_text(yaml.safe_dump({"outs": [out]}))
    doc = yaml.safe_load((root / DVC_FILE).read_text())
    doc["meta"] = {"inputs": fingerprint}
    (root / DVC_FILE).write_text(yaml.safe_dump(doc, sort_keys=False))
    why = "no record" if md5 is None else "inputs changed"
    return f"{DVC_FILE}: recorded {actual} ({why}); commit {DVC_FILE}"


def _dvc(root: Path, *args: str) -> bool:
    """Run ``dvc ARGS`` in ``root`` if it is a DVC repository; ``False`` if it is not."""
    if not (root / ".dvc").is_dir():
        return False
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SnapshotError(f"dvc {' '.join(args)} failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return True
