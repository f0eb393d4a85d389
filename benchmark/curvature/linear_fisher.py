"""Closed-form sums of squared per-sample gradients for models whose trainable layers are all ``nn.Linear``.

For a linear layer ``z = W a + b`` applied to one sample at a time, the gradient of a per-sample loss
``ℓ_i`` is the outer product ``∇_W ℓ_i = δ_i a_iᵀ`` and ``∇_b ℓ_i = δ_i``, with ``δ_i = ∂ℓ_i/∂z_i`` the
backpropagated error at the layer's output and ``a_i`` its input. Hence

    Σ_i (∇_W ℓ_i)² = (δ²)ᵀ (a²),        Σ_i (∇_b ℓ_i)² = Σ_i δ_i²        (squares elementwise),

where ``δ`` (n × out) and ``a`` (n × in) stack the samples. One batched forward and one backward pass give
every ``δ_i`` at once (``∂ Σ_i ℓ_i / ∂z_i = ∂ℓ_i/∂z_i`` because, in eval mode, sample ``i``'s output
depends on sample ``i`` only: an assumption about the model that the per-sample code makes too, by
evaluating one sample at a time), so the diagonal empirical Fisher costs two matrix products per layer instead
of ``n`` per-sample gradients of length ``d``. This is the identity BackPACK's ``SumGradSquared`` and KFAC's
factors use (Dangel, Kunstner, Hennig 2020, "BackPACK: Packing more into backprop", ICLR).

For the true Fisher, ``Σ_i Σ_c p_ic (∇ log p_ic)²`` is, per layer, ``(Σ_c p_c ⊙ δ_c²)ᵀ (a²)`` with ``δ_c``
the error of ``Σ_i log p_ic``: one backward pass per class for the whole batch.

:func:`linear_sq_grad_sum` returns ``None`` where the identity does not hold as written, so that the caller
falls back to :func:`torch.func.vmap` per-sample gradients: a trainable parameter outside an ``nn.Linear``
(convolutions, normalisation layers), a parameter shared by two layers or a layer called twice (weight
tying), a linear layer applied to anything but an (n, in) batch (sequences), or a model in training mode.

The result equals the per-sample-gradient sum up to floating-point summation order (the tests check it
against per-sample loops in float64).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["linear_layers", "linear_sq_grad_sum"]


def linear_layers(model: nn.Module, trainable: list[str]) -> dict[str, tuple[nn.Linear, str]] | None:
    """Map every trainable parameter name to the ``nn.Linear`` that owns it and its role (``"weight"`` or
    ``"bias"``), or ``None`` when one is not owned by exactly one linear layer."""
    owner: dict[str, tuple[nn.Linear, str]] = {}
    seen: set[int] = set()
    for mod_name, mod in model.named_modules(remove_duplicate=False):
        for p_name, p in mod.named_parameters(recurse=False):
            if id(p) in seen:  # a parameter shared by two modules (tied weights)
                return None
            seen.add(id(p))
            if isinstance(mod, nn.Linear):
                owner[f"{mod_name}.{p_name}" if mod_name else p_name] = (mod, p_name)
    if any(name not in owner for name in trainable):
        return None
    return {name: owner[name] for name in trainable}


def linear_sq_grad_sum(
    model: nn.Module,
    names: list[str],
    params: dict[str, Tensor],
    fixed: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    kind: str,
) -> dict[str, Tensor] | None:
    """``Σ_i (∇ℓ_i)²`` (``kind="empirical"``, ``ℓ_i = −log p(y_i | x_i)``) or ``Σ_i Σ_c p_ic (∇ log p_ic)²``
    (``kind="true"``) for each trainable parameter ``names`` of ``model``, evaluated at ``params`` (name →
    tensor, the dtype of the computation) with ``fixed`` (frozen parameters and buffers); ``None`` when the
    closed form does not apply (see the module docstring) and per-sample gradients are needed."""
    if model.training:  # BatchNorm would couple the samples, Dropout draw noise: per-sample code decides
        return None
    owner = linear_layers(model, names)
    if owner is None:
        return None
    layers = {id(m): m for m, _ in owner.values()}
    captured: dict[int, list[tuple[Tensor, Tensor]]] = {i: [] for i in layers}

    def hook(mod: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
        captured[id(mod)].append((inputs[0], output))

    handles = [m.register_forward_hook(hook) for m in layers.values()]
    try:
        with torch.enable_grad():
            leaves = {n: t.detach().requires_grad_(True) for n, t in params.items()}
            logits = functional_call(model, {**fixed, **leaves}, (x,))
    finally:
        for h in handles:
            h.remove()
    n = int(x.shape[0])
    if logits.dim() != 2 or logits.shape[0] != n:
        return None
    for calls in captured.values():
        if len(calls) != 1:  # unused, or called twice (weight sharing across positions)
            return None
        a, z = calls[0]
        if a.dim() != 2 or z.dim() != 2 or a.shape[0] != n or not z.requires_grad:
            return None
    order = list(layers)
    outputs = [captured[i][0][1] for i in order]

    err_sq: dict[int, Tensor]  # per layer, the (n × out) squared errors, weighted by p_c for the true Fisher
    if kind == "empirical":
        deltas = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), outputs)
        err_sq = {i: d.square() for i, d in zip(order, deltas, strict=True)}
    else:
        logp = F.log_softmax(logits, dim=-1)
        probs = logp.detach().exp()
        err_sq = {i: torch.zeros_like(o) for i, o in zip(order, outputs, strict=True)}
        n_classes = int(logp.shape[1])
        for c in range(n_classes):
            deltas = torch.autograd.grad(logp[:, c].sum(), outputs, retain_graph=c < n_classes - 1)
            for i, d in zip(order, deltas, strict=True):
                err_sq[i] += probs[:, c : c + 1] * d.square()

    out: dict[str, Tensor] = {}
    for name, (mod, role) in owner.items():
        e = err_sq[id(mod)].detach()
        out[name] = e.sum(0) if role == "bias" else e.T @ captured[id(mod)][0][0].detach().square()
    return out
