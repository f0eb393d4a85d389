"""unlearn-bench: the reference benchmark suite for machine unlearning of neural networks.

Public API for method authors::

    from benchmark import Unlearner, register_unlearner, Request, Context
"""

from benchmark.config import ConfigError, Params, load_params
from benchmark.unlearners.base import (
    Context,
    DataView,
    Request,
    TrainRecipe,
    Unlearner,
    available_unlearners,
    get_unlearner,
    register_unlearner,
)

__all__ = [
    "ConfigError",
    "Context",
    "DataView",
    "Params",
    "Request",
    "TrainRecipe",
    "Unlearner",
    "available_unlearners",
    "get_unlearner",
    "load_params",
    "register_unlearner",
]
__version__ = "0.1.0"
