"""A suite's inputs, loaded once per stage: snapshot, forget sets, model factory, device and cache keys.

The snapshot stays on the CPU (the evaluation reads it as numpy); models from :meth:`SuiteRun.make_model`
and the data views handed to training and unlearning live on the suite's device
(:mod:`benchmark.runner.device`). On the CPU every ``.to(device)`` below returns its input unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.config import Params, ProtocolConfig, SuiteConfig
from benchmark.data.protocols import cumulative, load_corruption, load_requests, protocol_path, retain_indices
from benchmark.data.snapshot import Snapshot, load_snapshot
from benchmark.models.zoo import build_model, count_parameters
from benchmark.runner.artifacts import Layout, stable_hash
from benchmark.runner.device import configure_determinism, pin_device, resolve_device
from benchmark.unlearners.base import DataView, Request

POP = "pop"  # forget-set id of the population (one shared forget set per protocol)
ForgetId = int | str  # a model seed (its own forget sets) or POP


@dataclass(eq=False)  # hashed by identity: per-instance caches below
class SuiteRun:
    """Everything the train / gold / unlearn / evaluate stages share for one suite."""

    params: Params
    suite: SuiteConfig
    layout: Layout
    # a device some other process already resolved (str(torch.device)): a Ray worker's suite uses the driver's
    # device instead of resolving ``suite.device`` (``auto``) again (benchmark.runner.device.pin_device)
    pinned_device: str | None = None
    snapshot: Snapshot = field(init=False)

    def __post_init__(self) -> None:
        self.snapshot = load_snapshot(self.layout.dataset_dir(self.suite.dataset))

    # --- device -----------------------------------------------------------------------------------
    @functools.cached_property
    def device(self) -> torch.device:
        """The suite's resolved device (DeviceError when it asks for CUDA that is not there), or the pinned
        one when the run was opened with ``device=`` (a worker: the driver's, never re-resolved)."""
        key = f"suites.{self.suite.name}.device"
        if self.pinned_device is not None:
            device = pin_device(self.pinned_device, key)
        else:
            device = resolve_device(self.suite.device, key)
        configure_determinism(device)
        return device

    @functools.cached_property
    def x_train(self) -> torch.Tensor:
        """The training images on the suite's device (the snapshot's own tensor on the CPU)."""
        return self.snapshot.x_train.to(self.device)

    # --- models -----------------------------------------------------------------------------------
    def make_model(self, seed: int) -> nn.Module:
        """A fresh model of the suite (weights drawn on the CPU from ``seed``), on the suite's device."""
        model = build_model(self.suite.model, self.snapshot.input_shape, self.snapshot.num_classes, seed)
        return model.to(self.device)

    @functools.cached_property
    def n_params(self) -> int:
        return count_parameters(self.make_model(0))

    @property
    def n_train(self) -> int:
        return int(self.snapshot.y_train.shape[0])

    # --- cache keys ---------------------------------------------------------------------------------
    @functools.cached_property
    def data_key(self) -> str:
        """Hash of the snapshot's file checksums — plus the device type when it is not the CPU, so every
        key built on it (originals, gold, memorisation, population, cells) separates GPU artefacts from
        CPU ones while CPU keys stay what they were before devices existed."""
        files = self.snapshot.manifest["files"]
        sums = {k: v["sha256"] for k, v in sorted(files.items())}
        if self.device.type != "cpu":
            return stable_hash({"files": sums, "device": self.device.type})
        return stable_hash(sums)

    def variant(self, protocol: str | None) -> str | None:
        """The protocol name when its originals train on flipped labels (``mislabeled``), else None."""
        return protocol if protocol is not None and self.protocol(protocol).corrupts_labels else None

    def original_key(self, seed: int, protocol: str | None = None, fid: ForgetId | None = None) -> str:
        key: dict[str, object] = {
            "data": self.data_key, "model": self.suite.model, "train": vars(self.suite.recipe), "seed": seed
        }
        bad = self.corruption(protocol, seed if fid is None else fid) if self.variant(protocol) else None
        if bad is not None:
            key["labels"] = stable_hash([bad[0].tolist(), bad[1].tolist()])
        return stable_hash(key)

    def original_path(self, seed: int, protocol: str | None = None) -> Path:
        return self.layout.original_path(self.suite.name, seed, self.variant(protocol))

    def original_jobs(self) -> list[tuple[str | None, int]]:
        """(variant, seed) of every original: clean ones, plus one per label-corrupting protocol and seed."""
        jobs: list[tuple[str | None, int]] = []
        if any(self.variant(p) is None for p in self.suite.protocols):
            jobs += [(None, seed) for seed in self.suite.seeds]
        for p in self.suite.protocols:
            if self.variant(p):
                jobs += [(p, seed) for seed in self.suite.seeds]
        return jobs

    def gold_key(self, protocol: str, seed: int, step: int, fid: ForgetId | None = None) -> str:
        fid = seed if fid is None else fid
        idx = self.requests(protocol, fid)
        return stable_hash(
            {
                "original": self.original_key(seed, protocol, fid),
                "protocol": protocol,
                "step": step,
                "forget": stable_hash(cumulative(idx, step).tolist()),
            }
        )

    # --- data views ---------------------------------------------------------------------------------
    def protocol(self, name: str) -> ProtocolConfig:
        return self.params.protocols[name]

    def protocol_file(self, protocol: str, fid: ForgetId) -> Path:
        return protocol_path(self.layout.protocols_dir(self.suite.name), protocol, fid)

    @functools.cache  # noqa: B019  (one SuiteRun per stage invocation)
    def requests(self, protocol: str, fid: ForgetId) -> list[np.ndarray]:
        return load_requests(self.protocol_file(protocol, fid))

    @functools.cache  # noqa: B019
    def corruption(self, protocol: str | None, fid: ForgetId) -> tuple[np.ndarray, np.ndarray] | None:
        """The flipped samples and their training labels (``mislabeled``), else None."""
        if self.variant(protocol) is None:
            return None
        assert protocol is not None
        return load_corruption(self.protocol_file(protocol, fid))

    @functools.cache  # noqa: B019
    def train_labels(self, protocol: str | None, fid: ForgetId) -> torch.Tensor:
        """The training labels models of this protocol and forget id train on (flipped ones included)."""
        y = self.snapshot.y_train
        bad = self.corruption(protocol, fid)
        if bad is None:
            return y
        y = y.clone()
        y[torch.as_tensor(bad[0])] = torch.as_tensor(bad[1])
        return y

    def view(self, indices: np.ndarray, labels: torch.Tensor | None = None) -> DataView:
        """Images and labels of ``indices`` on the suite's device; ``indices`` stay a CPU tensor."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        y = self.snapshot.y_train if labels is None else labels
        on = idx.to(self.device)
        return DataView(self.x_train[on], y.to(self.device)[on], idx)

    def request(self, protocol: str, fid: ForgetId, step: int) -> Request:
        reqs = self.requests(protocol, fid)
        y = self.train_labels(protocol, fid)
        return Request(
            step=step,
            forget=self.view(reqs[step - 1], y),
            forget_all=self.view(cumulative(reqs, step), y),
            retain=self.view(retain_indices(self.n_train, reqs, step), y),
            num_classes=self.snapshot.num_classes,
        )

    def steps(self, protocol: str) -> Iterator[int]:
        return iter(range(1, self.protocol(protocol).requests + 1))


def open_suite(params: Params, suite: str, root: Path = Path("."), device: str | None = None) -> SuiteRun:
    """The suite ``suite`` of ``params`` under ``root``; ``device``: an already resolved device to use as is
    (a Ray worker's suite: the driver's ``str(run.device)``), None to resolve ``suites.S.device`` here."""
    return SuiteRun(params, params.suite(suite), Layout(root), pinned_device=device)
