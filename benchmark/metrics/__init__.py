"""Evaluation metrics: accuracy, ToW, divergences, membership inference, population metrics, relearn time."""

from benchmark.metrics.accuracy import accuracy, accuracy_from_probs, predict_proba, tow
from benchmark.metrics.distances import LN2, js_divergence, kl_divergence, mean_js, mean_kl
from benchmark.metrics.mia import (
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
from benchmark.metrics.neurips import (
    bucket_points,
    example_epsilons,
    forgetting_quality,
    logit_scaled_confidence,
    logit_scaled_confidence_from_probs,
    neurips_score,
)
from benchmark.metrics.population import (
    mean_pairwise_distance,
    pairwise_divergence,
    population_divergence,
    reference_ratio,
)
from benchmark.metrics.relearn import relearn_time

__all__ = [
    "LIRA_Z_95",
    "LN2",
    "accuracy",
    "accuracy_from_probs",
    "best_balanced_accuracy",
    "bucket_points",
    "example_epsilons",
    "forgetting_quality",
    "js_divergence",
    "kl_divergence",
    "lira_z_scores",
    "logit_confidence",
    "logit_scaled_confidence",
    "logit_scaled_confidence_from_probs",
    "loss_threshold_attack",
    "mean_js",
    "mean_kl",
    "mean_pairwise_distance",
    "neurips_score",
    "pairwise_divergence",
    "per_example_loss",
    "pooled_std",
    "population_divergence",
    "predict_proba",
    "reference_ratio",
    "relearn_time",
    "roc_auc",
    "svc_mia_efficacy",
    "tow",
    "true_class_prob",
]
