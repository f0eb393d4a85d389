"""Predictions, accuracy and the tug-of-war (ToW) score.

All accuracies are fractions in ``[0, 1]``; an empty evaluation set has accuracy ``nan``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["accuracy", "accuracy_from_probs", "predict_proba", "tow"]


@torch.no_grad()
def predict_proba(model: nn.Module, x: Tensor, batch_size: int = 1024) -> Tensor:
    """Softmax class probabilities of ``model`` on ``x``, as a float64 ``(N, C)`` tensor on the CPU.

    The model is put in eval mode for the forward passes (its previous train/eval mode is restored
    afterwards) and ``x`` is fed in batches of ``batch_size`` on the model's device. The softmax is
    taken in float64, so rows sum to 1 up to float64 rounding.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else x.device
    was_training = model.training
    model.eval()
    try:
        if x.shape[0] == 0:  # still run the model once so the class dimension is known
            logits = model(x.to(device))
            return torch.softmax(logits.double(), dim=1).cpu()
        chunks = [
            torch.softmax(model(x[i : i + batch_size].to(device)).double(), dim=1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(chunks)
    finally:
        model.train(was_training)


def accuracy_from_probs(probs: Tensor, y: Tensor) -> float:
    """Top-1 accuracy ``mean(argmax_c probs[i, c] == y[i])`` in ``[0, 1]``; ``nan`` for an empty set.

    ``probs`` may be probabilities or logits (the argmax is the same); ties go to the lowest class.
    """
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {tuple(probs.shape)}")
    y = y.reshape(-1)
    if probs.shape[0] != y.shape[0]:
        raise ValueError(f"{probs.shape[0]} predictions for {y.shape[0]} labels")
    if y.numel() == 0:
        return math.nan
    pred = probs.argmax(dim=1).cpu()
    return float((pred == y.cpu().long()).double().mean())


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``: ``accuracy_from_probs(predict_proba(model, x), y)``."""
    if y.numel() == 0:
        return math.nan
    return accuracy_from_probs(predict_proba(model, x, batch_size=batch_size), y)


def tow(
    acc_forget_u: float,
    acc_retain_u: float,
    acc_test_u: float,
    acc_forget_r: float,
    acc_retain_r: float,
    acc_test_r: float,
) -> float:
    """Tug-of-war score of an unlearned model ``u`` against the retrained (gold) model ``r``.

    .. math::

        \\mathrm{ToW} = (1 - |a_f(u) - a_f(r)|)\\,(1 - |a_r(u) - a_r(r)|)\\,(1 - |a_t(u) - a_t(r)|)

    where ``a_f``, ``a_r``, ``a_t`` are the accuracies (fractions in ``[0, 1]``) on the forget,
    retain and test sets. ToW is in ``[0, 1]``; 1 means the unlearned model is indistinguishable
    from retraining by these three accuracies. Any ``nan`` input gives ``nan``.

    Reference: K. Zhao, M. Kurmanji, G.-O. Bărbulescu, E. Triantafillou, P. Triantafillou,
    "What makes unlearning hard and what to do about it", NeurIPS 2024 (arXiv:2406.01257).
    """
    accuracies = (acc_forget_u, acc_retain_u, acc_test_u, acc_forget_r, acc_retain_r, acc_test_r)
    values = tuple(float(v) for v in accuracies)
    if any(math.isnan(v) for v in values):
        return math.nan
    for v in values:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"accuracies must be fractions in [0, 1], got {v!r}")
    fu, ru, tu, fr, rr, tr = values
    return (1.0 - abs(fu - fr)) * (1.0 - abs(ru - rr)) * (1.0 - abs(tu - tr))
