"""``influence`` (IU): one influence-function step that removes the request's samples.

Koh & Liang 2017 ("Understanding Black-box Predictions via Influence Functions", ICML); Izzo et al. 2021
("Approximate Data Deletion from Machine Learning Models", AISTATS); the WoodFisher variant (Singh &
Alistarh 2020) is the "IU" baseline of Jia et al. 2023 ("Model Sparsity Can Simplify Machine Unlearning",
NeurIPS; github.com/OPTML-Group/Unlearn-Sparse, ``Wfisher``).

Normalisation (mean losses, as trained): for a set S, L_S(w) = (1/|S|) Σ_{i∈S} ℓ_i(w) + (wd/2)‖w‖²
(ℓ_i: cross-entropy, wd: the recipe's weight decay). With D_r = ``request.retain``, the update is one
(damped) Newton step on the retain objective at the *current* weights::

    w⁺ = w − s·(H_r + λI)⁻¹ ∇L_r(w),        H_r = ∇²L_r(w) (includes wd·I),

s = ``scale`` (1: the Newton step), λ = ``damping``. If w minimises the objective of D' = D_r ∪ D_e
(D_e = ``request.forget``, n_e, n_r, n = n_e + n_r), ∇L_{D'}(w) = 0 gives ∇L_r(w) = (n_e/n)(∇L_r − ∇L_e)(w)
= −(n_e/n_r)∇L_e(w) (the wd terms cancel), so the step is the influence-function removal
w + (n_e/n_r) H_r⁻¹ ∇L_e(w) of Koh & Liang and Izzo et al. ("Approximate Data Deletion", the Newton form
with the retain Hessian); its error to the retain optimum is second order in the step. Using the full
retain gradient instead of the difference (n_e/n)(∇L_e − ∇L_r) keeps the residual gradient of w, so a
model that is not exactly at an optimum (a previous request's approximate update, unconverged training)
is corrected too and sequential requests do not accumulate error (tests/unit/test_baselines_curvature.py
checks the one-step formula and the convergence of repeated requests on L2-regularised softmax regression).
The difference form of Jia et al.'s ``Wfisher`` code (perturbation ``forget_grad − retain_grad``) equals this
only at an exact optimum.

Inverse (``mode``):

* ``"cg"``: conjugate gradients on (H_r + λI) with exact HVPs on the whole retain set (at most
  ``cg_iters`` HVPs, stopping at relative residual ``cg_tol``; truncated when a direction has
  non-positive curvature -- ``ctx.info["negative_curvature"]``). Memory O(d).
* ``"woodfisher"``: H_r ≈ F̂ + wd·I with F̂ = (1/m) Σ_j g_j g_jᵀ the empirical Fisher of m =
  ``fisher_samples`` retain samples drawn without replacement from ``ctx.generator`` (g_j: per-sample
  cross-entropy gradients), inverted exactly by the Woodbury identity with damping wd + λ (memory O(m·d)).
  Jia et al.'s recursion uses N = 1000 samples and an implicit damping of 1 (F̂ + I, rank-one updates),
  with the step scaled by their ``alpha`` (our ``scale``).

Defaults the papers leave to the user: λ = 1e-3 (small against the Hessian's scale on the suites' MLPs;
a damping of λ shrinks the step along directions of curvature μ by μ/(μ + λ), so a large λ cancels most of
it), 50 CG iterations, cg_tol = 1e-6, m = 512 WoodFisher samples (float32: 512·d·4 bytes, 104 MB at d =
50,890). The MLPs' retain Hessians can be indefinite (digits: λ_min ≈ −0.013); CG then stops at the first
direction of non-positive curvature and returns the iterate reached (truncated Newton, Steihaug), flagged in
``ctx.info["negative_curvature"]``; λ = 0.03 makes H_r + λI positive definite there (a grid override).
Counters: 1 gradient pass (|D_r| samples), then one HVP per CG iteration (|D_r| samples each) or m
per-sample gradients (woodfisher).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.core.space import Choice, Float, Int
from benchmark.curvature import (
    flat_params,
    gradient,
    inverse_hvp,
    load_flat_params_,
    make_loss_fn,
    per_sample_grads,
    woodbury_solve,
)
from benchmark.unlearners.base import Context, Request, Unlearner, register_unlearner

MODES = ("cg", "woodfisher")


@register_unlearner("influence")
class Influence(Unlearner):
    # searched: the damping λ on a log scale (the papers leave it to the user); the inverse's mode, CG
    # budget and tolerance and the WoodFisher sample count are accuracy / cost settings
    space = {
        "mode": Choice(options=MODES, doc="inverse: conjugate gradients or WoodFisher"),
        "damping": Float(low=0.0, search=(1e-4, 1e-1), log=True, doc="damping λ of (H_r + λI)⁻¹"),
        "scale": Float(low=0.0, doc="step scale s (1: the Newton step)"),
        "cg_iters": Int(low=1, doc="CG iteration cap (HVPs)"),
        "cg_tol": Float(low=0.0, doc="CG relative residual tolerance"),
        "fisher_samples": Int(low=1, doc="retain samples of the WoodFisher estimate"),
    }
    params = {
        "mode": ["cg", "woodfisher"],
        "damping": [1e-3],
        "scale": [1.0],
        "cg_iters": [50],
        "cg_tol": [1e-6],
        "fisher_samples": [512],
    }
    test_params = {"cg_iters": 3, "fisher_samples": 16}

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        mode, damping = self.hparams["mode"], self.hparams["damping"]
        model.eval()
        n_e, n_r = len(request.forget), len(request.retain)
        if n_e == 0 or n_r == 0:
            ctx.info["step_norm"] = 0.0
            return model
        wd = ctx.recipe.weight_decay
        w = flat_params(model)
        loss_r = make_loss_fn(model, request.retain.x, request.retain.y, wd)
        v = -gradient(loss_r, w, ctx.counters)  # the Newton step solves (H_r + λI) step = −∇L_r(w)

        if mode == "cg":
            res = inverse_hvp(
                loss_r,
                w,
                v,
                damping=damping,
                max_iters=self.hparams["cg_iters"],
                rtol=self.hparams["cg_tol"],
                counter=ctx.counters,
            )
            step = res.x
            ctx.info.update(
                cg_iters=res.iters,
                cg_rel_residual=res.rel_residual,
                negative_curvature=res.negative_curvature,
            )
        else:
            m = min(self.hparams["fisher_samples"], n_r)
            idx = torch.randperm(n_r, generator=ctx.generator(request.step))[:m]
            G = torch.cat(
                list(
                    per_sample_grads(
                        model, request.retain.x[idx], request.retain.y[idx], w=w, counter=ctx.counters
                    )
                )
            )
            step = woodbury_solve(G, v, wd + damping)
            del G

        step = self.hparams["scale"] * step
        ctx.info["step_norm"] = float(step.norm())
        if not bool(torch.isfinite(step).all()):
            ctx.info["diverged"] = True
            return model
        load_flat_params_(model, w + step.to(w.dtype))
        model.eval()
        return model
