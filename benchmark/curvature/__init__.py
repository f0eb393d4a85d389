"""Curvature tools: flat parameters, retain loss, gradients/HVPs/Hessians (torch.func) and the exact
global solver of the cubic-regularised Newton subproblem (Nesterov & Polyak 2006; Bui et al. 2024,
arXiv 2406.14507).

The Lanczos routine itself is ``benchmark.curvature.lanczos.lanczos`` (not re-exported here: the name would
shadow the submodule)."""

from benchmark.curvature.arc import ARC_MODES, ARCInfo, arc_step
from benchmark.curvature.cubic import (
    CubicStep,
    cubic_model,
    damped_newton_step,
    newton_pinv_step,
    solve_cubic,
    solve_cubic_eig,
)
from benchmark.curvature.fisher import FISHER_KINDS, fisher_diag, minibatch_importance, per_sample_grads
from benchmark.curvature.functional import (
    HVP_MODES,
    FlatLoss,
    flat_params,
    gradient,
    hessian,
    hvp,
    load_flat_params_,
    loss_value,
    make_hvp,
    make_loss_fn,
    make_subsampled_loss_fn,
    num_params,
    value_and_gradient,
)
from benchmark.curvature.inverse import CGResult, conjugate_gradient, inverse_hvp, woodbury_solve
from benchmark.curvature.lanczos import (
    KrylovCubic,
    LanczosResult,
    krylov_cubic_step,
    krylov_subproblem,
)

__all__ = [
    "ARC_MODES",
    "ARCInfo",
    "KrylovCubic",
    "LanczosResult",
    "arc_step",
    "krylov_cubic_step",
    "krylov_subproblem",
    "CGResult",
    "FISHER_KINDS",
    "conjugate_gradient",
    "fisher_diag",
    "inverse_hvp",
    "minibatch_importance",
    "per_sample_grads",
    "woodbury_solve",
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
    "loss_value",
    "make_hvp",
    "make_loss_fn",
    "make_subsampled_loss_fn",
    "newton_pinv_step",
    "num_params",
    "solve_cubic",
    "solve_cubic_eig",
    "value_and_gradient",
]
