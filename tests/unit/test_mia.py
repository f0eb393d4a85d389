"""Membership-inference attacks against hand-computed values and constructed (non-)separable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.metrics import (
    LIRA_Z_95,
    best_balanced_accuracy,
    lira_z_scores,
    logit_confidence,
    loss_threshold_attack,
    per_example_loss,
    pooled_std,
    roc_auc,
    svc_mia_efficacy,
    true_class_prob,
)


# ------------------------------------------------------------------------------------------- features
def test_features_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5], [1.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2, 0])
    assert true_class_prob(probs, y).tolist() == pytest.approx([0.7, 0.5, 1.0])
    # -ln 0.7 = 0.356675, -ln 0.5 = ln 2, -ln 1 = 0
    assert per_example_loss(probs, y).tolist() == pytest.approx([0.356675, math.log(2), 0.0], abs=1e-6)
    # phi = ln(p / (1 - p)): ln(0.7 / 0.3) = 0.847298, ln(0.5 / 0.5) = 0; p = 1 -> ln 1 - ln 1e-300
    phi = logit_confidence(probs, y)
    assert phi[:2].tolist() == pytest.approx([math.log(0.7 / 0.3), 0.0], abs=1e-12)
    assert phi[2] == pytest.approx(300 * math.log(10), rel=1e-12) and math.isfinite(phi[2])
    # p_y = 0 gives a large finite loss
    assert per_example_loss(probs[2:], torch.tensor([1]))[0] == pytest.approx(300 * math.log(10))


# ------------------------------------------------------------------------------------------------ AUC
def test_roc_auc_by_hand():
    assert roc_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert roc_auc([1.0, 2.0], [3.0, 4.0]) == 0.0
    # pairs (pos, neg): (1,2) <, (1,3) <, (2,2) tie -> 1/2, (2,3) <  =>  AUC = 0.5 / 4
    assert roc_auc([1.0, 2.0], [2.0, 3.0]) == pytest.approx(0.125)
    # pairs: (5,1) >, (5,4) >, (2,1) >, (2,4) <  =>  3 / 4
    assert roc_auc([5.0, 2.0], [1.0, 4.0]) == pytest.approx(0.75)
    assert math.isnan(roc_auc([], [1.0]))


def test_best_balanced_accuracy_by_hand():
    # t = 0.8: TPR 2/3, FPR 0 -> advantage 2/3 (the best) -> ½(1 + 2/3) = 5/6
    assert best_balanced_accuracy([0.9, 0.8, 0.3], [0.5, 0.2]) == pytest.approx(5 / 6)
    assert best_balanced_accuracy([1.0, 2.0], [3.0, 4.0]) == 0.5  # t = +inf: nobody is a member
    assert best_balanced_accuracy([3.0], [1.0, 2.0]) == 1.0


def test_loss_attack_separable_and_not():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.0, 0.1, 500)  # memorised: tiny losses
    nonmembers = rng.uniform(1.0, 3.0, 500)
    auc, bacc = loss_threshold_attack(members, nonmembers)
    assert auc == 1.0 and bacc == 1.0
    same_a, same_b = rng.exponential(1.0, 3000), rng.exponential(1.0, 3000)
    auc, bacc = loss_threshold_attack(same_a, same_b)
    assert auc == pytest.approx(0.5, abs=0.03)
    assert 0.5 <= bacc < 0.54  # the best threshold over-fits the sample a little
    auc, _ = loss_threshold_attack(nonmembers, members)  # members with *higher* loss: AUC ~ 0
    assert auc == 0.0


# ------------------------------------------------------------------------------------------------ SVC
def _confidences(rng, n, member: bool) -> np.ndarray:
    return rng.uniform(0.97, 1.0, n) if member else rng.uniform(0.1, 0.6, n)


def test_svc_efficacy_separable():
    rng = np.random.default_rng(1)
    shadow_in, shadow_out = _confidences(rng, 400, True), _confidences(rng, 300, False)
    still_member = _confidences(rng, 100, True)
    forgotten = _confidences(rng, 100, False)
    assert svc_mia_efficacy(shadow_in, shadow_out, still_member, seed=0) == 0.0
    assert svc_mia_efficacy(shadow_in, shadow_out, forgotten, seed=0) == 1.0
    half = np.concatenate([still_member[:30], forgotten[:70]])
    assert svc_mia_efficacy(shadow_in, shadow_out, half, seed=0) == pytest.approx(0.7)


def test_svc_efficacy_not_separable_balanced_and_seeded():
    rng = np.random.default_rng(2)
    a, b, target = rng.uniform(0, 1, 2000), rng.uniform(0, 1, 300), rng.uniform(0, 1, 500)
    e1 = svc_mia_efficacy(a, b, target, seed=3, max_per_side=200)
    assert e1 == svc_mia_efficacy(a, b, target, seed=3, max_per_side=200)  # seeded subsample
    assert 0.0 <= e1 <= 1.0
    assert math.isnan(svc_mia_efficacy(a, b, target[:0]))


# ----------------------------------------------------------------------------------------------- LiRA
def test_pooled_std_by_hand():
    phi = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 9.0]])
    # example 0: 1, 3, 5 -> SS = 8, dof 2; example 1: 2, 2, 9 -> mean 13/3, SS = 294/9, dof 2
    expected = math.sqrt((8 + 294 / 9) / 4)
    assert pooled_std(phi, np.ones((3, 2), bool)) == pytest.approx(expected, abs=1e-12)
    # masking model 2 out of example 1: 2, 2 -> SS 0, dof 1 -> sqrt(8 / 3)
    mask = np.array([[True, True], [True, True], [True, False]])
    assert pooled_std(phi, mask) == pytest.approx(math.sqrt(8 / 3), abs=1e-12)
    assert math.isnan(pooled_std(phi, np.eye(3, 2, dtype=bool)))  # one model per example


def test_lira_z_by_hand():
    phi_out = np.array([[0.0, 10.0], [2.0, 10.0]])
    mask = np.array([[True, True], [True, False]])
    # example 0: mu = 1, n = 2 -> z = (4 - 1) / (2 sqrt(1.5)); example 1: mu = 10, n = 1 -> (10 - 10) / ...
    z = lira_z_scores([4.0, 10.0], phi_out, mask, 2.0)
    assert z.tolist() == pytest.approx([3 / (2 * math.sqrt(1.5)), 0.0], abs=1e-12)
    z = lira_z_scores([4.0, 10.0], phi_out, np.array([[True, False], [True, False]]), 2.0)
    assert math.isnan(z[1])  # no OUT model
    assert np.isnan(lira_z_scores([1.0], [[0.0]], [[True]], math.nan)).all()
    assert LIRA_Z_95 == pytest.approx(1.644854, abs=1e-6)
