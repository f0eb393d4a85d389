"""Types shared by the models, metrics, configuration and methods: the data a request carries, the
training recipe, and the work counters (below everything that uses them; no benchmark imports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class WorkCounter(Protocol):
    """What the curvature and training helpers count into (implemented by :class:`Counters`)."""

    grad_samples: int
    fwd_samples: int
    hvps: int
    hvp_samples: int
    hessians: int


@dataclass(frozen=True)
class DataView:
    """Inputs (float32, normalised, NCHW) and integer labels of one subset of the training set."""

    x: torch.Tensor
    y: torch.Tensor
    indices: torch.Tensor  # positions in the training set

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class Request:
    """Deletion request k (1-based) of a sequential protocol.

    ``forget`` is what request k deletes; ``forget_all`` is the union of requests 1..k;
    ``retain`` is D minus requests 1..k (what the gold model of step k is trained on).
    """

    step: int
    forget: DataView
    forget_all: DataView
    retain: DataView
    num_classes: int


@dataclass(frozen=True)
class TrainRecipe:
    """The originals' training recipe; gold retrains and first-order methods reuse it."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    optimizer: str = "adam"


@dataclass
class Counters:
    """Work done inside one request: gradient passes, forward-only passes and Hessian-vector products."""

    grad_samples: int = 0  # samples pushed through a forward+backward pass
    fwd_samples: int = 0  # samples pushed through a forward pass only (loss checks, teacher logits)
    hvps: int = 0
    hvp_samples: int = 0  # samples involved in HVPs
    hessians: int = 0  # explicit Hessians formed

    def reset(self) -> None:
        self.grad_samples = self.fwd_samples = self.hvps = self.hvp_samples = self.hessians = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "grad_samples": self.grad_samples,
            "fwd_samples": self.fwd_samples,
            "hvps": self.hvps,
            "hvp_samples": self.hvp_samples,
            "hessians": self.hessians,
        }
