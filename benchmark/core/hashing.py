"""Content hashes of files, in one place: the dataset manifests (sha256), DVC's ``.dvc`` entries (md5) and
the cache keys of the pipeline's artifacts (sha256, 16 hex digits) all read a file through this."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_digest"]


def file_digest(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes by ``algorithm`` (any :func:`hashlib.new` name), read in chunks
    (:func:`hashlib.file_digest`)."""
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()
