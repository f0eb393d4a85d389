"""Stage ``evaluate``: one row per (cell, request k), judged against the gold model of step k.

Every cell is judged the same way, ``original`` included. Per request k (forget set F = requests
1..k of the cell's seed, retain set R = D − F, test set T):

**Against the cell's own gold model** (retrained on R, same seed):
accuracies on F / R / T of both, their gaps, ToW; ``js_*`` / ``kl_*`` = mean JS / KL(unlearned‖gold)
on F and T; ``dist_to_gold`` = ‖w − w_gold‖; the update norm.

**Against the population of gold models** (one per suite seed, same protocol and step). Forget sets
are drawn per seed, so the gold model of another seed s′ is a valid "retrained without x" reference
for an example x only if it is *admissible*: it did not train on x (x ∈ F_{s′}: always true on T)
and the class of x is deleted entirely by both or by neither of the two forget sets. The cell's
own gold model is always admissible.

* ``js_forget_pop`` … ``kl_test_pop``: mean over examples of the mean divergence to the admissible
  gold models (:func:`~benchmark.metrics.population_divergence`);
* ``js_gg_*`` / ``kl_gg_*``: gold-to-gold reference, the mean divergence between two *different*
  admissible gold models, over the examples that have at least two (``n_gg_forget`` of F);
* ``js_ratio_*`` / ``kl_ratio_*``: population divergence / gold-to-gold divergence on those same
  examples (:func:`~benchmark.metrics.reference_ratio`; ≈ 1: as close as another retrain);
* ``gold_pop_forget``: mean number of admissible gold models per forget example;
* ``dist_gold_gold``: mean ‖w_gold(s) − w_gold(s′)‖ over seed pairs; ``dist_to_gold_rel`` =
  ``dist_to_gold / dist_gold_gold`` (models sharing the gold model's initialisation sit well below 1).

**Membership inference** on F (members?) against T (non-members):
``mia_loss_auc`` / ``mia_loss_bacc``: loss-threshold attack (Yeom et al. 2018), AUC and best
balanced accuracy; ``mia_efficacy``: SalUn's SVC attack on true-class confidence trained on R vs T,
fraction of F predicted non-member (higher = more forgotten); ``gold_mia_*``: the same for the gold
model, the value to aim at; ``lira_z_forget``: mean z-score of the unlearned model's logit-scaled
confidence under a Gaussian fitted to the admissible gold models (offline fixed-variance LiRA,
Carlini et al. 2022; variance pooled over test examples of the same class status, else over all; needs
``lira_min_gold`` = 3 gold seeds, else NaN); ``lira_member_frac``: fraction of F with z > 1.645.

**Labels.** Models of a ``mislabeled`` protocol train on flipped labels; every accuracy, loss and
confidence above uses the labels the models were trained on, and ``acc_forget_true`` /
``gold_acc_forget_true`` give the accuracy on the deleted samples' *true* labels (corrective unlearning:
did the damage go?). They are NaN for the other protocols.

Per-example distributional metrics over populations of models (KLoM, the NeurIPS-2023 score) are not
per-cell values: see :mod:`benchmark.runner.population` (``results/<suite>_population.csv``).

**Relearn time** (Golatkar et al. 2020), only at the final request K (cost): ``relearn_steps``
of fine-tuning on F (recipe optimiser and lr, batch 32) until forget accuracy reaches the original
model's, capped at ``relearn_max_steps`` (100; ``relearn_capped`` = 1); ``gold_relearn_steps`` /
``gold_relearn_capped`` for the gold model.

**Cost**: wall/CPU seconds, peak RSS and (when the unlearn stage records it) CUDA peak memory of
the request, gradient passes, HVPs, epoch-equivalents, speedup = gold retrain seconds of the same
step / request seconds.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.metrics import (
    LIRA_Z_95,
    accuracy_from_probs,
    js_divergence,
    kl_divergence,
    lira_z_scores,
    logit_confidence,
    loss_threshold_attack,
    mean_pairwise_distance,
    pairwise_divergence,
    per_example_loss,
    pooled_std,
    population_divergence,
    predict_proba,
    reference_ratio,
    relearn_time,
    svc_mia_efficacy,
    tow,
    true_class_prob,
)
from benchmark.runner.artifacts import load_state, read_json
from benchmark.runner.cells import Cell, cell_dir, cell_key, expand_cells
from benchmark.runner.suite import SuiteRun

COLUMNS = [
    "suite",
    "dataset",
    "model",
    "protocol",
    "method",
    "params_id",
    "selected",
    "tuning_trials",
    "tuning_s",
    "seed",
    "step",
    "status",
    "error",
    "acc_forget",
    "acc_retain",
    "acc_test",
    "gold_acc_forget",
    "gold_acc_retain",
    "gold_acc_test",
    "acc_forget_true",
    "gold_acc_forget_true",
    "gap_forget",
    "gap_retain",
    "gap_test",
    "tow",
    "js_forget",
    "js_test",
    "kl_forget",
    "kl_test",
    "js_forget_pop",
    "js_test_pop",
    "kl_forget_pop",
    "kl_test_pop",
    "js_gg_forget",
    "js_gg_test",
    "kl_gg_forget",
    "kl_gg_test",
    "js_ratio_forget",
    "js_ratio_test",
    "kl_ratio_forget",
    "kl_ratio_test",
    "gold_pop_forget",
    "n_gg_forget",
    "dist_to_gold",
    "dist_gold_gold",
    "dist_to_gold_rel",
    "update_norm",
    "mia_loss_auc",
    "mia_loss_bacc",
    "gold_mia_loss_auc",
    "mia_efficacy",
    "gold_mia_efficacy",
    "lira_z_forget",
    "lira_member_frac",
    "relearn_steps",
    "relearn_capped",
    "gold_relearn_steps",
    "gold_relearn_capped",
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "cuda_peak_mb",
    "gold_wall_s",
    "speedup",
    "grad_samples",
    "fwd_samples",
    "hvps",
    "hessians",
    "epochs_equiv",
    "gold_epochs_equiv",
    "n_forget",
    "n_retain",
    "info",
    "hparams",
    "code_hash",
    "origin",
    "git_rev",
    "packages",
    "hardware",
]


class StaleCellError(RuntimeError):
    """A cell's result was produced by other code or inputs than the current ones."""


class StaleArtifactError(StaleCellError):
    """An original or gold model on disk was made from other inputs (params, data) than the current ones."""


def check_artifact(model_path: Path, key: str, command: str) -> dict[str, Any]:
    """The sidecar JSON of ``model_path`` if it exists and holds ``key``; otherwise a one-line
    :class:`StaleArtifactError` naming the artifact and the command that rebuilds it."""
    meta_path = model_path.with_suffix(".json")
    if not model_path.exists() or not meta_path.exists():
        raise StaleArtifactError(f"{model_path}: missing; build it with `{command}` (or `dvc repro`)")
    meta = read_json(meta_path)
    if meta.get("key") != key:
        raise StaleArtifactError(
            f"{model_path}: stale (made from other params or data than the current ones); "
            f"rebuild it with `{command}` (or `dvc repro`)"
        )
    return meta


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of the evaluation (defaults: the documented benchmark settings)."""

    mia_max_per_side: int = 500  # SVC attack: at most this many retain and test examples each
    lira_min_gold: int = 3  # LiRA needs at least this many gold seeds
    relearn: bool = True
    relearn_max_steps: int = 100
    relearn_batch_size: int = 32
    relearn_eval_size: int = 512  # forget examples on which relearn accuracy is checked


def _weights(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


@dataclass
class _Preds:
    train: torch.Tensor  # (n_train, C) class probabilities on the whole training set
    test: torch.Tensor  # (n_test, C)
    w: torch.Tensor  # flat float64 weights


@dataclass
class _Split:
    forget: np.ndarray  # indices of requests 1..k
    retain: np.ndarray
    in_forget: np.ndarray  # (n_train,) bool
    class_gone: np.ndarray  # (C,) bool: no retained example of the class
    y: np.ndarray  # (n_train,) the labels the models of this protocol and seed trained on
    y_t: torch.Tensor  # the same, as a tensor
    y_true: np.ndarray | None  # (n_train,) the true labels when ``y`` has flipped ones, else None


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


class _Evaluator:
    """Caches (gold predictions per protocol/seed/step, gold populations) shared by all rows."""

    def __init__(self, run: SuiteRun, cfg: EvalConfig) -> None:
        self.run, self.cfg = run, cfg
        snap = run.snapshot
        self.x_train, self.x_test = snap.x_train, snap.x_test
        self.y_train_t, self.y_test_t = snap.y_train.long(), snap.y_test.long()
        self.y_train, self.y_test = self.y_train_t.numpy(), self.y_test_t.numpy()
        self.num_classes = int(snap.num_classes)
        self.seeds = list(run.suite.seeds)

    # --- models and predictions -------------------------------------------------------------------------
    def predict(self, model: torch.nn.Module) -> _Preds:
        return _Preds(predict_proba(model, self.x_train), predict_proba(model, self.x_test), _weights(model))

    @functools.cache  # noqa: B019  (one evaluator per stage invocation)
    def split(self, protocol: str, seed: int, step: int) -> _Split:
        req = self.run.request(protocol, seed, step)
        forget = req.forget_all.indices.numpy().astype(np.int64)
        retain = req.retain.indices.numpy().astype(np.int64)
        in_forget = np.zeros(len(self.y_train), dtype=bool)
        in_forget[forget] = True
        y_t = self.run.train_labels(protocol, seed).long()
        y = y_t.numpy()
        kept = np.bincount(y[retain], minlength=self.num_classes) > 0
        flipped = self.run.corruption(protocol, seed) is not None
        return _Split(forget, retain, in_forget, ~kept, y, y_t, self.y_train if flipped else None)

    def gold_path(self, protocol: str, seed: int, step: int) -> Path:
        return self.run.layout.gold_path(self.run.suite.name, protocol, seed, step)

    def gold_model(self, protocol: str, seed: int, step: int) -> torch.nn.Module:
        return load_state(self.gold_path(protocol, seed, step), self.run.make_model(seed))

    @functools.cache  # noqa: B019
    def gold(self, protocol: str, seed: int, step: int) -> dict[str, Any]:
        path = self.gold_path(protocol, seed, step)
        self.check_original(seed, protocol)
        cmd = f"unlearn-bench gold --suite {self.run.suite.name}"
        meta = check_artifact(path, self.run.gold_key(protocol, seed, step), cmd)
        preds = self.predict(self.gold_model(protocol, seed, step))
        sp = self.split(protocol, seed, step)
        return {
            "preds": preds,
            "acc": self.accuracies(preds, sp),
            "meta": meta,
            "mia": self.mia(preds, sp, seed, step),
        }

    @functools.cache  # noqa: B019
    def check_original(self, seed: int, protocol: str) -> None:
        cmd = f"unlearn-bench train --suite {self.run.suite.name}"
        check_artifact(self.run.original_path(seed, protocol), self.run.original_key(seed, protocol), cmd)

    @functools.cache  # noqa: B019
    def original(self, seed: int, protocol: str) -> torch.nn.Module:
        return load_state(self.run.original_path(seed, protocol), self.run.make_model(seed))

    @functools.cache  # noqa: B019
    def population(self, protocol: str, step: int) -> dict[str, Any]:
        golds = [self.gold(protocol, s, step) for s in self.seeds]
        splits = [self.split(protocol, s, step) for s in self.seeds]
        train = torch.stack([g["preds"].train for g in golds])
        test = torch.stack([g["preds"].test for g in golds])
        return {
            "train": train,
            "test": test,
            "phi_train": np.stack([logit_confidence(p, sp.y) for p, sp in zip(train, splits, strict=True)]),
            "phi_test": np.stack([logit_confidence(p, self.y_test) for p in test]),
            "in_forget": np.stack([sp.in_forget for sp in splits]),
            "class_gone": np.stack([sp.class_gone for sp in splits]),
            "dist_gg": mean_pairwise_distance(torch.stack([g["preds"].w for g in golds])),
        }

    @functools.cache  # noqa: B019
    def reference(self, protocol: str, seed: int, step: int) -> dict[str, Any]:
        """Admissibility masks and the gold-to-gold references for the cell (protocol, seed, step)."""
        pop = self.population(protocol, step)
        sp = self.split(protocol, seed, step)
        i = self.seeds.index(seed)
        gone = pop["class_gone"]  # (M, C)
        yf, yt = sp.y[sp.forget], self.y_test
        mask_f = pop["in_forget"][:, sp.forget] & (gone[:, yf] == gone[i, yf][None, :])
        mask_t = gone[:, yt] == gone[i, yt][None, :]
        p_f, p_t = pop["train"][:, sp.forget], pop["test"]
        ref: dict[str, Any] = {"mask_f": mask_f, "mask_t": mask_t, "p_f": p_f, "p_t": p_t}
        for kind in ("js", "kl"):
            ref[f"{kind}_gg_forget"] = pairwise_divergence(p_f, mask_f, kind)
            ref[f"{kind}_gg_test"] = pairwise_divergence(p_t, mask_t, kind)
        ref["gold_pop_forget"] = float(mask_f.sum(axis=0).mean()) if mask_f.shape[1] else math.nan
        ref["n_gg_forget"] = int((mask_f.sum(axis=0) >= 2).sum())
        # LiRA: per-example OUT Gaussian; variance pooled over test examples of the same class status
        # (deleted by this cell's forget set or not), or over all test examples if none of that
        # status has two admissible gold models (e.g. no other seed deleted that class)
        phi_f = pop["phi_train"][:, sp.forget]
        status_t = gone[i, yt]
        pooled_all = pooled_std(pop["phi_test"], mask_t)
        sigma = {}
        for st in (False, True):
            sigma[st] = pooled_std(pop["phi_test"][:, status_t == st], mask_t[:, status_t == st])
            if not math.isfinite(sigma[st]):
                sigma[st] = pooled_all
        ref["lira"] = (phi_f, np.array([sigma[bool(st)] for st in gone[i, yf]], dtype=float))
        return ref

    # --- metrics of one model ---------------------------------------------------------------------------
    def accuracies(self, preds: _Preds, sp: _Split) -> dict[str, float]:
        out = {
            "forget": accuracy_from_probs(preds.train[sp.forget], sp.y_t[sp.forget]),
            "retain": accuracy_from_probs(preds.train[sp.retain], sp.y_t[sp.retain]),
            "test": accuracy_from_probs(preds.test, self.y_test_t),
            "forget_true": math.nan,
        }
        if sp.y_true is not None:
            out["forget_true"] = accuracy_from_probs(preds.train[sp.forget], self.y_train_t[sp.forget])
        return out

    def mia(self, preds: _Preds, sp: _Split, seed: int, step: int) -> dict[str, float]:
        loss_f = per_example_loss(preds.train[sp.forget], sp.y[sp.forget])
        loss_t = per_example_loss(preds.test, self.y_test)
        auc, bacc = loss_threshold_attack(loss_f, loss_t)
        conf = true_class_prob(preds.train, sp.y)
        efficacy = svc_mia_efficacy(
            conf[sp.retain],
            true_class_prob(preds.test, self.y_test),
            conf[sp.forget],
            seed=seed * 1000 + step,  # the same attack training sample for every method of the cell
            max_per_side=self.cfg.mia_max_per_side,
        )
        return {"mia_loss_auc": auc, "mia_loss_bacc": bacc, "mia_efficacy": efficacy}

    def judge(self, cell: Cell, step: int, model: torch.nn.Module, req: dict[str, Any]) -> dict[str, Any]:
        run, p, s = self.run, cell.protocol, cell.seed
        preds = self.predict(model)
        sp = self.split(p, s, step)
        g = self.gold(p, s, step)
        acc, gacc = self.accuracies(preds, sp), g["acc"]
        pf, pt = preds.train[sp.forget], preds.test
        gf, gt = g["preds"].train[sp.forget], g["preds"].test
        dist = float((preds.w - g["preds"].w).norm())
        wall = req.get("wall_s") or float("nan")
        out: dict[str, Any] = {
            "acc_forget": acc["forget"],
            "acc_retain": acc["retain"],
            "acc_test": acc["test"],
            "acc_forget_true": acc["forget_true"],
            "gap_forget": abs(acc["forget"] - gacc["forget"]),
            "gap_retain": abs(acc["retain"] - gacc["retain"]),
            "gap_test": abs(acc["test"] - gacc["test"]),
            "tow": tow(
                acc["forget"], acc["retain"], acc["test"], gacc["forget"], gacc["retain"], gacc["test"]
            ),
            "js_forget": _mean(js_divergence(pf, gf)),
            "js_test": _mean(js_divergence(pt, gt)),
            "kl_forget": _mean(kl_divergence(pf, gf)),
            "kl_test": _mean(kl_divergence(pt, gt)),
            "dist_to_gold": dist,
            "epochs_equiv": run.params.epochs_equiv(req, run.n_train),
            "speedup": g["meta"]["wall_s"] / wall if wall > 0 else float("nan"),
            **self.mia(preds, sp, s, step),
        }
        # population of gold models
        ref = self.reference(p, s, step)
        pop = self.population(p, step)
        for kind in ("js", "kl"):
            for part, probs, pp, mask in (("forget", pf, ref["p_f"], ref["mask_f"]),
                                          ("test", pt, ref["p_t"], ref["mask_t"])):  # fmt: skip
                d = population_divergence(probs, pp, mask, kind)
                gg = ref[f"{kind}_gg_{part}"]
                out[f"{kind}_{part}_pop"] = _nanmean(d)
                out[f"{kind}_gg_{part}"] = _nanmean(gg)
                out[f"{kind}_ratio_{part}"] = reference_ratio(d, gg)
        out["gold_pop_forget"] = ref["gold_pop_forget"]
        out["n_gg_forget"] = ref["n_gg_forget"]
        out["dist_gold_gold"] = pop["dist_gg"]
        out["dist_to_gold_rel"] = dist / pop["dist_gg"] if pop["dist_gg"] > 0 else math.nan
        out["gold_mia_loss_auc"] = g["mia"]["mia_loss_auc"]
        out["gold_mia_efficacy"] = g["mia"]["mia_efficacy"]
        if len(self.seeds) >= self.cfg.lira_min_gold and len(sp.forget):
            phi_gold, sigma = ref["lira"]
            z = lira_z_scores(logit_confidence(pf, sp.y[sp.forget]), phi_gold, ref["mask_f"], sigma)
            out["lira_z_forget"] = _nanmean(z)
            finite = z[np.isfinite(z)]
            out["lira_member_frac"] = float((finite > LIRA_Z_95).mean()) if finite.size else math.nan
        else:
            out["lira_z_forget"] = out["lira_member_frac"] = math.nan
        return out

    # --- relearn time --------------------------------------------------------------------------------
    def _relearn_eval(self, protocol: str, seed: int, step: int) -> tuple[torch.Tensor, float]:
        sp = self.split(protocol, seed, step)
        rng = np.random.default_rng([seed, step])
        idx = sp.forget
        if len(idx) > self.cfg.relearn_eval_size:
            idx = np.sort(rng.choice(idx, size=self.cfg.relearn_eval_size, replace=False))
        idx_t = torch.as_tensor(idx)
        target = accuracy_from_probs(
            predict_proba(self.original(seed, protocol), self.x_train[idx_t]), sp.y_t[idx_t]
        )
        return idx_t, target

    def relearn(self, model: torch.nn.Module, protocol: str, seed: int, step: int) -> tuple[int, bool]:
        idx_eval, target = self._relearn_eval(protocol, seed, step)
        sp = self.split(protocol, seed, step)
        f = torch.as_tensor(sp.forget)
        return relearn_time(
            model,
            self.x_train[f],
            sp.y_t[f],
            self.run.suite.recipe,
            target,
            seed=seed,
            batch_size=self.cfg.relearn_batch_size,
            max_steps=self.cfg.relearn_max_steps,
            eval_x=self.x_train[idx_eval],
            eval_y=sp.y_t[idx_eval],
        )

    @functools.cache  # noqa: B019
    def gold_relearn(self, protocol: str, seed: int, step: int) -> tuple[int, bool]:
        return self.relearn(self.gold_model(protocol, seed, step), protocol, seed, step)


def _mean(d: torch.Tensor) -> float:
    return float(d.mean()) if d.numel() else math.nan


def evaluate_suite(run: SuiteRun, config: EvalConfig | None = None) -> pd.DataFrame:
    """Rows for every cell of the suite (cells must be up to date: ``unlearn`` first)."""
    cfg = config or EvalConfig()
    s = run.suite
    ev = _Evaluator(run, cfg)
    rows: list[dict[str, Any]] = []
    for cell in tqdm(expand_cells(run), desc=f"{s.name}: evaluate", unit="cell", disable=None):
        result_path = cell_dir(run, cell) / "result.json"
        if not result_path.exists():
            raise StaleCellError(
                f"{result_path}: missing; run `unlearn-bench unlearn --suite {s.name}` first"
            )
        result = read_json(result_path)
        if result["key"] != cell_key(run, cell):
            raise StaleCellError(f"{result_path}: produced by other code or inputs; re-run the unlearn stage")
        common = {
            "suite": s.name,
            "dataset": s.dataset,
            "model": s.model["arch"],
            "protocol": cell.protocol,
            "method": cell.method,
            "params_id": cell.params_id,
            "selected": cell.selected,
            "tuning_trials": cell.tuning_trials,
            "tuning_s": cell.tuning_s,
            "seed": cell.seed,
            "hparams": json.dumps(cell.hparams, sort_keys=True),
            **{k: result.get(k) for k in ("code_hash", "origin", "git_rev", "packages", "hardware")},
        }
        k_final = run.protocol(cell.protocol).requests
        for req in result["requests"]:
            step = req["step"]
            row: dict[str, Any] = {**common, "step": step, "status": req["status"], "error": req["error"]}
            for k in ("wall_s", "cpu_s", "peak_rss_mb", "cuda_peak_mb", "grad_samples", "fwd_samples", "hvps",
                      "hessians", "update_norm"):  # fmt: skip
                row[k] = req.get(k)
            row["info"] = json.dumps(req.get("info", {}), sort_keys=True)
            g = ev.gold(cell.protocol, cell.seed, step)
            sp = ev.split(cell.protocol, cell.seed, step)
            row.update(
                gold_acc_forget=g["acc"]["forget"],
                gold_acc_retain=g["acc"]["retain"],
                gold_acc_test=g["acc"]["test"],
                gold_acc_forget_true=g["acc"]["forget_true"],
                gold_wall_s=g["meta"]["wall_s"],
                gold_epochs_equiv=g["meta"]["epochs_equiv"],
                n_forget=len(sp.forget),
                n_retain=len(sp.retain),
            )
            if req["status"] == "ok":
                model = load_state(cell_dir(run, cell) / f"step{step}.pt", run.make_model(cell.seed))
                row.update(ev.judge(cell, step, model, req))
                if cfg.relearn and step == k_final:
                    steps, capped = ev.relearn(model, cell.protocol, cell.seed, step)
                    row["relearn_steps"], row["relearn_capped"] = float(steps), float(capped)
                    steps, capped = ev.gold_relearn(cell.protocol, cell.seed, step)
                    row["gold_relearn_steps"], row["gold_relearn_capped"] = float(steps), float(capped)
            rows.append(row)

    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df:
            df[col] = None
    return df[COLUMNS]


def write_results(run: SuiteRun) -> pd.DataFrame:
    df = evaluate_suite(run)
    path = run.layout.results_path(run.suite.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return df
