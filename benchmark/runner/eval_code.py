"""The hash of the evaluation code, part of the key of every cached evaluation value (rows, gold references).

:func:`metric_code_hash` hashes the files of :data:`CODE_PATHS` by
:func:`~benchmark.unlearners.base.code_fingerprint` (the AST without docstrings; comments never reach it), so
editing documentation invalidates nothing and any change to what runs invalidates everything evaluated.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import benchmark
from benchmark.unlearners.base import code_fingerprint

__all__ = ["CODE_PATHS", "metric_code_hash", "tree_hash"]

# the code an evaluated value depends on, relative to the package root (directories: every *.py below them)
CODE_PATHS: tuple[str, ...] = (
    "metrics",
    "models",
    "core/results.py",
    "core/status.py",
    "runner/scoring.py",
    "runner/gold_reference.py",
    "runner/reference_cache.py",
    "runner/evaluate.py",
    "runner/eval_cache.py",
    "runner/eval_code.py",
)


def tree_hash(root: Path, paths: tuple[str, ...]) -> str:
    """sha256 (16 hex digits) of the code fingerprints of ``paths`` under ``root`` (a directory: every
    ``*.py`` below it), each with its relative path."""
    h = hashlib.sha256()
    for rel in paths:
        p = root / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            rel_path = f.relative_to(root).as_posix().encode()
            h.update(rel_path + b"\0" + code_fingerprint(f.read_bytes()) + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def metric_code_hash() -> str:
    """The hash of the evaluation code: :func:`tree_hash` of :data:`CODE_PATHS` in the ``benchmark`` tree."""
    return tree_hash(Path(benchmark.__file__).parent, CODE_PATHS)
