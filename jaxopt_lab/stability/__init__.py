"""SGD dynamical stability (Wu & Su, ICML 2023, arXiv:2305.17490): curvature, training, linear stability.

curvature: Hessian-vector products, top eigenvalues (power iteration, Lanczos), Hutchinson / Hutch++
traces, Frobenius norm, exact Gauss-Newton trace, stochastic Lanczos quadrature -- pure, vmappable,
fixed iteration counts;
training: GD and minibatch SGD on the MSE as engine algorithms, with sharpness / trace / norms traced
inside the jitted loop;
linear_stability: the exact mean-square threshold eta*(B) of SGD at an interpolating minimum
(operator form and a dense reference), its bounds, and second-moment / Monte Carlo simulators;
models: the diagonal linear network, the two-layer ReLU network, a tanh MLP on scikit-learn's digits,
and their norm identities.
"""

from jaxopt_lab.stability import curvature, linear_stability, models, training
from jaxopt_lab.stability.curvature import (
    Eigen,
    Estimate,
    Quadrature,
    dense_hessian,
    frobenius_sq,
    gauss_newton_trace,
    hessian_operator,
    hutch_pp_trace,
    hutchinson_trace,
    hvp,
    lanczos,
    per_example_jacobians,
    power_iteration,
    quadrature_trace,
    slq,
    spectral_density,
    top_eigenvalues_lanczos,
    top_eigenvalues_power,
)
from jaxopt_lab.stability.linear_stability import (
    analyze,
    necessary_bound,
    second_moment_log_trace,
    simulate_linear_sgd,
    threshold,
    threshold_dense,
    trace_bound,
    wu_ma_e,
)
from jaxopt_lab.stability.models import (
    Dataset,
    Model,
    diagonal_net,
    digits_data,
    path_norm,
    relu_net,
    relu_teacher_data,
    sparse_regression_data,
    tanh_mlp,
)
from jaxopt_lab.stability.training import Monitor, TrainState, gd, measure, sgd, sweep_training, when

__all__ = [
    "Dataset", "Eigen", "Estimate", "Model", "Monitor", "Quadrature", "TrainState", "analyze",
    "curvature", "dense_hessian", "diagonal_net", "digits_data", "frobenius_sq", "gauss_newton_trace",
    "gd", "hessian_operator", "hutch_pp_trace", "hutchinson_trace", "hvp", "lanczos",
    "linear_stability", "measure", "models", "necessary_bound", "path_norm", "per_example_jacobians",
    "power_iteration", "quadrature_trace", "relu_net", "relu_teacher_data",
    "second_moment_log_trace", "sgd", "simulate_linear_sgd", "slq", "sparse_regression_data",
    "spectral_density", "sweep_training", "tanh_mlp", "threshold", "threshold_dense",
    "top_eigenvalues_lanczos", "top_eigenvalues_power", "trace_bound", "training", "when", "wu_ma_e",
]
