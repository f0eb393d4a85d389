"""What every row is judged against: the gold models of a suite and the population references.

Per (protocol, seed, step): the split (forget set F = requests 1..k of the seed, retain set R = D − F), the
gold model (retrained on R, same seed) with its predictions, accuracies and MIA numbers. Per (protocol,
step): the population of gold models, one per suite seed. Forget sets are drawn per seed, so the gold
model of another seed s′ is a valid "retrained without x" reference for an example x only if it is
*admissible*: it did not train on x (x ∈ F_{s′}: always true on T) and the class of x is deleted entirely
by both or by neither of the two forget sets. :meth:`GoldReference.reference` builds the admissibility
masks, the gold-to-gold divergences and the LiRA Gaussian of one (protocol, seed, step).

Everything is computed on first use and kept for the rest of the stage (one instance per invocation), so
a stage whose rows all come from the evaluation cache loads no gold model. With a
:class:`~benchmark.runner.reference_cache.ReferenceCache`, the values that depend on gold models only (a
gold model's predictions, accuracies, membership-inference numbers and relearn time) are also kept on disk
across runs: a stage that judges a few new cells reads the gold references they need instead of reloading
and re-attacking every gold model of the protocol. The population references (masks, gold-to-gold
divergences, the LiRA Gaussian) are cheap functions of the cached predictions and are recomputed.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.data.protocols import cumulative
from benchmark.metrics import logit_confidence, mean_pairwise_distance, pairwise_divergence, pooled_std
from benchmark.runner.artifacts import check_artifact, load_state
from benchmark.runner.reference_cache import ReferenceCache
from benchmark.runner.scoring import EvalConfig, Preds, Split, accuracies, mia, predict, relearn
from benchmark.runner.suite import SuiteRun


class GoldReference:
    """Caches (gold predictions per protocol/seed/step, gold populations) shared by all rows of a suite."""

    def __init__(self, run: SuiteRun, cfg: EvalConfig, cache: ReferenceCache | None = None) -> None:
        """``cache``: keep gold-only values on disk across runs (None: compute them in this process)."""
        self.run, self.cfg, self.cache = run, cfg, cache
        snap = run.snapshot
        self.x_train, self.x_test = snap.x_train, snap.x_test
        self.y_train_t, self.y_test_t = snap.y_train.long(), snap.y_test.long()
        self.y_train, self.y_test = self.y_train_t.numpy(), self.y_test_t.numpy()
        self.num_classes = int(snap.num_classes)
        self.seeds = list(run.suite.seeds)

    # --- models and predictions -------------------------------------------------------------------------
    def predict(self, model: torch.nn.Module) -> Preds:
        return predict(model, self.x_train, self.x_test)

    def accuracies(self, preds: Preds, sp: Split) -> dict[str, float]:
        return accuracies(preds, sp, self.y_test_t, self.y_train_t)

    def mia(self, preds: Preds, sp: Split, seed: int, step: int) -> dict[str, float]:
        return mia(preds, sp, self.y_test, seed, step, self.cfg)

    @functools.cache  # noqa: B019  (one instance per stage invocation)
    def split(self, protocol: str, seed: int, step: int) -> Split:
        req = self.run.request(protocol, seed, step)
        forget = req.forget_all.indices.numpy().astype(np.int64)
        retain = req.retain.indices.numpy().astype(np.int64)
        in_forget = np.zeros(len(self.y_train), dtype=bool)
        in_forget[forget] = True
        y_t = self.run.train_labels(protocol, seed).long()
        y = y_t.numpy()
        kept = np.bincount(y[retain], minlength=self.num_classes) > 0
        corruption = self.run.corruption(protocol, seed)
        if corruption is None:
            return Split(forget, retain, in_forget, ~kept, y, y_t, None)
        reqs = self.run.requests(protocol, seed)
        unidentified = np.setdiff1d(corruption[0], cumulative(reqs, len(reqs))).astype(np.int64)
        return Split(forget, retain, in_forget, ~kept, y, y_t, self.y_train, unidentified)

    def gold_path(self, protocol: str, seed: int, step: int) -> Path:
        return self.run.layout.gold_path(self.run.suite.name, protocol, seed, step)

    def gold_model(self, protocol: str, seed: int, step: int) -> torch.nn.Module:
        return load_state(self.gold_path(protocol, seed, step), self.run.make_model(seed))

    @functools.cache  # noqa: B019
    def gold_meta(self, protocol: str, seed: int, step: int) -> dict[str, Any]:
        """The gold model's sidecar JSON, after checking it and the original are current (one-line
        :class:`~benchmark.runner.artifacts.StaleArtifactError` naming the command that rebuilds them)."""
        self.check_original(seed, protocol)
        cmd = f"unlearn-bench gold --suite {self.run.suite.name}"
        return check_artifact(
            self.gold_path(protocol, seed, step), self.run.gold_key(protocol, seed, step), cmd
        )

    @functools.cache  # noqa: B019
    def gold(self, protocol: str, seed: int, step: int) -> dict[str, Any]:
        """The gold model's predictions, accuracies, sidecar and MIA numbers (from the reference cache when
        it holds them for this gold model and code)."""
        meta = self.gold_meta(protocol, seed, step)

        def compute() -> dict[str, Any]:
            preds = self.predict(self.gold_model(protocol, seed, step))
            sp = self.split(protocol, seed, step)
            return {"train": preds.train, "test": preds.test, "w": preds.w,
                    "acc": self.accuracies(preds, sp), "mia": self.mia(preds, sp, seed, step)}  # fmt: skip

        if self.cache is None:
            rec = compute()
        else:
            key = self.cache.key(gold=meta)
            rec = self.cache.get("gold", protocol, seed, step, key, compute)
        return {"preds": Preds(rec["train"], rec["test"], rec["w"]), "acc": rec["acc"], "meta": meta,
                "mia": rec["mia"]}  # fmt: skip

    @functools.cache  # noqa: B019
    def check_original(self, seed: int, protocol: str) -> dict[str, Any]:
        cmd = f"unlearn-bench train --suite {self.run.suite.name}"
        return check_artifact(
            self.run.original_path(seed, protocol), self.run.original_key(seed, protocol), cmd
        )

    @functools.cache  # noqa: B019
    def original(self, seed: int, protocol: str) -> torch.nn.Module:
        return load_state(self.run.original_path(seed, protocol), self.run.make_model(seed))

    @functools.cache  # noqa: B019
    def gold_relearn(self, protocol: str, seed: int, step: int) -> tuple[int, bool]:
        """Relearn time of the gold model (its target: the original's forget accuracy)."""

        def compute() -> list[Any]:
            steps, capped = relearn(self, self.gold_model(protocol, seed, step), protocol, seed, step)
            return [int(steps), bool(capped)]

        if self.cache is None:
            steps, capped = compute()
        else:
            key = self.cache.key(gold=self.gold_meta(protocol, seed, step),
                                 original=self.check_original(seed, protocol))  # fmt: skip
            steps, capped = self.cache.get("relearn", protocol, seed, step, key, compute)
        return steps, capped

    # --- the population of gold models ------------------------------------------------------------------
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
