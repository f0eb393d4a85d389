"""Second-order plumbing on :mod:`torch.func`: flat parameters, the retain loss, gradients, HVPs, Hessians.

Everything here works on the *flat* vector ``w`` of a model's trainable parameters (concatenated in
``model.parameters()`` order). :func:`make_loss_fn` turns a classifier and a data set into the function

    f(w) = (1/n) Σ_i CE(model(x_i; w), y_i) + (λ/2)·‖w‖²,           λ = weight_decay,

evaluated with :func:`torch.func.functional_call`, so that the usual transforms apply:

* gradient            ∇f(w)                      -- :func:`torch.func.grad`
* HVP, ``"rev_rev"``  Hv = (∂/∂w ⟨∇f(w), v⟩)    -- :func:`torch.func.vjp` of ``grad`` (reverse over reverse)
* HVP, ``"fwd_rev"``  Hv = d/dt ∇f(w + t v)|₀   -- :func:`torch.func.jvp` of ``grad`` (forward over reverse)
* Hessian             H = [H e_1, …, H e_d], symmetrised as (H + Hᵀ)/2, with the HVP vmapped over
  batches of ``rows_per_batch`` basis vectors (memory O(rows_per_batch · activations)).

``chunk_size`` (:func:`make_loss_fn`) always counts samples: the loss and its derivatives are summed
over chunks of that many samples.

Both HVP modes are exact (no finite differences). These are the quantities of the cubic-regularised
Newton step of Bui et al. 2024 ("On Newton's Method to Unlearn Neural Networks", arXiv 2406.14507),
whose subproblem is solved in :mod:`benchmark.curvature.cubic`.

**Curvature is evaluated in eval mode.** The loss uses a snapshot of the model's buffers (BatchNorm
running statistics) and frozen parameters taken when :func:`make_loss_fn` is called, and calls the
module in whatever mode it is in; the caller must put the model in ``eval()`` mode (a warning is issued
otherwise when the model contains BatchNorm or Dropout), otherwise BatchNorm would use batch statistics
and try to update its buffers inside the functional transforms, and Dropout would make the loss random.

Precision: if ``w`` has another floating dtype than the model (typically float64 ``w`` for a float32
model) the parameters, buffers and inputs are cast to ``w.dtype``, so that brute-force float64 checks
are possible on a float32 model.

Work counters: the functions take an optional ``counter`` (``benchmark.unlearners.base.Counters``, or
anything with integer attributes ``grad_samples``, ``hvps``, ``hvp_samples``, ``hessians``; ``fwd_samples``
where loss values are counted). With ``n = loss_fn.n_samples``: a gradient adds ``n`` to ``grad_samples``
(its loss value comes with it, :func:`value_and_gradient`); a loss value alone (:func:`loss_value`, a
forward pass) adds ``n`` to ``fwd_samples``; an HVP adds 1 to ``hvps`` and
``n`` to ``hvp_samples``; an explicit ``d × d`` Hessian adds 1 to ``hessians``, ``d`` to ``hvps`` and
``d·n`` to ``hvp_samples``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, jvp, vjp, vmap

from benchmark.core.types import WorkCounter

__all__ = [
    "FlatLoss",
    "ParamLayout",
    "HVP_MODES",
    "flat_params",
    "gradient",
    "hessian",
    "hvp",
    "load_flat_params_",
    "loss_value",
    "make_hvp",
    "make_loss_fn",
    "make_subsampled_loss_fn",
    "num_params",
    "value_and_gradient",
]

HVP_MODES = ("rev_rev", "fwd_rev")

LossFn = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------------------------------
# flat parameters


def _trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def flat_params(model: nn.Module) -> Tensor:
    """Detached concatenation of the trainable parameters, in ``model.parameters()`` order."""
    params = [p.detach().reshape(-1) for _, p in _trainable(model)]
    if not params:
        return torch.zeros(0)
    return torch.cat(params)


@torch.no_grad()
def load_flat_params_(model: nn.Module, flat: Tensor) -> nn.Module:
    """Copy ``flat`` (as produced by :func:`flat_params`) back into the trainable parameters, in place."""
    params = _trainable(model)
    total = sum(p.numel() for _, p in params)
    flat = flat.detach().reshape(-1)
    if flat.numel() != total:
        raise ValueError(
            f"flat vector has {flat.numel()} entries, the model has {total} trainable parameters"
        )
    offset = 0
    for _, p in params:
        k = p.numel()
        p.copy_(flat[offset : offset + k].view_as(p))
        offset += k
    return model


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters (the length of :func:`flat_params`)."""
    return sum(p.numel() for _, p in _trainable(model))


# ----------------------------------------------------------------------------------------------------
# the loss


def _inside_transform() -> bool:
    peek = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", None)
    return True if peek is None else peek() is not None


_STOCHASTIC_OR_STATEFUL = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd, nn.Dropout)


class ParamLayout:
    """How a flat vector ``w`` maps onto a model's trainable parameters (``model.parameters()`` order)."""

    def __init__(self, model: nn.Module) -> None:
        params = _trainable(model)
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.model = model
        self.names = [n for n, _ in params]
        self.shapes = [p.shape for _, p in params]
        self.numels = [p.numel() for _, p in params]
        self.dim = sum(self.numels)
        self.param_dtype = params[0][1].dtype

    def unflatten(self, w: Tensor) -> dict[str, Tensor]:
        """Split ``w`` into a name -> tensor dict of the model's trainable parameters (views of ``w``)."""
        if w.shape[-1] != self.dim:
            raise ValueError(f"w has {w.shape[-1]} entries, expected {self.dim}")
        return {
            n: t.view(s) for n, t, s in zip(self.names, torch.split(w, self.numels), self.shapes, strict=True)
        }


class FlatLoss(ParamLayout):
    """``w ↦ mean CE over (x, y) + (weight_decay/2)‖w‖²`` for a flat parameter vector ``w``.

    Built by :func:`make_loss_fn`. Attributes: ``n_samples`` (how many samples one evaluation covers),
    ``dim`` (length of ``w``), ``weight_decay``, ``chunk_size``. :meth:`parts` splits the loss into
    per-chunk terms whose sum is the loss; the functions of this module evaluate derivatives part by
    part so that memory is bounded by one chunk of samples.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        weight_decay: float = 0.0,
        chunk_size: int | None = None,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples and y has {y.shape[0]}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be a positive integer or None")
        if model.training and any(isinstance(m, _STOCHASTIC_OR_STATEFUL) for m in model.modules()):
            warnings.warn(
                "make_loss_fn: the model is in training mode and contains BatchNorm/Dropout; curvature "
                "is meant to be evaluated in eval mode (call model.eval() first)",
                UserWarning,
                stacklevel=3,
            )
        super().__init__(model)
        self.weight_decay = float(weight_decay)
        self.n_samples = int(y.shape[0])
        self.chunk_size = chunk_size
        # snapshots: later in-place changes of the model (e.g. BatchNorm updates) do not affect the loss
        self._frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
        self._buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self._x = x.detach()
        self._y = y.detach().long()
        self._cache: dict[torch.dtype, tuple[dict[str, Tensor], Tensor]] = {}
        self.prepare(self.param_dtype)

    # -- data / constants in the dtype of w (cached) ---------------------------------------------------
    def prepare(self, dtype: torch.dtype) -> None:
        """Cast and cache buffers, frozen parameters and inputs for ``w`` of ``dtype``.

        Must run outside torch.func transforms (tensors made inside one must not outlive it); the
        functions of this module call it before transforming. Inside a transform, an uncached dtype is
        cast on every call instead.
        """
        if dtype not in self._cache:
            self._cache[dtype] = self._cast(dtype)

    def _cast(self, dtype: torch.dtype) -> tuple[dict[str, Tensor], Tensor]:
        def cast(t: Tensor) -> Tensor:
            return t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t

        fixed = {n: cast(t) for n, t in {**self._frozen, **self._buffers}.items()}
        return fixed, cast(self._x)

    def _constants(self, dtype: torch.dtype) -> tuple[dict[str, Tensor], Tensor]:
        if dtype in self._cache:
            return self._cache[dtype]
        if _inside_transform():
            return self._cast(dtype)
        self.prepare(dtype)
        return self._cache[dtype]

    def _term(self, w: Tensor, i: int, with_decay: bool) -> Tensor:
        fixed, x = self._constants(w.dtype)
        y = self._y
        size = self.chunk_size
        if size is not None and self.n_chunks > 1:
            lo = i * size
            x, y = x[lo : lo + size], y[lo : lo + size]
        logits = functional_call(self.model, {**fixed, **self.unflatten(w)}, (x,))
        loss = F.cross_entropy(logits, y, reduction="sum") / max(self.n_samples, 1)
        if with_decay and self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * (w * w).sum()
        return loss

    @property
    def n_chunks(self) -> int:
        if not self.chunk_size or self.n_samples == 0:
            return 1
        return -(-self.n_samples // self.chunk_size)

    def parts(self) -> list[LossFn]:
        """Functions whose sum is the loss: one per chunk of samples (weight decay in the first)."""
        return [self._part(i) for i in range(self.n_chunks)]

    def _part(self, i: int) -> LossFn:
        return lambda w: self._term(w, i, i == 0)

    def __call__(self, w: Tensor) -> Tensor:
        total = self._term(w, 0, True)
        for i in range(1, self.n_chunks):
            total = total + self._term(w, i, False)
        return total

    def __repr__(self) -> str:
        return (
            f"FlatLoss(n_samples={self.n_samples}, dim={self.dim}, weight_decay={self.weight_decay}, "
            f"chunk_size={self.chunk_size})"
        )


def make_loss_fn(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    weight_decay: float = 0.0,
    chunk_size: int | None = None,
) -> FlatLoss:
    """The retain loss as a function of the flat trainable parameters.

    Returns ``f`` with ``f(w) = mean_i CE(model(x_i; w), y_i) + (weight_decay/2)·‖w‖²`` (a 0-d tensor
    of ``w.dtype``), computed with :func:`torch.func.functional_call` and the model's buffers; works for
    any ``nn.Module`` classifier returning logits of shape ``(N, C)``. Put the model in eval mode first:
    curvature is evaluated in eval mode (BatchNorm uses its running statistics).

    ``w`` may have the dtype of the model's parameters or another floating dtype (e.g. float64 for a
    float32 model); in the latter case parameters, buffers and inputs are cast to ``w.dtype``.
    ``chunk_size`` splits the samples into chunks; :func:`gradient`, :func:`hvp`, :func:`make_hvp`
    and :func:`hessian` then process one chunk at a time (bounded memory, same result).
    ``f.n_samples`` is the number of samples (used by the work counters).
    """
    return FlatLoss(model, x, y, weight_decay=weight_decay, chunk_size=chunk_size)


def make_subsampled_loss_fn(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    size: int | None,
    generator: torch.Generator,
    weight_decay: float = 0.0,
    chunk_size: int | None = None,
) -> FlatLoss:
    """:func:`make_loss_fn` on ``size`` samples drawn uniformly without replacement
    (``torch.randperm(n, generator=generator)[:size]``), or on all n samples when ``size`` is None or ≥ n
    (then nothing is drawn from ``generator``)."""
    n = int(y.shape[0])
    if size is not None and size < n:
        idx = torch.randperm(n, generator=generator)[:size].to(x.device)
        x, y = x[idx], y[idx]
    return make_loss_fn(model, x, y, weight_decay=weight_decay, chunk_size=chunk_size)


# ----------------------------------------------------------------------------------------------------
# derivatives


def _parts(loss_fn: LossFn, w: Tensor) -> Sequence[LossFn]:
    if isinstance(loss_fn, FlatLoss):
        loss_fn.prepare(w.dtype)
        return loss_fn.parts()
    return [loss_fn]


def _n_samples(loss_fn: Any) -> int:
    return int(getattr(loss_fn, "n_samples", 0))


def _check_mode(mode: str) -> None:
    if mode not in HVP_MODES:
        raise ValueError(f"unknown HVP mode {mode!r}; expected one of {HVP_MODES}")


def gradient(loss_fn: LossFn, w: Tensor, counter: WorkCounter | None = None) -> Tensor:
    """∇f(w) (detached, dtype of ``w``). Adds ``loss_fn.n_samples`` to ``counter.grad_samples``."""
    return value_and_gradient(loss_fn, w, counter)[1]


def value_and_gradient(
    loss_fn: LossFn, w: Tensor, counter: WorkCounter | None = None
) -> tuple[float, Tensor]:
    """(f(w), ∇f(w)) from one forward+backward pass per chunk (:func:`torch.func.grad_and_value`).

    The gradient is detached, in the dtype of ``w``; the value is summed over chunks in float64. Adds
    ``loss_fn.n_samples`` to ``counter.grad_samples`` (the value is a by-product of the gradient pass).
    """
    w = w.detach()
    first, *rest = _parts(loss_fn, w)
    g, value = grad_and_value(first)(w)
    value = value.detach().double()
    for part in rest:
        gi, vi = grad_and_value(part)(w)
        g = g + gi
        value = value + vi.detach().double()
    if counter is not None:
        counter.grad_samples += _n_samples(loss_fn)
    return float(value), g.detach()


@torch.no_grad()
def loss_value(
    loss_fn: LossFn, w: Tensor, counter: WorkCounter | None = None, dtype: torch.dtype | None = None
) -> float:
    """f(w) from a forward pass only (at ``w`` cast to ``dtype`` when given); adds ``loss_fn.n_samples``
    to ``counter.fwd_samples``."""
    w = w.detach() if dtype is None else w.detach().to(dtype)
    value = 0.0
    for part in _parts(loss_fn, w):
        value += float(part(w))
    if counter is not None and hasattr(counter, "fwd_samples"):
        counter.fwd_samples += _n_samples(loss_fn)
    return value


def _fwd_rev(part: LossFn, w: Tensor, v: Tensor) -> Tensor:
    with warnings.catch_warnings():
        # torch's jvp decompositions are registered through torch.jit.script on first use (FutureWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
        return jvp(grad(part), (w,), (v,))[1]


def _hvp_one(part: LossFn, w: Tensor, v: Tensor, mode: str) -> Tensor:
    if mode == "rev_rev":
        vjp_fn = vjp(grad(part), w)[1]
        return vjp_fn(v)[0]
    return _fwd_rev(part, w, v)


def hvp(
    loss_fn: LossFn, w: Tensor, v: Tensor, counter: WorkCounter | None = None, mode: str = "rev_rev"
) -> Tensor:
    """Exact Hessian-vector product ∇²f(w)·v.

    ``mode="rev_rev"``: vjp of the gradient (reverse over reverse); ``mode="fwd_rev"``: jvp of the
    gradient (forward over reverse). Adds 1 to ``counter.hvps`` and ``n_samples`` to ``hvp_samples``.
    """
    _check_mode(mode)
    w = w.detach()
    v = v.detach().to(w.dtype)
    first, *rest = _parts(loss_fn, w)
    out = _hvp_one(first, w, v, mode)
    for part in rest:
        out = out + _hvp_one(part, w, v, mode)
    if counter is not None:
        counter.hvps += 1
        counter.hvp_samples += _n_samples(loss_fn)
    return out.detach()


def _linearise(part: LossFn, w: Tensor, mode: str) -> Callable[[Tensor], Tensor]:
    if mode == "rev_rev":
        vjp_fn = vjp(grad(part), w)[1]  # keeps the graph of ∇f at w; each call is one backward pass
        return lambda v: vjp_fn(v)[0]
    return lambda v: _fwd_rev(part, w, v)


def make_hvp(
    loss_fn: LossFn, w: Tensor, mode: str = "rev_rev", counter: WorkCounter | None = None
) -> Callable[[Tensor], Tensor]:
    """``v ↦ ∇²f(w)·v`` for a fixed ``w``, linearised once where possible.

    With ``mode="rev_rev"`` and an unchunked loss the gradient graph at ``w`` is built once
    (:func:`torch.func.vjp` of ``grad``) and each product is a single backward pass through it
    (usually the fastest). With a chunked loss (``chunk_size``) nothing is kept and every product
    recomputes chunk by chunk (bounded memory); ``"fwd_rev"`` always recomputes (one forward-over-
    reverse pass per product; :func:`torch.func.linearize` would trace once, but its ~1 s tracing cost
    is not repaid over the few products an unlearning step needs). The returned function supports
    :func:`torch.func.vmap` over ``v`` and counts each call in ``counter`` like :func:`hvp`.
    """
    _check_mode(mode)
    w = w.detach()
    parts = _parts(loss_fn, w)
    n = _n_samples(loss_fn)
    if len(parts) == 1:
        lin = _linearise(parts[0], w, mode)

        def apply(v: Tensor) -> Tensor:
            return lin(v.to(w.dtype))
    else:

        def apply(v: Tensor) -> Tensor:
            v = v.to(w.dtype)
            out = _hvp_one(parts[0], w, v, mode)
            for part in parts[1:]:
                out = out + _hvp_one(part, w, v, mode)
            return out

    def hvp_fn(v: Tensor) -> Tensor:
        out = apply(v.detach())
        if counter is not None:
            counter.hvps += 1
            counter.hvp_samples += n
        return out.detach()

    return hvp_fn


def hessian(
    loss_fn: LossFn,
    w: Tensor,
    rows_per_batch: int = 256,
    counter: WorkCounter | None = None,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Explicit ``d × d`` Hessian ∇²f(w), symmetrised as (H + Hᵀ)/2.

    Rows are HVPs with the basis vectors e_i (reverse over reverse, linearised once per chunk of
    samples), :func:`torch.func.vmap`-ed over ``rows_per_batch`` basis vectors at a time to bound memory.
    Counts ``hessians += 1``, ``hvps += d`` and ``hvp_samples += d·n_samples``.

    ``chunk_size`` is the deprecated name of ``rows_per_batch`` (a :class:`DeprecationWarning`):
    everywhere else in this module ``chunk_size`` counts samples (:func:`make_loss_fn`).
    """
    if chunk_size is not None:
        warnings.warn(
            "hessian(chunk_size=...) is deprecated; it counts basis vectors, use rows_per_batch=...",
            DeprecationWarning,
            stacklevel=2,
        )
        rows_per_batch = chunk_size
    if rows_per_batch < 1:
        raise ValueError("rows_per_batch must be positive")
    w = w.detach()
    d = w.numel()
    H = torch.zeros(d, d, dtype=w.dtype, device=w.device)
    for part in _parts(loss_fn, w):
        lin = _linearise(part, w, "rev_rev")
        batched = vmap(lin)
        for start in range(0, d, rows_per_batch):
            stop = min(start + rows_per_batch, d)
            basis = torch.zeros(stop - start, d, dtype=w.dtype, device=w.device)
            basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            H[start:stop] += batched(basis).detach()
        del lin, batched
    H = 0.5 * (H + H.T)
    if counter is not None:
        counter.hessians += 1
        counter.hvps += d
        counter.hvp_samples += d * _n_samples(loss_fn)
    return H
