"""One result row's metrics: a model judged against the gold model of its (protocol, seed, step).

Definitions of every column are in :mod:`benchmark.runner.evaluate` (the stage) and one line each in
:class:`benchmark.core.results.ResultRow`. Here: the model's predictions (:class:`Preds`), its split
(:class:`Split`), accuracies, membership inference, the comparison with its own gold model and with the
admissible gold models of the population (:func:`judge`; the references themselves are built by
:class:`~benchmark.runner.gold_reference.GoldReference`), and relearn time (:func:`relearn`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from benchmark.metrics import (
    LIRA_Z_95,
    accuracy_from_probs,
    js_divergence,
    kl_divergence,
    lira_z_scores,
    logit_confidence,
    loss_threshold_attack,
    per_example_loss,
    population_divergence,
    predict_proba,
    reference_ratio,
    relearn_time,
    svc_mia_efficacy,
    tow,
    true_class_prob,
)

if TYPE_CHECKING:
    from benchmark.runner.cells import Cell
    from benchmark.runner.gold_reference import GoldReference


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of the evaluation (defaults: the documented benchmark settings)."""

    mia_max_per_side: int = 500  # SVC attack: at most this many retain and test examples each
    lira_min_gold: int = 3  # LiRA needs at least this many gold seeds
    relearn: bool = True
    relearn_max_steps: int = 100
    relearn_batch_size: int = 32
    relearn_eval_size: int = 512  # forget examples on which relearn accuracy is checked


@dataclass
class Preds:
    """A model's class probabilities on the whole training and test sets, and its flat weights."""

    train: torch.Tensor  # (n_train, C)
    test: torch.Tensor  # (n_test, C)
    w: torch.Tensor  # flat float64 weights


@dataclass
class Split:
    """The forget / retain split of one (protocol, seed, step) and the labels its models trained on."""

    forget: np.ndarray  # indices of requests 1..k
    retain: np.ndarray
    in_forget: np.ndarray  # (n_train,) bool
    class_gone: np.ndarray  # (C,) bool: no retained example of the class
    y: np.ndarray  # (n_train,) the labels the models of this protocol and seed trained on
    y_t: torch.Tensor  # the same, as a tensor
    y_true: np.ndarray | None  # (n_train,) the true labels when ``y`` has flipped ones, else None
    # the flipped samples no request of the protocol deletes (``mislabeled`` with ``identified`` < 1): they
    # stay in every retain set, with their flipped labels
    unidentified: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def weights(model: torch.nn.Module) -> torch.Tensor:
    """All parameters, flattened, in float64."""
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


def predict(model: torch.nn.Module, x_train: torch.Tensor, x_test: torch.Tensor) -> Preds:
    return Preds(predict_proba(model, x_train), predict_proba(model, x_test), weights(model))


def nanmean(x: np.ndarray) -> float:
    """Mean of the finite entries; NaN if none."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _mean(d: torch.Tensor) -> float:
    return float(d.mean()) if d.numel() else math.nan


def accuracies(preds: Preds, sp: Split, y_test: torch.Tensor, y_train_true: torch.Tensor) -> dict[str, float]:
    """Accuracy on F, R, T (trained-on labels), on F's true labels (NaN unless labels were flipped) and on
    the true labels of the flipped samples no request deletes (NaN unless some are left: ``identified`` < 1).
    """
    out = {
        "forget": accuracy_from_probs(preds.train[sp.forget], sp.y_t[sp.forget]),
        "retain": accuracy_from_probs(preds.train[sp.retain], sp.y_t[sp.retain]),
        "test": accuracy_from_probs(preds.test, y_test),
        "forget_true": math.nan,
        "unidentified_true": math.nan,
    }
    if sp.y_true is not None:
        out["forget_true"] = accuracy_from_probs(preds.train[sp.forget], y_train_true[sp.forget])
        if len(sp.unidentified):
            out["unidentified_true"] = accuracy_from_probs(
                preds.train[sp.unidentified], y_train_true[sp.unidentified]
            )
    return out


def mia(
    preds: Preds, sp: Split, y_test: np.ndarray, seed: int, step: int, cfg: EvalConfig
) -> dict[str, float]:
    """Loss-threshold attack (AUC, best balanced accuracy) and SalUn's SVC efficacy on F against T."""
    loss_f = per_example_loss(preds.train[sp.forget], sp.y[sp.forget])
    loss_t = per_example_loss(preds.test, y_test)
    auc, bacc = loss_threshold_attack(loss_f, loss_t)
    conf = true_class_prob(preds.train, sp.y)
    efficacy = svc_mia_efficacy(
        conf[sp.retain],
        true_class_prob(preds.test, y_test),
        conf[sp.forget],
        seed=seed * 1000 + step,  # the same attack training sample for every method of the cell
        max_per_side=cfg.mia_max_per_side,
    )
    return {"mia_loss_auc": auc, "mia_loss_bacc": bacc, "mia_efficacy": efficacy}


def judge(
    ref: GoldReference, cell: Cell, step: int, model: torch.nn.Module, req: dict[str, Any]
) -> dict[str, Any]:
    """The metric columns of one ok request: ``model`` against the gold model of (protocol, seed, step)
    and against the admissible gold models of the population."""
    run, p, s = ref.run, cell.protocol, cell.seed
    preds = ref.predict(model)
    sp = ref.split(p, s, step)
    g = ref.gold(p, s, step)
    acc, gacc = ref.accuracies(preds, sp), g["acc"]
    pf, pt = preds.train[sp.forget], preds.test
    gf, gt = g["preds"].train[sp.forget], g["preds"].test
    dist = float((preds.w - g["preds"].w).norm())
    wall = req.get("wall_s") or float("nan")
    out: dict[str, Any] = {
        "acc_forget": acc["forget"],
        "acc_retain": acc["retain"],
        "acc_test": acc["test"],
        "acc_forget_true": acc["forget_true"],
        "acc_unidentified_true": acc["unidentified_true"],
        "gap_forget": abs(acc["forget"] - gacc["forget"]),
        "gap_retain": abs(acc["retain"] - gacc["retain"]),
        "gap_test": abs(acc["test"] - gacc["test"]),
        "tow": tow(acc["forget"], acc["retain"], acc["test"], gacc["forget"], gacc["retain"], gacc["test"]),
        "js_forget": _mean(js_divergence(pf, gf)),
        "js_test": _mean(js_divergence(pt, gt)),
        "kl_forget": _mean(kl_divergence(pf, gf)),
        "kl_test": _mean(kl_divergence(pt, gt)),
        "dist_to_gold": dist,
        "epochs_equiv": run.params.epochs_equiv(req, run.n_train),
        "speedup": g["meta"]["wall_s"] / wall if wall > 0 else float("nan"),
        **ref.mia(preds, sp, s, step),
    }
    # population of gold models
    pref = ref.reference(p, s, step)
    pop = ref.population(p, step)
    for kind in ("js", "kl"):
        for part, probs, pp, mask in (("forget", pf, pref["p_f"], pref["mask_f"]),
                                      ("test", pt, pref["p_t"], pref["mask_t"])):  # fmt: skip
            d = population_divergence(probs, pp, mask, kind)
            gg = pref[f"{kind}_gg_{part}"]
            out[f"{kind}_{part}_pop"] = nanmean(d)
            out[f"{kind}_gg_{part}"] = nanmean(gg)
            out[f"{kind}_ratio_{part}"] = reference_ratio(d, gg)
    out["gold_pop_forget"] = pref["gold_pop_forget"]
    out["n_gg_forget"] = pref["n_gg_forget"]
    out["dist_gold_gold"] = pop["dist_gg"]
    out["dist_to_gold_rel"] = dist / pop["dist_gg"] if pop["dist_gg"] > 0 else math.nan
    out["gold_mia_loss_auc"] = g["mia"]["mia_loss_auc"]
    out["gold_mia_efficacy"] = g["mia"]["mia_efficacy"]
    if len(ref.seeds) >= ref.cfg.lira_min_gold and len(sp.forget):
        phi_gold, sigma = pref["lira"]
        z = lira_z_scores(logit_confidence(pf, sp.y[sp.forget]), phi_gold, pref["mask_f"], sigma)
        out["lira_z_forget"] = nanmean(z)
        finite = z[np.isfinite(z)]
        out["lira_member_frac"] = float((finite > LIRA_Z_95).mean()) if finite.size else math.nan
    else:
        out["lira_z_forget"] = out["lira_member_frac"] = math.nan
    return out


def relearn(
    ref: GoldReference, model: torch.nn.Module, protocol: str, seed: int, step: int
) -> tuple[int, bool]:
    """Relearn time (Golatkar et al. 2020): fine-tuning steps on F until the accuracy on (a seeded sample
    of) F reaches the original model's, capped at ``relearn_max_steps``."""
    cfg = ref.cfg
    sp = ref.split(protocol, seed, step)
    rng = np.random.default_rng([seed, step])
    idx = sp.forget
    if len(idx) > cfg.relearn_eval_size:
        idx = np.sort(rng.choice(idx, size=cfg.relearn_eval_size, replace=False))
    idx_eval = torch.as_tensor(idx)
    target = accuracy_from_probs(
        predict_proba(ref.original(seed, protocol), ref.x_train[idx_eval]), sp.y_t[idx_eval]
    )
    f = torch.as_tensor(sp.forget)
    return relearn_time(
        model,
        ref.x_train[f],
        sp.y_t[f],
        ref.run.suite.recipe,
        target,
        seed=seed,
        batch_size=cfg.relearn_batch_size,
        max_steps=cfg.relearn_max_steps,
        eval_x=ref.x_train[idx_eval],
        eval_y=sp.y_t[idx_eval],
    )
