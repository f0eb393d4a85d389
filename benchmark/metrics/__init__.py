"""Evaluation metrics: accuracy, the tug-of-war score and divergences between predictions."""

from benchmark.metrics.accuracy import accuracy, accuracy_from_probs, predict_proba, tow
from benchmark.metrics.distances import LN2, js_divergence, kl_divergence, mean_js, mean_kl

__all__ = [
    "LN2",
    "accuracy",
    "accuracy_from_probs",
    "js_divergence",
    "kl_divergence",
    "mean_js",
    "mean_kl",
    "predict_proba",
    "tow",
]
