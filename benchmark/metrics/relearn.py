"""Relearn time: how quickly fine-tuning on the forget set brings its accuracy back.

A model that merely hides the forget set (small weight change masking what it still encodes)
relearns it in a few steps; a model that really forgot it needs about as long as a retrained one.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from benchmark.metrics.accuracy import accuracy
from benchmark.models.training import make_optimizer
from benchmark.unlearners.base import TrainRecipe

__all__ = ["relearn_time"]


def relearn_time(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    recipe: TrainRecipe,
    target_acc: float,
    *,
    seed: int = 0,
    batch_size: int = 32,
    max_steps: int = 100,
    eval_x: Tensor | None = None,
    eval_y: Tensor | None = None,
) -> tuple[int, bool]:
    """``(steps, capped)``: optimiser steps of fine-tuning on (x, y) until accuracy ≥ ``target_acc``.

    .. math:: T_{\\text{relearn}} = \\min\\{t \\ge 0 : \\mathrm{acc}(w_t; D_f) \\ge a^\\star\\},
              \\quad w_{t+1} = \\mathrm{opt}(w_t, \\nabla \\ell(w_t; B_t))

    where ``a*`` is the target (the benchmark passes the original model's forget-set accuracy),
    ``B_t`` minibatches of ``batch_size`` (32) drawn without replacement epoch by epoch from
    (x, y) with a ``seed``-ed generator, and ``opt`` the training recipe's optimiser (Adam or SGD,
    the recipe's learning rate and weight decay). Accuracy is measured on ``(eval_x, eval_y)``
    (default: (x, y)) before the first step and after each step. ``t = 0`` when the target is
    already met. If it is not met within ``max_steps`` (100) the result is ``(max_steps, True)``:
    a lower bound, flagged as capped. ``model`` is not modified (a copy is trained).

    Reference: A. Golatkar, A. Achille, S. Soatto, "Eternal sunshine of the spotless net: selective
    forgetting in deep networks", CVPR 2020 (relearn time as a read-out of residual information).
    """
    if eval_x is None or eval_y is None:
        eval_x, eval_y = x, y
    n = int(y.shape[0])
    if n == 0 or int(eval_y.shape[0]) == 0:
        return 0, False
    if accuracy(model, eval_x, eval_y) >= target_acc:
        return 0, False
    net = copy.deepcopy(model)
    param = next(iter(net.parameters()), None)
    if param is not None:  # train where the model lives (a no-op on the CPU)
        x, y = x.to(param.device), y.to(param.device)
    opt = make_optimizer(net, recipe)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(int(seed))
    order, pos = torch.randperm(n, generator=gen), 0
    for step in range(1, max_steps + 1):
        if pos >= n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        net.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x[idx]), y[idx]).backward()
        opt.step()
        if accuracy(net, eval_x, eval_y) >= target_acc:
            return step, False
    return max_steps, True
