"""A suite's inputs, loaded once per stage: snapshot, forget sets, model factory and cache keys."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.config import Params, ProtocolConfig, SuiteConfig
from benchmark.data.protocols import cumulative, load_requests, protocol_path, retain_indices
from benchmark.data.snapshot import Snapshot, load_snapshot
from benchmark.models.zoo import build_model, count_parameters
from benchmark.runner.artifacts import Layout, stable_hash
from benchmark.unlearners.base import DataView, Request


@dataclass(eq=False)  # hashed by identity: per-instance caches below
class SuiteRun:
    """Everything the train / gold / unlearn / evaluate stages share for one suite."""

    params: Params
    suite: SuiteConfig
    layout: Layout
    snapshot: Snapshot = field(init=False)

    def __post_init__(self) -> None:
        self.snapshot = load_snapshot(self.layout.dataset_dir(self.suite.dataset))

    # --- models -----------------------------------------------------------------------------------
    def make_model(self, seed: int) -> nn.Module:
        return build_model(self.suite.model, self.snapshot.input_shape, self.snapshot.num_classes, seed)

    @functools.cached_property
    def n_params(self) -> int:
        return count_parameters(self.make_model(0))

    @property
    def n_train(self) -> int:
        return int(self.snapshot.y_train.shape[0])

    # --- cache keys ---------------------------------------------------------------------------------
    @functools.cached_property
    def data_key(self) -> str:
        files = self.snapshot.manifest["files"]
        return stable_hash({k: v["sha256"] for k, v in sorted(files.items())})

    def original_key(self, seed: int) -> str:
        return stable_hash(
            {"data": self.data_key, "model": self.suite.model, "train": vars(self.suite.recipe), "seed": seed}
        )

    def gold_key(self, protocol: str, seed: int, step: int) -> str:
        idx = self.requests(protocol, seed)
        return stable_hash(
            {
                "original": self.original_key(seed),
                "protocol": protocol,
                "step": step,
                "forget": stable_hash(cumulative(idx, step).tolist()),
            }
        )

    # --- data views ---------------------------------------------------------------------------------
    def protocol(self, name: str) -> ProtocolConfig:
        return self.params.protocols[name]

    @functools.cache  # noqa: B019  (one SuiteRun per stage invocation)
    def requests(self, protocol: str, seed: int) -> list[np.ndarray]:
        return load_requests(protocol_path(self.layout.protocols_dir(self.suite.name), protocol, seed))

    def view(self, indices: np.ndarray) -> DataView:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return DataView(self.snapshot.x_train[idx], self.snapshot.y_train[idx], idx)

    def request(self, protocol: str, seed: int, step: int) -> Request:
        reqs = self.requests(protocol, seed)
        return Request(
            step=step,
            forget=self.view(reqs[step - 1]),
            forget_all=self.view(cumulative(reqs, step)),
            retain=self.view(retain_indices(self.n_train, reqs, step)),
            num_classes=self.snapshot.num_classes,
        )

    def steps(self, protocol: str) -> Iterator[int]:
        return iter(range(1, self.protocol(protocol).requests + 1))


def open_suite(params: Params, suite: str, root: Path = Path(".")) -> SuiteRun:
    return SuiteRun(params, params.suite(suite), Layout(root))
