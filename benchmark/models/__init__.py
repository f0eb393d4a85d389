"""Model zoo and the one training loop shared by originals, gold retrains and first-order methods."""

from benchmark.models.training import evaluate_accuracy, train_model
from benchmark.models.zoo import build_model, count_parameters

__all__ = ["build_model", "count_parameters", "evaluate_accuracy", "train_model"]
