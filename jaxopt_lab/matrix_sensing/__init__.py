"""Over-parameterized matrix sensing (Xiong, Ding & Du, ICLR 2024, arXiv:2310.01769).

problem: a Gaussian sensing operator (or matrix factorization) and a rank-r truth;
algorithms: symmetric GD on XX^T, asymmetric GD on FG^T, and asymmetric GD with a one-step
rebalance.
"""

from jaxopt_lab.matrix_sensing.algorithms import (
    AsymmetricState,
    OneStepState,
    SymmetricState,
    asymmetric_gd,
    asymmetric_gd_one_step,
    asymmetric_init,
    asymmetric_step,
    one_step_init,
    one_step_step,
    rebalance_reconstruction,
    symmetric_gd,
    symmetric_init,
    symmetric_metrics,
    symmetric_step,
)
from jaxopt_lab.matrix_sensing.problem import (
    SensingProblem,
    adjoint_op,
    degrees_of_freedom,
    gram_op,
    make_problem,
    measurement_residual,
    residual_gradient,
    sensing_op,
)

__all__ = [
    "AsymmetricState", "OneStepState", "SensingProblem", "SymmetricState", "adjoint_op",
    "asymmetric_gd", "asymmetric_gd_one_step", "asymmetric_init", "asymmetric_step",
    "degrees_of_freedom", "gram_op", "make_problem", "measurement_residual", "one_step_init",
    "one_step_step", "rebalance_reconstruction", "residual_gradient", "sensing_op", "symmetric_gd",
    "symmetric_init", "symmetric_metrics", "symmetric_step",
]
