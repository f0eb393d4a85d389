"""Per-sample gradients and diagonal Fisher information on :mod:`torch.func` (memory O(chunk · d)).

All functions work on the flat vector ``w`` of a model's trainable parameters (the order of
:func:`benchmark.curvature.flat_params`) and on the per-sample cross-entropy ``ℓ_i(w) = −log p(y_i | x_i; w)``
*without* weight decay (the Fisher is a property of the likelihood; add ``wd·I`` where a Hessian of the
training objective is approximated).

* :func:`per_sample_grads`  -- ``G[i] = ∇ℓ_i(w)``, :func:`torch.func.vmap` of :func:`torch.func.grad`
  over chunks of ``chunk_size`` samples (yields ``(chunk, d)`` blocks).
* :func:`fisher_diag` with ``kind="empirical"`` -- ``F_e = (1/n) Σ_i ∇ℓ_i(w)²`` (squares elementwise),
  the empirical Fisher at the observed labels;
  with ``kind="true"`` -- ``F = (1/n) Σ_i Σ_c p(c | x_i; w) · ∇_w log p(c | x_i; w)²``, the expectation
  over the model's predictive distribution (exact sum over the C classes, one vmapped Jacobian of the
  log-probabilities per sample: C backward passes).
  For a model whose trainable parameters all belong to ``nn.Linear`` layers, each called once on an
  (n, in) batch (the default suites' MLPs), both kinds come from the closed form of
  :mod:`benchmark.curvature.linear_fisher`, ``Σ_i (δ_i a_iᵀ)² = (δ²)ᵀ(a²)`` per layer: one batched
  backward pass (C for the true Fisher) instead of n per-sample gradients, with the same values up to
  float summation order (and the same counts). Any other model uses the per-sample gradients.
* :func:`minibatch_importance` -- ``(1/B) Σ_b ∇L_b(w)²`` over consecutive minibatches ``b`` of mean
  cross-entropy (what Selective Synaptic Dampening's reference code calls importance).

Curvature is evaluated in eval mode: call ``model.eval()`` first (BatchNorm running statistics; a batch of
one sample would not even run in training mode). If ``w`` has another floating dtype than the model, the
model's buffers, frozen parameters and the inputs are cast to ``w.dtype`` (float64 checks of float32 models).

Counters (``benchmark.unlearners.base.Counters`` or anything with an integer ``grad_samples``): each
per-sample gradient adds 1 to ``grad_samples``; the true Fisher adds ``n·C`` (one backward pass per class
and sample), the empirical Fisher and :func:`per_sample_grads` ``n``, :func:`minibatch_importance` ``n``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jacrev, vmap

from benchmark.core.types import WorkCounter
from benchmark.curvature.functional import ParamLayout, flat_params
from benchmark.curvature.linear_fisher import linear_sq_grad_sum

__all__ = ["FISHER_KINDS", "fisher_diag", "minibatch_importance", "per_sample_grads"]

FISHER_KINDS = ("empirical", "true")


class _SampleLoss(ParamLayout):
    """Per-sample log-likelihood pieces of ``model`` as functions of the flat trainable parameters."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__(model)
        self.dtype = dtype

        def cast(t: Tensor) -> Tensor:
            return t.detach().to(dtype) if t.is_floating_point() else t.detach()

        frozen = {n: cast(p) for n, p in model.named_parameters() if not p.requires_grad}
        buffers = {n: cast(b) for n, b in model.named_buffers()}
        self.fixed = {**frozen, **buffers}

    def logits(self, w: Tensor, x: Tensor) -> Tensor:
        """Logits of one sample ``x`` (no batch dimension), shape (1, C)."""
        return functional_call(self.model, {**self.fixed, **self.unflatten(w)}, (x.unsqueeze(0),))

    def log_probs(self, w: Tensor, x: Tensor) -> Tensor:
        """log p(· | x; w) of one sample: shape (C,)."""
        return F.log_softmax(self.logits(w, x), dim=-1).squeeze(0)

    def nll(self, w: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """−log p(y | x; w) of one sample."""
        return F.cross_entropy(self.logits(w, x), y.unsqueeze(0))


def _prepare(
    model: nn.Module, x: Tensor, y: Tensor, w: Tensor | None
) -> tuple[_SampleLoss, Tensor, Tensor, Tensor]:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples and y has {y.shape[0]}")
    if w is None:
        w = flat_params(model)
    w = w.detach()
    f = _SampleLoss(model, w.dtype)
    if w.numel() != f.dim:
        raise ValueError(f"w has {w.numel()} entries, the model has {f.dim} trainable parameters")
    xc = x.detach().to(w.dtype) if x.is_floating_point() else x.detach()
    return f, w, xc, y.detach().long()


def _count(counter: WorkCounter | None, n: int) -> None:
    if counter is not None:
        counter.grad_samples += int(n)


def per_sample_grads(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    w: Tensor | None = None,
    chunk_size: int = 256,
    counter: WorkCounter | None = None,
) -> Iterator[Tensor]:
    """Yield ``(chunk, d)`` blocks of per-sample gradients ``∇_w CE(model(x_i; w), y_i)`` (no weight decay).

    ``w`` defaults to the model's current flat parameters (its dtype sets the computation dtype).
    Adds the number of samples of each block to ``counter.grad_samples`` as it is yielded.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    f, w, x, y = _prepare(model, x, y, w)
    g = vmap(grad(f.nll), in_dims=(None, 0, 0))
    for lo in range(0, int(y.shape[0]), chunk_size):
        block = g(w, x[lo : lo + chunk_size], y[lo : lo + chunk_size]).detach()
        _count(counter, block.shape[0])
        yield block


def fisher_diag(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    kind: str = "empirical",
    w: Tensor | None = None,
    chunk_size: int = 256,
    counter: WorkCounter | None = None,
) -> Tensor:
    """Diagonal Fisher information of the samples ``(x, y)`` at ``w`` (flat, dtype of ``w``).

    ``kind="empirical"``: ``(1/n) Σ_i (∇ℓ_i)²`` at the labels ``y``; ``kind="true"``:
    ``(1/n) Σ_i Σ_c p_c(x_i) (∇ log p_c(x_i))²`` (labels unused; per-sample blocks of ``chunk_size // C``
    samples, so that a block holds about ``chunk_size`` gradients). Zeros for an empty set. A model of
    linear layers only takes the closed form (module docstring) over chunks of ``chunk_size`` samples.
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"unknown Fisher kind {kind!r}; expected one of {FISHER_KINDS}")
    f, w, xs, ys = _prepare(model, x, y, w)
    n = int(ys.shape[0])
    out = torch.zeros_like(w)
    if n == 0:
        return out
    closed = _linear_fisher_sum(f, w, xs, ys, kind, chunk_size)
    if closed is not None:
        with torch.no_grad():
            n_classes = 1 if kind == "empirical" else int(f.log_probs(w, xs[0]).shape[0])
        _count(counter, n * n_classes)
        return closed / n
    if kind == "empirical":
        for block in per_sample_grads(model, x, y, w=w, chunk_size=chunk_size, counter=counter):
            out += block.square().sum(0)
        return out / n

    def with_aux(w_: Tensor, x_: Tensor) -> tuple[Tensor, Tensor]:
        logp = f.log_probs(w_, x_)
        return logp, logp

    def per_sample(w_: Tensor, x_: Tensor) -> Tensor:
        jac, logp = jacrev(with_aux, has_aux=True)(w_, x_)  # (C, d): one backward pass per class
        return (logp.exp().unsqueeze(1) * jac.square()).sum(0)

    batched = vmap(per_sample, in_dims=(None, 0))
    with torch.no_grad():
        n_classes = int(f.log_probs(w, xs[0]).shape[0])
    step = max(1, chunk_size // n_classes)  # a block holds step·C gradients
    for lo in range(0, n, step):
        xb = xs[lo : lo + step]
        out += batched(w, xb).detach().sum(0)
        _count(counter, xb.shape[0] * n_classes)
    return out / n


def _linear_fisher_sum(
    f: _SampleLoss, w: Tensor, x: Tensor, y: Tensor, kind: str, chunk_size: int
) -> Tensor | None:
    """``n · fisher_diag`` by :func:`linear_sq_grad_sum` over chunks of ``chunk_size`` samples, flat in the
    layout's order; ``None`` when the model is not made of linear layers only (then per-sample gradients)."""
    params = f.unflatten(w)
    total: dict[str, Tensor] | None = None
    for lo in range(0, int(y.shape[0]), chunk_size):
        xb, yb = x[lo : lo + chunk_size], y[lo : lo + chunk_size]
        part = linear_sq_grad_sum(f.model, f.names, params, f.fixed, xb, yb, kind)
        if part is None:
            return None
        total = part if total is None else {k: total[k] + part[k] for k in total}
    if total is None:
        return None
    return torch.cat([total[name].reshape(-1) for name in f.names]).detach()


def minibatch_importance(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    w: Tensor | None = None,
    counter: WorkCounter | None = None,
) -> Tensor:
    """``(1/B) Σ_b (∇ mean_{i∈b} ℓ_i(w))²`` over the ``B`` consecutive minibatches of ``batch_size`` samples.

    The squared gradient of each minibatch-mean cross-entropy, averaged over minibatches (the last one
    may be smaller): the importance of Foster et al.'s SSD reference implementation. No weight decay.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    f, w, xs, ys = _prepare(model, x, y, w)
    n = int(ys.shape[0])
    out = torch.zeros_like(w)
    if n == 0:
        return out

    def batch_loss(w_: Tensor, xb: Tensor, yb: Tensor) -> Tensor:
        logits = functional_call(f.model, {**f.fixed, **f.unflatten(w_)}, (xb,))
        return F.cross_entropy(logits, yb)

    n_batches = 0
    for lo in range(0, n, batch_size):
        g = grad(batch_loss)(w, xs[lo : lo + batch_size], ys[lo : lo + batch_size]).detach()
        out += g.square()
        n_batches += 1
    _count(counter, n)
    return out / n_batches
