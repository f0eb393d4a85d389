"""Unlearning methods: one module per method; every module in this package is imported on discovery."""

from benchmark.unlearners.base import (
    Context,
    Counters,
    DataView,
    Request,
    TrainRecipe,
    Unlearner,
    available_unlearners,
    get_unlearner,
    register_unlearner,
)

__all__ = [
    "Context",
    "Counters",
    "DataView",
    "Request",
    "TrainRecipe",
    "Unlearner",
    "available_unlearners",
    "get_unlearner",
    "register_unlearner",
]
