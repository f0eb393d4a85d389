"""Checksummed parquet snapshots of a :class:`~benchmark.data.sources.RawDataset`.

A snapshot directory holds ``train.parquet`` and ``test.parquet`` (columns ``pixels``: fixed-size list of
uint8, the flattened image; ``label``: int64) and ``manifest.json`` (provenance, shapes, class counts and the
sha256 of both parquet files, and ``manifest_sha256``: the sha256 of the manifest's own canonical JSON
without that field). Writes are atomic and byte-reproducible; loads verify every checksum, so an edited
manifest (``pixel_max``, ``image_shape``...), which would change what the models see without changing
the parquet files, is caught like a flipped byte in a parquet file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from benchmark.core.hashing import file_digest
from benchmark.data.sources import RawDataset

FORMAT_VERSION = 1
SPLIT_FILES = {"train": "train.parquet", "test": "test.parquet"}
MANIFEST = "manifest.json"
_SNAPSHOT_FILES = frozenset({*SPLIT_FILES.values(), MANIFEST})


class SnapshotError(RuntimeError):
    """A snapshot is missing, malformed, or fails its checksum."""


@dataclass(frozen=True, eq=False)
class Snapshot:
    """A loaded snapshot: float32 images in [0, 1], shape ``(N, C, H, W)``, and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    manifest: dict

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one input image."""
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digest(path)


def manifest_sha256(manifest: dict) -> str:
    """sha256 of the canonical JSON (sorted keys) of ``manifest`` without its ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_snapshot(raw: RawDataset, out_dir: Path, *, split_seed: int) -> dict:
    """Write ``raw`` to ``out_dir`` atomically and return the manifest.

    The files are built in a temporary directory beside ``out_dir`` and swapped in at the end, so an
    interrupted run never leaves a half-written snapshot. An existing ``out_dir`` is replaced only if it
    holds nothing but snapshot files.
    """
    out_dir = Path(out_dir)
    image_shape = _validate_raw(raw)
    if out_dir.exists():
        if not out_dir.is_dir():
            raise SnapshotError(f"{out_dir}: exists and is not a directory")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in _SNAPSHOT_FILES)
        if foreign:
            raise SnapshotError(
                f"{out_dir}: refusing to replace a directory with non-snapshot files {foreign}"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the snapshot itself is ordinary data
        files = {}
        for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
            filename = SPLIT_FILES[split]
            _write_split(tmp / filename, x, y)
            files[filename] = {"sha256": file_sha256(tmp / filename), "rows": len(y)}
        manifest = {
            "format_version": FORMAT_VERSION,
            "name": raw.name,
            "source": raw.source,
            "license": raw.license,
            "revision": raw.revision,
            "split_seed": int(split_seed),
            "num_classes": int(raw.num_classes),
            "image_shape": list(image_shape),
            "pixel_max": float(raw.pixel_max),
            "n_train": len(raw.y_train),
            "n_test": len(raw.y_test),
            "class_counts_train": _class_counts(raw.y_train, raw.num_classes),
            "class_counts_test": _class_counts(raw.y_test, raw.num_classes),
            "files": files,
        }
        manifest["manifest_sha256"] = manifest_sha256(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=2) + "\n")
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def load_snapshot(path: Path, *, verify: bool = True) -> Snapshot:
    """Load a snapshot directory (or its ``manifest.json``), checking both parquet files' sha256."""
    root = Path(path)
    if root.name == MANIFEST and root.is_file():
        root = root.parent
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise SnapshotError(f"{manifest_path}: snapshot manifest missing (make it: unlearn-bench fetch)")
    try:
        manifest = json.loads(manifest_path.read_text())
        image_shape = tuple(int(d) for d in manifest["image_shape"])
        pixel_max = float(manifest["pixel_max"])
        num_classes = int(manifest["num_classes"])
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"{manifest_path}: malformed manifest ({type(exc).__name__}: {exc})") from exc
    rebuild = f"rebuild it with `unlearn-bench fetch --dataset {root.name}`"
    if verify and manifest.get("manifest_sha256") != manifest_sha256(manifest):
        why = "has no checksum (older format)" if "manifest_sha256" not in manifest else "checksum mismatch"
        raise SnapshotError(f"{manifest_path}: {why}: edited or corrupt; {rebuild}")
    if len(image_shape) not in (2, 3):
        raise SnapshotError(f"{manifest_path}: image_shape must be (H, W) or (H, W, C), got {image_shape}")

    arrays = {}
    for split, filename in SPLIT_FILES.items():
        file = root / filename
        if not file.is_file():
            raise SnapshotError(f"{file}: snapshot file missing")
        entry = files.get(filename) if isinstance(files, dict) else None
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise SnapshotError(f"{manifest_path}: no checksum recorded for {filename}")
        if verify:
            actual = file_sha256(file)
            if actual != entry["sha256"]:
                raise SnapshotError(
                    f"{file}: checksum mismatch (manifest sha256 {entry['sha256']}, file sha256 {actual}); "
                    f"{rebuild}"
                )
        x, y = _read_split(file, image_shape)
        if "rows" in entry and len(y) != int(entry["rows"]):
            raise SnapshotError(f"{file}: {len(y)} rows, manifest says {entry['rows']}")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise SnapshotError(f"{file}: labels outside 0..{num_classes - 1}")
        arrays[split] = (_to_nchw(x, pixel_max), torch.from_numpy(y))

    return Snapshot(
        name=str(manifest.get("name", root.name)),
        x_train=arrays["train"][0],
        y_train=arrays["train"][1],
        x_test=arrays["test"][0],
        y_test=arrays["test"][1],
        num_classes=num_classes,
        manifest=manifest,
    )


# ---------------------------------------------------------------------------------------------------------


def _validate_raw(raw: RawDataset) -> tuple[int, ...]:
    shapes = {}
    for split, x, y in (("train", raw.x_train, raw.y_train), ("test", raw.x_test, raw.y_test)):
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise SnapshotError(
                f"{raw.name}: x_{split} must be uint8 (N, H, W[, C]), got {x.dtype} {x.shape}"
            )
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise SnapshotError(
                f"{raw.name}: y_{split} must be {len(x)} integer labels, got {y.dtype} {y.shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= raw.num_classes):
            raise SnapshotError(f"{raw.name}: y_{split} has labels outside 0..{raw.num_classes - 1}")
        shapes[split] = tuple(int(d) for d in x.shape[1:])
    if shapes["train"] != shapes["test"]:
        raise SnapshotError(
            f"{raw.name}: train images {shapes['train']} differ from test images {shapes['test']}"
        )
    return shapes["train"]


def _class_counts(y: np.ndarray, num_classes: int) -> list[int]:
    return [int(c) for c in np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes)]


def _write_split(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    n = len(x)
    width = int(np.prod(x.shape[1:]))
    flat = pa.array(np.ascontiguousarray(x).reshape(-1), type=pa.uint8())
    pixels = pa.FixedSizeListArray.from_arrays(flat, width)
    labels = pa.array(np.asarray(y, dtype=np.int64), type=pa.int64())
    table = pa.Table.from_arrays([pixels, labels], names=["pixels", "label"])
    assert table.num_rows == n
    # no timestamps or paths go into parquet metadata, so identical inputs give identical bytes
    pq.write_table(table, path, compression="zstd", row_group_size=max(n, 1), write_statistics=False)


def _read_split(path: Path, image_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    try:
        table = pq.read_table(path, columns=["pixels", "label"])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise SnapshotError(f"{path}: unreadable parquet ({type(exc).__name__}: {exc})") from exc
    pixels = table.column("pixels").combine_chunks()
    width = int(np.prod(image_shape))
    if not pa.types.is_fixed_size_list(pixels.type) or pixels.type.list_size != width:
        raise SnapshotError(
            f"{path}: pixels column is {pixels.type}, expected fixed_size_list<uint8>[{width}]"
        )
    flat = pixels.flatten().to_numpy(zero_copy_only=False)
    x = np.asarray(flat, dtype=np.uint8).reshape((len(pixels), *image_shape))
    y = np.array(table.column("label").to_numpy(), dtype=np.int64)  # copy: writable for torch
    return x, y


def _to_nchw(x: np.ndarray, pixel_max: float) -> torch.Tensor:
    x = x[:, None, :, :] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    out = np.ascontiguousarray(x, dtype=np.float32)
    out /= np.float32(pixel_max)
    return torch.from_numpy(out)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by ``tmp`` with renames only (the old copy is removed after the swap)."""
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    old.rmdir()
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
