"""Parquet snapshots: round trip, manifest checksums, byte-reproducibility, corruption detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from benchmark.data.snapshot import Snapshot, SnapshotError, file_sha256, load_snapshot, write_snapshot
from benchmark.data.sources import RawDataset, load_source


def _synthetic(shape: tuple[int, ...], n_train: int = 30, n_test: int = 12, seed: int = 0) -> RawDataset:
    rng = np.random.default_rng(seed)
    return RawDataset(
        name="synthetic",
        x_train=rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        y_train=np.arange(n_train, dtype=np.int64) % 3,
        x_test=rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        y_test=np.arange(n_test, dtype=np.int64) % 3,
        num_classes=3,
        pixel_max=255.0,
        source="test",
        license="CC0",
        revision="1",
    )


@pytest.fixture(scope="module")
def digits() -> RawDataset:
    return load_source("digits", split_seed=0)


def test_round_trip_grayscale(digits: RawDataset, tmp_path: Path) -> None:
    manifest = write_snapshot(digits, tmp_path / "snap", split_seed=0)
    snap = load_snapshot(tmp_path / "snap")
    assert isinstance(snap, Snapshot)
    assert snap.name == "digits" and snap.num_classes == 10
    assert snap.input_shape == (1, 8, 8)
    assert snap.x_train.dtype == torch.float32 and snap.y_train.dtype == torch.int64
    assert snap.x_train.shape == (len(digits.y_train), 1, 8, 8)
    assert snap.x_test.shape == (len(digits.y_test), 1, 8, 8)
    expected = torch.from_numpy(digits.x_train.astype(np.float32) / 16.0)[:, None]
    assert torch.equal(snap.x_train, expected)
    assert float(snap.x_train.max()) == 1.0 and float(snap.x_train.min()) == 0.0
    assert torch.equal(snap.y_train, torch.from_numpy(digits.y_train))
    assert torch.equal(snap.y_test, torch.from_numpy(digits.y_test))
    assert snap.manifest == manifest
    on_disk = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert on_disk == manifest
    for key in (
        "name",
        "source",
        "license",
        "revision",
        "split_seed",
        "num_classes",
        "image_shape",
        "pixel_max",
        "n_train",
        "n_test",
        "class_counts_train",
        "class_counts_test",
        "files",
    ):
        assert key in manifest
    assert manifest["image_shape"] == [8, 8] and manifest["pixel_max"] == 16.0
    assert manifest["class_counts_train"] == np.bincount(digits.y_train).tolist()
    assert sum(manifest["class_counts_test"]) == manifest["n_test"] == len(digits.y_test)


def test_round_trip_colour(tmp_path: Path) -> None:
    raw = _synthetic((5, 4, 3))
    write_snapshot(raw, tmp_path / "snap", split_seed=7)
    snap = load_snapshot(tmp_path / "snap" / "manifest.json")  # the manifest path works too
    assert snap.input_shape == (3, 5, 4)
    assert snap.x_test.shape == (12, 3, 5, 4)
    expected = torch.from_numpy(raw.x_test.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    assert torch.equal(snap.x_test, expected)
    assert snap.manifest["split_seed"] == 7 and snap.manifest["image_shape"] == [5, 4, 3]


def test_manifest_checksums_and_layout(digits: RawDataset, tmp_path: Path) -> None:
    out = tmp_path / "snap"
    manifest = write_snapshot(digits, out, split_seed=0)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.parquet", "train.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]  # no temp dirs left behind
    for filename, entry in manifest["files"].items():
        assert entry["sha256"] == file_sha256(out / filename)
        assert entry["rows"] == pq.read_metadata(out / filename).num_rows
    text = (out / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"
    schema = pq.read_schema(out / "train.parquet")
    assert schema.names == ["pixels", "label"]
    assert str(schema.field("label").type) == "int64"


def test_rewrite_is_byte_identical(digits: RawDataset, tmp_path: Path) -> None:
    first = write_snapshot(digits, tmp_path / "a", split_seed=0)
    second = write_snapshot(digits, tmp_path / "b", split_seed=0)
    assert first == second
    for name in ("train.parquet", "test.parquet", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    # overwriting an existing snapshot in place replaces it atomically
    write_snapshot(_synthetic((8, 8)), tmp_path / "a", split_seed=0)
    assert load_snapshot(tmp_path / "a").name == "synthetic"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_refuses_to_replace_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(SnapshotError, match="precious.txt"):
        write_snapshot(_synthetic((4, 4)), out, split_seed=0)
    assert (out / "precious.txt").read_text() == "keep me"


def test_corrupted_byte_is_detected(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    manifest = write_snapshot(_synthetic((6, 6)), out, split_seed=0)
    target = out / "test.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="test.parquet") as info:
        load_snapshot(out)
    assert manifest["files"]["test.parquet"]["sha256"] in str(info.value)
    assert file_sha256(target) in str(info.value)


def test_missing_manifest_or_file(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="manifest.json"):
        load_snapshot(tmp_path / "nowhere")
    out = tmp_path / "snap"
    write_snapshot(_synthetic((4, 4)), out, split_seed=0)
    (out / "train.parquet").unlink()
    with pytest.raises(SnapshotError, match="train.parquet"):
        load_snapshot(out)
    (out / "manifest.json").unlink()
    with pytest.raises(SnapshotError, match=str(out / "manifest.json")):
        load_snapshot(out)


def test_invalid_raw_rejected(tmp_path: Path) -> None:
    raw = _synthetic((4, 4))
    bad = RawDataset(**{**raw.__dict__, "x_train": raw.x_train.astype(np.float32)})
    with pytest.raises(SnapshotError, match="uint8"):
        write_snapshot(bad, tmp_path / "snap", split_seed=0)
    assert not (tmp_path / "snap").exists()
