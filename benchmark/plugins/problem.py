"""The tiny, self-contained unlearning problem the conformance checks run a method on.

300 training images of scikit-learn's digits (split seed 0), an MLP 64-8-10 trained 5 epochs by the suite's
training loop (Adam, lr 0.01, weight decay 1e-3), and K = 3 sequential deletion requests: two random
requests of 15 samples each, then one whole class of what remains. Built in memory (no pipeline output) and
cached per (seed, size), so every method and every check of one session shares one problem.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.unlearners.base import DataView, Request, TrainRecipe


@dataclass(frozen=True)
class Problem:
    """A tiny unlearning problem: training data, an original model and K sequential requests."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    recipe: TrainRecipe
    model_spec: dict[str, Any]
    original_state: dict[str, torch.Tensor]
    requests: tuple[Request, ...]

    def make_model(self, seed: int) -> nn.Module:
        from benchmark.models.zoo import build_model

        channels, height, width = (int(n) for n in self.x.shape[1:])
        return build_model(self.model_spec, (channels, height, width), self.num_classes, seed)

    def original(self, seed: int) -> nn.Module:
        model = self.make_model(seed)
        model.load_state_dict(self.original_state)
        return model.eval()

    def fresh_requests(self) -> list[Request]:
        """Private copies of the requests, so that a method that mutates them cannot spoil the next run."""

        def copy_view(v: DataView) -> DataView:
            return DataView(v.x.clone(), v.y.clone(), v.indices.clone())

        return [
            Request(r.step, copy_view(r.forget), copy_view(r.forget_all), copy_view(r.retain), r.num_classes)
            for r in self.requests
        ]

    @property
    def n_train(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_params(self) -> int:
        from benchmark.models.zoo import count_parameters

        return count_parameters(self.make_model(0))


@functools.lru_cache(maxsize=4)
def build_problem(seed: int = 0, n_train: int = 300, random_size: int = 15) -> Problem:
    """Digits subset, MLP 64-8-10 trained 5 epochs, requests: random, random, one whole class."""
    from benchmark.data.snapshot import _to_nchw
    from benchmark.data.sources import load_source
    from benchmark.models.training import train_model

    raw = load_source("digits", split_seed=seed)
    x = _to_nchw(raw.x_train[:n_train], raw.pixel_max)
    y = torch.from_numpy(raw.y_train[:n_train].copy())
    recipe = TrainRecipe(epochs=5, batch_size=64, lr=0.01, weight_decay=1e-3, optimizer="adam")
    spec = {"arch": "mlp", "hidden": [8]}
    stub = Problem(x, y, raw.num_classes, recipe, spec, {}, ())
    model = train_model(stub.make_model(seed), x, y, recipe, seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_train)
    deleted = [np.sort(order[:random_size]), np.sort(order[random_size : 2 * random_size])]
    gone = np.concatenate(deleted)
    remaining = np.setdiff1d(np.arange(n_train), gone)
    cls = int(rng.choice(np.unique(y.numpy()[remaining])))
    deleted.append(remaining[y.numpy()[remaining] == cls])

    def view(idx: np.ndarray) -> DataView:
        t = torch.as_tensor(np.sort(idx), dtype=torch.long)
        return DataView(x[t].clone(), y[t].clone(), t)

    requests = []
    for k in range(len(deleted)):
        union = np.concatenate(deleted[: k + 1])
        requests.append(
            Request(
                step=k + 1,
                forget=view(deleted[k]),
                forget_all=view(union),
                retain=view(np.setdiff1d(np.arange(n_train), union)),
                num_classes=raw.num_classes,
            )
        )
    return Problem(x, y, raw.num_classes, recipe, spec, state, tuple(requests))
