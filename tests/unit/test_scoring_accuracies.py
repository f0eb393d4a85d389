"""benchmark.runner.scoring.accuracies: which labels and which samples each accuracy is taken on."""

import math

import numpy as np
import torch

from benchmark.runner.scoring import Preds, Split, accuracies


def _split(forget, y, y_true=None, unidentified=()):
    n = len(y)
    in_forget = np.zeros(n, dtype=bool)
    in_forget[forget] = True
    y = np.asarray(y)
    return Split(
        forget=np.asarray(forget, dtype=np.int64),
        retain=np.flatnonzero(~in_forget).astype(np.int64),
        in_forget=in_forget,
        class_gone=np.zeros(3, dtype=bool),
        y=y,
        y_t=torch.as_tensor(y),
        y_true=None if y_true is None else np.asarray(y_true),
        unidentified=np.asarray(unidentified, dtype=np.int64),
    )


def _preds(predicted):
    probs = torch.nn.functional.one_hot(torch.as_tensor(predicted), 3).double()
    return Preds(train=probs, test=probs[:2], w=torch.zeros(1))


def test_flipped_labels_give_forget_and_unidentified_accuracy_on_the_true_labels():
    # 6 training samples; 0, 1, 4 and 5 flipped (y != y_true); the requests deleted 0 and 1, so 4 and 5 are
    # the unidentified ones, still trained on with their flipped labels
    y_true = [0, 1, 2, 0, 1, 2]
    y = [1, 2, 2, 0, 2, 0]
    predicted = [1, 1, 2, 0, 1, 0]  # learnt the flipped 0, recovered the true 1; true on 4, flipped on 5
    sp = _split([0, 1], y, y_true, unidentified=[4, 5])
    acc = accuracies(_preds(predicted), sp, torch.tensor([1, 1]), torch.as_tensor(y_true))
    assert acc["forget"] == 0.5  # trained-on labels: 1 right (sample 0), 1 wrong
    assert acc["forget_true"] == 0.5  # true labels: sample 1 right, sample 0 wrong
    assert acc["unidentified_true"] == 0.5  # sample 4 right, sample 5 wrong (it predicts the flipped label)
    assert acc["retain"] == 0.75  # trained-on labels: 2, 3 and 5 (its flipped label) right, 4 wrong
    assert acc["test"] == 1.0


def test_every_flipped_sample_identified_or_no_flips_leave_the_corrective_accuracies_nan():
    y = [0, 1, 2, 0, 1, 2]
    acc = accuracies(_preds(y), _split([0, 1], y, y_true=y), torch.tensor([0, 1]), torch.as_tensor(y))
    assert acc["forget_true"] == 1.0 and math.isnan(acc["unidentified_true"])
    acc = accuracies(_preds(y), _split([0, 1], y), torch.tensor([0, 1]), torch.as_tensor(y))
    assert math.isnan(acc["forget_true"]) and math.isnan(acc["unidentified_true"])
