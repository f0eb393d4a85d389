"""Membership-inference attacks (MIAs) on the forget set.

Each attack asks: do the forget examples still look like training members of the unlearned model?
All functions take per-example scalar features (numpy float64 arrays) derived from predicted class
probabilities with :func:`true_class_prob`, :func:`per_example_loss` or :func:`logit_confidence`.

* :func:`loss_threshold_attack` — Yeom et al. 2018: AUC and best balanced accuracy of ``−loss``
  separating members (label 1) from non-members (label 0);
* :func:`svc_mia_efficacy` — the SVC confidence attack of Song & Mittal 2021 as used by Jia et al. 2023
  and SalUn (Fan et al. 2024): "MIA-efficacy" = fraction of forget examples predicted non-member;
* :func:`lira_z_scores` — an offline, fixed-variance LiRA test (Carlini et al. 2022) with a population
  of retrained (OUT) models.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats
from sklearn.svm import SVC

__all__ = [
    "LIRA_Z_95",
    "best_balanced_accuracy",
    "lira_z_scores",
    "logit_confidence",
    "loss_threshold_attack",
    "per_example_loss",
    "pooled_std",
    "roc_auc",
    "svc_mia_efficacy",
    "true_class_prob",
]

LIRA_Z_95 = float(stats.norm.ppf(0.95))  # 1.6449: one-sided 5% level of the OUT Gaussian
_TINY = 1e-300  # smallest probability taken into a log (float64)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _labels(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return np.asarray(y, dtype=np.int64).reshape(-1)


def true_class_prob(probs, y) -> np.ndarray:
    """Confidence in the true class, ``p_y(x)``, per row of ``probs`` (N, C); float64 (N,)."""
    p, y = _np(probs), _labels(y)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs {p.shape} and labels {y.shape} do not match")
    return p[np.arange(y.shape[0]), y]


def per_example_loss(probs, y) -> np.ndarray:
    """Cross-entropy ``ℓ(x, y) = −ln p_y(x)`` per row (nats; ``p_y`` clamped at 1e-300, so ≤ 690.8)."""
    return -np.log(np.maximum(true_class_prob(probs, y), _TINY))


def logit_confidence(probs, y) -> np.ndarray:
    """Logit-scaled confidence ``φ = ln p_y − ln(1 − p_y)`` (Carlini et al. 2022), per row.

    ``1 − p_y`` is computed as ``Σ_{c≠y} p_c`` (no cancellation when ``p_y ≈ 1``); both terms are
    clamped at 1e-300, so ``|φ| ≤ 690.8``.
    """
    p, y = _np(probs), _labels(y)
    py = true_class_prob(p, y)
    mask = np.ones_like(p, dtype=bool)
    mask[np.arange(y.shape[0]), y] = False
    rest = np.where(mask, p, 0.0).sum(axis=1)
    return np.log(np.maximum(py, _TINY)) - np.log(np.maximum(rest, _TINY))


def roc_auc(pos, neg) -> float:
    """Area under the ROC curve of a score that should be higher on ``pos`` (label 1) than ``neg``.

    .. math:: \\mathrm{AUC} = \\Pr[s^+ > s^-] + \\tfrac12 \\Pr[s^+ = s^-]
              = \\frac{R^+ - n^+(n^+ + 1)/2}{n^+ n^-}

    with ``R⁺`` the sum of the (tie-averaged) ranks of ``pos`` in the pooled sample (Mann–Whitney U).
    0.5 = chance, 1 = every positive scores above every negative. NaN if either side is empty.

    Reference: J. A. Hanley, B. J. McNeil, "The meaning and use of the area under a ROC curve",
    Radiology 1982.
    """
    pos, neg = _np(pos).ravel(), _np(neg).ravel()
    n1, n0 = pos.size, neg.size
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def best_balanced_accuracy(pos, neg) -> float:
    """Best balanced accuracy of a threshold rule "member iff score ≥ t" over all thresholds t.

    .. math:: \\max_t \\tfrac12\\big(\\mathrm{TPR}(t) + \\mathrm{TNR}(t)\\big)
              = \\tfrac12\\big(1 + \\max_t (\\mathrm{TPR}(t) - \\mathrm{FPR}(t))\\big)

    i.e. ½(1 + membership advantage) of Yeom et al. 2018; balanced so that unequal set sizes do not
    reward predicting the majority class. ``t = +∞`` (nobody is a member) is included, so the value
    is ≥ 0.5. NaN if either side is empty.
    """
    pos, neg = _np(pos).ravel(), _np(neg).ravel()
    if pos.size == 0 or neg.size == 0:
        return math.nan
    values, inverse = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    k = values.size
    tp = np.bincount(inverse[: pos.size], minlength=k)[::-1].cumsum()  # score >= values[::-1][i]
    fp = np.bincount(inverse[pos.size :], minlength=k)[::-1].cumsum()
    adv = tp / pos.size - fp / neg.size
    return float(0.5 * (1.0 + max(0.0, adv.max())))


def loss_threshold_attack(loss_members, loss_nonmembers) -> tuple[float, float]:
    """Loss-threshold MIA (Yeom et al. 2018): ``(AUC, best balanced accuracy)`` of the score ``−ℓ``.

    Members (e.g. the forget set, label 1) are predicted when their loss is below a threshold;
    ``AUC = Pr[ℓ_member < ℓ_nonmember]`` (ties ½). For a model that never saw the members
    (and members drawn like the non-members) both are ≈ 0.5; ≈ 1 means the members are still
    recognisable. Against a test set of other classes (class deletion) a retrained model can score
    well below 0.5: compare with the retrained model's value, not with 0.5.

    Reference: S. Yeom, I. Giacomelli, M. Fredrikson, S. Jha, "Privacy risk in machine learning:
    analyzing the connection to overfitting", IEEE CSF 2018.
    """
    pos, neg = -_np(loss_members), -_np(loss_nonmembers)
    return roc_auc(pos, neg), best_balanced_accuracy(pos, neg)


def _subsample(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if x.shape[0] <= size:
        return x
    return x[np.sort(rng.choice(x.shape[0], size=size, replace=False))]


def svc_mia_efficacy(
    shadow_members,
    shadow_nonmembers,
    target,
    *,
    seed: int = 0,
    max_per_side: int = 500,
    C: float = 3.0,
) -> float:
    """MIA-efficacy: the fraction of ``target`` (forget) examples an SVC attack predicts as non-members.

    The attack is an RBF-kernel SVC (``C=3``, ``gamma="auto"``: SalUn's settings) trained on
    features of known members (label 1: a sample of the retain set) and known non-members
    (label 0: a sample of the test set), then applied to the forget set:

    .. math:: \\text{MIA-efficacy} = \\frac{|\\{x \\in D_f : \\mathrm{SVC}(x) = 0\\}|}{|D_f|}

    Higher = more forgotten (a retrained model scores what its forget set looks like as unseen
    data; the original model scores low). The features used by the benchmark are the true-class
    confidences ``p_y(x)`` (SalUn's ``confidence`` variant). Both training sides are subsampled to
    the same size ``n = min(|members|, |non-members|, max_per_side)`` with a ``seed``-ed generator,
    so the attack is balanced and costs O(n²) at most (n ≤ 500 by default: ~10 ms).
    Returns NaN if a side or the target is empty, or the training labels are all one class.

    References: L. Song, P. Mittal, "Systematic evaluation of privacy risks of machine learning
    models", USENIX Security 2021; J. Jia et al., "Model sparsity can simplify machine unlearning",
    NeurIPS 2023; C. Fan et al., "SalUn: empowering machine unlearning via gradient-based weight
    saliency", ICLR 2024 (``SVC_MIA`` in their code).
    """
    ins, outs, tgt = (_np(a) for a in (shadow_members, shadow_nonmembers, target))
    if min(a.size for a in (ins, outs, tgt)) == 0:
        return math.nan
    ins, outs, tgt = (a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1) for a in (ins, outs, tgt))
    rng = np.random.default_rng(seed)
    n = min(ins.shape[0], outs.shape[0], max_per_side)
    ins, outs = _subsample(ins, n, rng), _subsample(outs, n, rng)
    x = np.concatenate([ins, outs])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = SVC(C=C, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    return float(1.0 - clf.predict(tgt).mean())


def pooled_std(phi, mask) -> float:
    """Pooled standard deviation across models of per-example values, for fixed-variance LiRA.

    ``phi`` is (M, N): model m's value on example j; ``mask`` (M, N) marks the admissible (OUT)
    models of each example. With ``A_j`` the admissible models of example j, ``n_j = |A_j|``:

    .. math:: \\hat\\sigma^2 = \\frac{\\sum_{j: n_j \\ge 2} \\sum_{m \\in A_j} (\\phi_{mj} - \\bar\\phi_j)^2}
                                  {\\sum_{j: n_j \\ge 2} (n_j - 1)}

    NaN when no example has two admissible models.
    """
    phi, mask = _np(phi), np.asarray(mask, dtype=bool)
    n = mask.sum(axis=0)
    keep = n >= 2
    if not keep.any():
        return math.nan
    phi, mask, n = phi[:, keep], mask[:, keep], n[keep]
    mu = np.where(mask, phi, 0.0).sum(axis=0) / n
    ss = np.where(mask, (phi - mu) ** 2, 0.0).sum()
    return float(math.sqrt(ss / (n - 1).sum()))


def lira_z_scores(phi_target, phi_out, mask, sigma) -> np.ndarray:
    """Per-example z-scores of the target model under a Gaussian fitted to OUT models (offline LiRA).

    For example j with admissible OUT models ``A_j`` (``n_j = |A_j|``, models that never trained on j),
    ``μ_j`` = mean of their logit-scaled confidences ``φ``; the variance is a single pooled
    ``σ²`` (the fixed-variance variant that Carlini et al. recommend when there are few shadow
    models), inflated by ``1 + 1/n_j`` for the uncertainty of ``μ_j`` (predictive distribution of a
    new OUT model):

    .. math:: z_j = \\frac{\\phi_{\\text{target}}(j) - \\mu_j}{\\sigma \\sqrt{1 + 1/n_j}}

    ``z_j ≈ 0``: the target looks like a model that never saw j; ``z_j ≫ 0`` (e.g. > 1.645, the
    one-sided 5% level :data:`LIRA_Z_95`): j still looks like a training member. The one-sided
    likelihood-ratio test of Carlini et al. rejects "OUT" at level α iff ``z_j > Φ⁻¹(1 − α)``.
    NaN where ``n_j = 0`` or ``σ`` is not a positive finite number.

    Reference: N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership inference
    attacks from first principles", IEEE S&P 2022 (LiRA, offline variant).
    """
    phi_target, phi_out, mask = _np(phi_target).ravel(), _np(phi_out), np.asarray(mask, dtype=bool)
    n = mask.sum(axis=0)
    sigma = np.broadcast_to(_np(sigma), phi_target.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(mask, phi_out, 0.0).sum(axis=0) / n
        z = (phi_target - mu) / (sigma * np.sqrt(1.0 + 1.0 / n))
    bad = (n == 0) | ~np.isfinite(sigma) | (sigma <= 0)
    return np.where(bad, np.nan, z)
