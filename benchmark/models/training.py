"""The one training loop: minibatch Adam/SGD on mean cross-entropy + (weight_decay/2)·‖w‖².

Weight decay is the coupled L2 penalty (``torch.optim`` ``weight_decay``), so the objective that
second-order methods minimise is exactly the one the originals were trained on.
Deterministic on CPU: the minibatch order comes from a generator seeded with ``seed``.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.unlearners.base import Counters, TrainRecipe


def make_optimizer(model: nn.Module, recipe: TrainRecipe, lr: float | None = None) -> torch.optim.Optimizer:
    lr = recipe.lr if lr is None else lr
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    recipe: TrainRecipe,
    seed: int,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    counters: Counters | None = None,
    desc: str | None = None,
    ascent: bool = False,
) -> nn.Module:
    """Train ``model`` in place on (x, y) and return it.

    ``epochs``/``lr`` override the recipe (fine-tuning); ``ascent=True`` maximises the loss
    (gradient ascent, for NegGrad-style methods). A progress bar shows when ``desc`` is given.
    """
    epochs = recipe.epochs if epochs is None else epochs
    n = int(y.shape[0])
    if n == 0 or epochs == 0:
        return model
    gen = torch.Generator().manual_seed(int(seed))
    opt = make_optimizer(model, recipe, lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    sign = -1.0 if ascent else 1.0
    bar = tqdm(range(epochs), desc=desc, leave=False, disable=True if desc is None else None, unit="epoch")
    for _ in bar:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = sign * loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            if counters is not None:
                counters.grad_samples += int(idx.numel())
        if desc is not None:
            bar.set_postfix(loss=f"{sign * loss.item():.4f}")
    model.eval()
    return model


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> float:
    """Top-1 accuracy in [0, 1] (NaN on an empty set)."""
    if int(y.shape[0]) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for start in range(0, int(y.shape[0]), batch_size):
        pred = model(x[start : start + batch_size]).argmax(dim=1)
        correct += int((pred == y[start : start + batch_size]).sum())
    return correct / int(y.shape[0])
