"""``ssd``: Selective Synaptic Dampening, shrink the parameters that matter more to the forget set.

Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through Selective Synaptic
Dampening" (AAAI 2024; github.com/if-loops/selective-synaptic-dampening, ``ssd.ParameterPerturber``).
With diagonal importances []_D of the training data and []_Df of the forget set, every parameter θ_i with

    []_Df,i > α·[]_D,i        is multiplied by    β_i = min(λ·[]_D,i / []_Df,i, 1)

and all others are left unchanged (exponent 1 and upper bound 1 as in the released code; no retraining).
α = ``alpha`` (selection, paper and code: 10), λ = ``lambda`` (dampening, paper and code: 1).

Importances (``importance``):

* ``"fisher"`` (default): the diagonal empirical Fisher the paper writes, (1/n) Σ_i (∇ℓ_i)², from per-sample
  gradients, on D_r(k) ∪ D_e(k) (``batch_size``, ``order`` and ``full_data`` apply to ``"batch"`` only).
  Caveat: []_D then contains D_e with weight n_e/n, so []_Df ≤ (n/n_e)·[]_D and nothing is
  ever selected once n_e/n ≥ 1/α (e.g. a whole class of a 10-class set at α = 10; the tuned range of α
  starts at 1);
* ``"batch"`` (the released code's ``calc_importance``): the mean over minibatches of the squared
  minibatch-mean cross-entropy gradient, batches of ``batch_size`` = 64 samples (the release's full-class
  loaders; ``None``: the recipe's batch size) taken in order, retain samples first then the forget samples
  (their ``ConcatDataset``), eval mode, no weight decay. It escapes the Fisher's cap because the coherent
  gradients of a forget batch do not average out.

Deviation (default ``"fisher"``, not the release's ``"batch"``): the minibatch estimate is not a stable
function of the data, so no tuning on held-out data can set α for it. Its []_D is a mean over a partition
into batches of 64 and a 7-example forget batch is one squared mean; removing the 10 % validation split
(the tuning models' training set T) moves every batch boundary. Measured on ``digits-mlp`` ``memorized``
(``python scripts/tuning_transfer.py ... --with-validation``, α = 96.7, λ = 0.12, the ``"batch"`` selection
on three tuning seeds): tuning model 100 and its first tuning forget set lose 0.000 of retain accuracy with
[]_D on T and 0.113 with []_D on T plus the validation split; the selection lost ≤ 0.001 on the 15 tuning
requests and left the evaluation models at 0.83–0.99 (mean 0.920) after 5 requests. The per-sample Fisher
is a sum over examples, so 10 % fewer of them changes it by little: at the same α, λ it lost ≤ 0.004 on
tuning (≤ 0.001 on T + V) and kept 0.991–0.997 on evaluation.

Release defaults of ``"batch"`` (full-class: ``forget_full_class_main.py``, ``-b 64``, ``selection_weighting``
10, ``dampening_constant`` 1): batches of 64, []_D over ``full_train_dl`` = ConcatDataset(D_r, D_f) unshuffled
with D_r built class by class (``order="class_sorted"``), on the whole training set D
(``full_data="original"``: in a sequential protocol the retain set plus every sample deleted so far, this
request's last). With class-pure batches a weight that serves only one of C classes has []_D ≈ []_Df / C, so
at α = 10 on a 10-class set class-specific weights sit at the selection boundary (the release's CIFAR-20/100
have C ≥ 20): few weights are selected and a deleted class is forgotten only partly.
The previous defaults (``order="given"``, ``full_data="current"``, batch 128, ``match_batch``) remain
options.
Data (``full_data="current"``): []_Df on this request's samples D_e(k) (``request.forget``); []_D on
D_r(k) ∪ D_e(k), i.e. the
data the incoming model still represents (at request 1 the full training set, as in the paper; samples of
earlier requests were dampened already and are not re-counted). With ``"fisher"`` []_D is the
size-weighted mean (n_r·F_r + n_e·F_e)/(n_r + n_e), so D_e's gradients are computed once.
Deviation (``match_batch``, an option, off by default): both importances use minibatches of
min(``batch_size``, n_e).
The squared mean gradient of a batch of b samples carries a noise floor ≈ σ²/b; the release's forget sets
span several full batches of 128 (1% of CIFAR = 500 samples), so both importances have the same floor and
α compares signal. A 1% request of the suites' datasets has 14–40 samples: with a 128-sample full batch the
forget importance sits ~128/n_e above the full one from noise alone, i.e. at α = 10 the rule selects noise
(measured: digits retain accuracy fell to 0.64 over five 1% requests). ``match_batch=False`` is the release.
Counters: n_r + n_e per-sample gradients ("fisher"), n_r + 2·n_e samples ("batch"; ``full_data="original"``
adds the earlier requests' samples).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.core.space import Bool, Choice, Float, Int
from benchmark.curvature import fisher_diag, flat_params, load_flat_params_, minibatch_importance
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner

IMPORTANCES = ("fisher", "batch")


def ssd_factors(imp_full: Tensor, imp_forget: Tensor, alpha: float, lam: float) -> tuple[Tensor, Tensor]:
    """Multipliers β (1 where not selected) and the selection mask of SSD's dampening rule."""
    selected = imp_forget > alpha * imp_full
    safe = torch.where(selected, imp_forget, torch.ones_like(imp_forget))
    beta = torch.where(selected, (lam * imp_full / safe).clamp(max=1.0), torch.ones_like(imp_full))
    return beta, selected


ORDERS = ("given", "class_sorted")
FULL_DATA = ("current", "original")


def full_data(request: Request, which: str, order: str) -> tuple[Tensor, Tensor]:
    """The samples of []_D in the order of its minibatches: the retain part, then this request's forget set.

    ``which``: ``"current"`` D_r(k) ∪ D_e(k); ``"original"`` the whole training set D = D_r(k) ∪ D_e(1..k)
    (``request.forget_all``). ``order``: ``"given"`` index order; ``"class_sorted"`` the retain part
    stably sorted by label, as the release's full-class loaders (``build_retain_forget_sets`` builds
    D_r class by class; ``full_train_dl`` = ConcatDataset(D_r, D_f), not shuffled)."""
    if which not in FULL_DATA or order not in ORDERS:
        raise ValueError(f"ssd: full_data in {FULL_DATA}, order in {ORDERS}")
    extra = request.forget if which == "current" else request.forget_all
    keep = ~torch.isin(extra.indices, request.forget.indices)  # forget_all minus this request (appended last)
    xr, yr = torch.cat([request.retain.x, extra.x[keep]]), torch.cat([request.retain.y, extra.y[keep]])
    if order == "class_sorted":
        perm = torch.sort(yr, stable=True).indices
        xr, yr = xr[perm], yr[perm]
    return torch.cat([xr, request.forget.x]), torch.cat([yr, request.forget.y])


@register_unlearner("ssd")
class SelectiveSynapticDampening(Unlearner):
    # searched: the selection weighting α and the dampening constant λ, the method's two hyperparameters,
    # on log scales around the paper's α = 10, λ = 1; the importance estimate and its data are the variant
    # (default: the paper's per-sample Fisher; the module docstring says why not the release's minibatches)
    space = {
        "alpha": Float(low=0.0, low_open=True, search=(1.0, 100.0), log=True, doc="selection weighting α"),
        "lambda": Float(low=0.0, low_open=True, search=(0.1, 10.0), log=True, doc="dampening constant λ"),
        "importance": Choice(options=IMPORTANCES, doc="squared minibatch gradients or per-sample Fisher"),
        "batch_size": Int(low=1, none_ok=True, doc="importance minibatch (None: the recipe's)"),
        "match_batch": Bool(doc="cap both importances' batches at n_e"),
        "order": Choice(options=ORDERS, doc="order of []_D's retain part"),
        "full_data": Choice(options=FULL_DATA, doc="[]_D on the current or the original training set"),
    }
    params = {
        "alpha": [10.0],
        "lambda": [1.0],
        "importance": ["fisher"],
        "batch_size": [64],
        "match_batch": [False],
        "order": ["class_sorted"],
        "full_data": ["original"],
    }
    test_params = {}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        kind = self.hparams["importance"]
        model.eval()
        n_e, n_r = len(request.forget), len(request.retain)
        if n_e == 0:
            ctx.info["n_selected"] = 0
            return model
        w = flat_params(model)
        forget, retain = request.forget, request.retain
        if kind == "fisher":
            imp_forget = fisher_diag(model, forget.x, forget.y, w=w, counter=ctx.counters)
            imp_retain = fisher_diag(model, retain.x, retain.y, w=w, counter=ctx.counters)
            imp_full = (n_r * imp_retain + n_e * imp_forget) / (n_r + n_e)
        else:
            bs = self.hparams["batch_size"] or ctx.recipe.batch_size
            if self.hparams["match_batch"]:
                bs = min(bs, n_e)
            ctx.info["importance_batch"] = bs
            imp_forget = minibatch_importance(model, forget.x, forget.y, bs, w=w, counter=ctx.counters)
            x_full, y_full = full_data(request, self.hparams["full_data"], self.hparams["order"])
            imp_full = minibatch_importance(model, x_full, y_full, bs, w=w, counter=ctx.counters)
        beta, selected = ssd_factors(imp_full, imp_forget, self.hparams["alpha"], self.hparams["lambda"])
        ctx.info.update(
            n_selected=int(selected.sum()),
            mean_factor_selected=float(beta[selected].mean()) if bool(selected.any()) else 1.0,
        )
        load_flat_params_(model, w * beta.to(w.dtype))
        model.eval()
        return model
