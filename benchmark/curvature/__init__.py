"""Curvature tools: flat parameters, retain loss, gradients/HVPs/Hessians (torch.func) and the exact
global solver of the cubic-regularised Newton subproblem (Nesterov & Polyak 2006; Bui et al. 2024,
arXiv 2406.14507)."""

from benchmark.curvature.cubic import (
    CubicStep,
    cubic_model,
    damped_newton_step,
    newton_pinv_step,
    solve_cubic,
    solve_cubic_eig,
)
from benchmark.curvature.functional import (
    HVP_MODES,
    FlatLoss,
    flat_params,
    gradient,
    hessian,
    hvp,
    load_flat_params_,
    make_hvp,
    make_loss_fn,
    num_params,
)

__all__ = [
    "HVP_MODES",
    "CubicStep",
    "FlatLoss",
    "cubic_model",
    "damped_newton_step",
    "flat_params",
    "gradient",
    "hessian",
    "hvp",
    "load_flat_params_",
    "make_hvp",
    "make_loss_fn",
    "newton_pinv_step",
    "num_params",
    "solve_cubic",
    "solve_cubic_eig",
]
