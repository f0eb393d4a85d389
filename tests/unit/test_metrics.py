"""Metric formulas against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.metrics import (
    LN2,
    accuracy,
    accuracy_from_probs,
    js_divergence,
    kl_divergence,
    mean_js,
    mean_kl,
    mean_pairwise_distance,
    pairwise_divergence,
    population_divergence,
    predict_proba,
    reference_ratio,
    relearn_time,
    tow,
)
from benchmark.unlearners.base import TrainRecipe


# ----------------------------------------------------------------------------------------- divergences
def test_kl_2x2_by_hand():
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    q = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64)
    # row 0: 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln 2 + 0.5 ln(2/3) = 0.143841...
    # row 1: 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5) = 0.9 ln 1.8 + 0.1 ln 0.2 = 0.368064...
    expected = [0.5 * math.log(2) + 0.5 * math.log(2 / 3), 0.9 * math.log(1.8) + 0.1 * math.log(0.2)]
    kl = kl_divergence(p, q)
    assert kl.dtype == torch.float64 and kl.shape == (2,)
    assert kl.tolist() == pytest.approx(expected, abs=1e-12)
    assert kl.tolist() == pytest.approx([0.143841, 0.368064], abs=1e-6)
    assert mean_kl(p, q) == pytest.approx(sum(expected) / 2, abs=1e-12)


def test_kl_zero_mass_conventions():
    # 0 ln 0 = 0: the third class contributes nothing; 0.5 ln 2 + 0.5 ln 2 = ln 2
    kl = kl_divergence(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5]))
    assert float(kl) == pytest.approx(LN2, abs=1e-12)
    # q = 0 where p > 0: clamped at eps, large but finite (ln(1/1e-12) = 27.63)
    big = float(kl_divergence(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])))
    assert math.isfinite(big) and big == pytest.approx(math.log(1e12), rel=1e-9)
    assert float(kl_divergence(torch.tensor([0.3, 0.7]), torch.tensor([0.3, 0.7]))) == 0.0


def test_js_disjoint_is_ln2_and_identical_is_zero():
    p = torch.tensor([[1.0, 0.0], [0.2, 0.8]])
    q = torch.tensor([[0.0, 1.0], [0.2, 0.8]])
    js = js_divergence(p, q)
    assert js[0].item() == pytest.approx(math.log(2), abs=1e-12)
    assert js[1].item() == pytest.approx(0.0, abs=1e-15)
    assert mean_js(p, q) == pytest.approx(math.log(2) / 2, abs=1e-12)


def test_js_by_hand_and_symmetric():
    # p = [1/2, 1/2], q = [1, 0], m = [3/4, 1/4]
    # KL(p‖m) = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3);  KL(q‖m) = ln(4/3);  JS = ¼ ln(4/3) + ½ ln(4/3) = ¾ ln(4/3)
    p, q = torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])
    assert float(js_divergence(p, q)) == pytest.approx(0.75 * math.log(4 / 3), abs=1e-12)
    assert float(js_divergence(q, p)) == pytest.approx(0.75 * math.log(4 / 3), abs=1e-12)


def test_js_bounded_on_random_rows():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(3 * torch.randn(64, 10, generator=g), dim=1)
    q = torch.softmax(3 * torch.randn(64, 10, generator=g), dim=1)
    js = js_divergence(p, q)
    assert torch.all(js >= 0) and torch.all(js <= math.log(2))
    assert torch.allclose(js, js_divergence(q, p))


def test_divergence_shape_checks():
    with pytest.raises(ValueError, match="same shape"):
        js_divergence(torch.ones(2, 3) / 3, torch.ones(2, 2) / 2)
    assert math.isnan(mean_js(torch.empty(0, 3), torch.empty(0, 3)))


# -------------------------------------------------------------------------------------------- accuracy
def test_tow_by_hand():
    # |0.3-0.2| = 0.1, |0.97-0.99| = 0.02, |0.85-0.90| = 0.05 -> (1-0.1)(1-0.02)(1-0.05) = 0.8379
    assert tow(0.3, 0.97, 0.85, 0.2, 0.99, 0.90) == pytest.approx(0.9 * 0.98 * 0.95, abs=1e-12)
    assert tow(0.3, 0.97, 0.85, 0.2, 0.99, 0.90) == pytest.approx(0.8379, abs=1e-12)
    assert tow(0.5, 0.9, 0.8, 0.5, 0.9, 0.8) == 1.0
    assert tow(1.0, 1.0, 1.0, 0.0, 0.0, 0.0) == 0.0
    assert math.isnan(tow(math.nan, 0.9, 0.8, 0.5, 0.9, 0.8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tow(97.0, 0.9, 0.8, 0.5, 0.9, 0.8)  # percentages are a mistake


def test_accuracy_from_probs():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert accuracy_from_probs(probs, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert math.isnan(accuracy_from_probs(torch.empty(0, 2), torch.empty(0, dtype=torch.long)))
    with pytest.raises(ValueError):
        accuracy_from_probs(probs, torch.tensor([0, 1]))


def _linear_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        model[0].bias.zero_()
    return model


def test_predict_proba_batched_eval_float64():
    model = _linear_model()
    model.train()
    x = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, -2.0], [1.0, 1.0], [0.5, -3.0]])
    probs = predict_proba(model, x, batch_size=2)
    assert model.training  # mode restored
    assert probs.dtype == torch.float64 and probs.shape == (5, 3)
    expected = torch.softmax((x @ model[0].weight.T).double(), dim=1)  # dropout off in eval
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(dim=1), torch.ones(5, dtype=torch.float64))
    assert torch.equal(probs, predict_proba(model, x, batch_size=1024))
    assert predict_proba(model, x[:0]).shape == (0, 3)
    # argmax classes are 0, 1, 2, (0|1 tie -> 0), 2 (logits 0.5, -3, 2.5)
    assert accuracy(model, x, torch.tensor([0, 1, 2, 0, 0]), batch_size=3) == pytest.approx(4 / 5)
    assert math.isnan(accuracy(model, x[:0], torch.empty(0, dtype=torch.long)))


# ------------------------------------------------------------------------------------------ population
KL_ROW0 = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)  # KL([.5, .5] ‖ [.25, .75]) = 0.143841


def test_population_divergence_by_hand():
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    pop = torch.tensor([[[0.25, 0.75]], [[0.5, 0.5]]], dtype=torch.float64)  # (M=2, N=1, C=2)
    # mean over both admissible models: (KL_ROW0 + 0) / 2
    assert population_divergence(p, pop, [[True], [True]], "kl").tolist() == pytest.approx([KL_ROW0 / 2])
    assert population_divergence(p, pop, [[True], [False]], "kl").tolist() == pytest.approx([KL_ROW0])
    assert np.isnan(population_divergence(p, pop, [[False], [False]], "kl")).all()
    js = population_divergence(p, pop, [[True], [True]], "js")[0]
    assert js == pytest.approx(float(js_divergence(p[0], pop[0, 0])) / 2)
    with pytest.raises(ValueError, match="kind"):
        population_divergence(p, pop, [[True], [True]], "l2")


def test_pairwise_divergence_by_hand():
    a, b, c = [0.5, 0.5], [0.25, 0.75], [0.5, 0.5]
    pop = torch.tensor([[a], [b], [c]], dtype=torch.float64)  # (3, 1, 2)
    kl_ab, kl_ba = KL_ROW0, 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # KL(b‖a) = 0.130812
    # ordered pairs: (a,b) (a,c) (b,a) (b,c) (c,a) (c,b) -> KLs kl_ab, 0, kl_ba, kl_ba, 0, kl_ab
    got = pairwise_divergence(pop, np.ones((3, 1), bool), "kl")
    assert got.tolist() == pytest.approx([(2 * kl_ab + 2 * kl_ba) / 6], abs=1e-12)
    got = pairwise_divergence(pop, [[True], [True], [False]], "kl")  # only a and b
    assert got.tolist() == pytest.approx([(kl_ab + kl_ba) / 2], abs=1e-12)
    assert np.isnan(pairwise_divergence(pop, [[True], [False], [False]], "js")).all()


def test_reference_ratio_and_weight_distance_by_hand():
    # third example has no method value: (1 + 2) / (2 + 2)
    assert reference_ratio([1.0, 2.0, np.nan], [2.0, 2.0, 1.0]) == pytest.approx(0.75)
    assert math.isnan(reference_ratio([1.0], [np.nan]))
    assert math.isnan(reference_ratio([1.0], [0.0]))
    # pairs: |(0,0)-(3,4)| = 5, |(0,0)-(0,4)| = 4, |(3,4)-(0,4)| = 3 -> mean 4
    assert mean_pairwise_distance(torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])) == pytest.approx(4.0)
    assert math.isnan(mean_pairwise_distance(torch.zeros(1, 3)))


# The NeurIPS 2023 competition score is tested in test_neurips.py (benchmark.metrics.neurips).


# --------------------------------------------------------------------------------------------- relearn
def _zero_logreg() -> nn.Module:
    model = nn.Linear(1, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    return model


def test_relearn_time_by_hand():
    # zero weights: logits (0, 0), argmax -> class 0, so y = 1 is wrong (acc 0). One SGD step
    # (lr 1, first momentum step = the gradient): dCE/dlogits = p - onehot = (.5, -.5), for the weight
    # (x = 1) and the bias -> logits after the step = (-1, 1): correct, so relearn time = 1.
    x, y = torch.ones(1, 1), torch.tensor([1])
    sgd = TrainRecipe(epochs=1, batch_size=32, lr=1.0, optimizer="sgd")
    model = _zero_logreg()
    assert relearn_time(model, x, y, sgd, target_acc=1.0) == (1, False)
    assert float(model.weight.detach().abs().sum()) == 0.0  # the input model is left untouched
    assert relearn_time(model, x, y, sgd, target_acc=0.0) == (0, False)  # target already met
    frozen = TrainRecipe(epochs=1, batch_size=32, lr=0.0, optimizer="sgd")
    assert relearn_time(model, x, y, frozen, target_acc=1.0, max_steps=7) == (7, True)  # capped, flagged
