"""unlearn-bench: the reference benchmark suite for machine unlearning of neural networks.

Public API for method authors::

    from benchmark import Unlearner, register_unlearner, Request, Context

Importing the package pins the CPU kernels (:mod:`benchmark.numerics`) before anything computes.
"""

from benchmark.numerics import pin_cpu_kernels

pin_cpu_kernels()

# the pin must precede every computation, so the imports below follow it

from benchmark.config import ConfigError, Params, load_params  # noqa: E402
from benchmark.unlearners.base import (  # noqa: E402
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
