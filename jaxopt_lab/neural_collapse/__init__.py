"""Neural collapse: metrics, the UFM and its perturbation model, solvers, flows, the operator F.

Tirer, Huang & Niles-Weed, "Perturbation Analysis of Neural Collapse", ICML 2023 (arXiv:2210.16658).

    metrics       NC1 (trace ratio and Papyan's), NC2, NC3, NC4 for any features/labels/classifier
    models        the UFM (eq. 1, MSE with/without bias, CE), eq. 2, W*(H), closed forms
    solvers       optax L-BFGS (zoom line search) minimizers in a fixed-length scan
    flows         central-path and joint gradient flows, RK4, metrics along the path
    perturbation  Theorem 4.1's operator F (exact Hessian), its large-beta form, block spectra
    features      digits MLP features (end-to-end and layer-wise), a loader for your own arrays
    validation    the host-side input checks the public entry points run

Public entry points validate their input on the host and raise ValueError naming the problem; the
jitted cores behind them are pure and vmappable over seeds and traced hyperparameters.
"""

from jaxopt_lab.neural_collapse.features import (load_digits_balanced, load_features, mlp_algorithm,
                                                 train_layerwise, train_mlp)
from jaxopt_lab.neural_collapse.flows import central_path_algorithm, central_path_flow, joint_flow
from jaxopt_lab.neural_collapse.metrics import class_by_class_labels, collapse_metrics
from jaxopt_lab.neural_collapse.models import (UFMParams, ce_closed_form, collapsed_minimizer,
                                               gaussian_class_features, mse_closed_form)
from jaxopt_lab.neural_collapse.perturbation import (block_singular_values, large_beta_operator,
                                                     perturbation_operator, theorem42_prediction)
from jaxopt_lab.neural_collapse.solvers import solve_perturbed, solve_ufm_ce, solve_ufm_mse

__all__ = [
    "UFMParams", "block_singular_values", "ce_closed_form", "central_path_algorithm",
    "central_path_flow", "class_by_class_labels", "collapse_metrics", "collapsed_minimizer",
    "gaussian_class_features", "joint_flow", "large_beta_operator", "load_digits_balanced",
    "load_features", "mlp_algorithm", "mse_closed_form", "perturbation_operator", "solve_perturbed", "solve_ufm_ce",
    "solve_ufm_mse", "theorem42_prediction", "train_layerwise", "train_mlp",
]
