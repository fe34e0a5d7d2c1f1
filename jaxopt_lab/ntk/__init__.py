"""The Neural Tangent Kernel (Jacot, Gabriel & Hongler 2018, arXiv:1806.07572).

- :mod:`.analytic`: infinite-width NNGP and NTK of MLPs (closed forms and quadrature; blocked and
  sharded assembly for large N).
- :mod:`.layers`: a layer algebra (Dense, Conv, pooling, Flatten, activations, LayerNorm, residual
  branches) whose ``serial(...)`` gives ``init``, ``apply`` and the infinite-width ``kernels``;
  Monte Carlo kernels of the finite twin.
- :mod:`.empirical`: the finite-width NTK of any ``apply(params, x)`` model (Jacobian contraction,
  NTK-vector products) and a structured fast path for :class:`MLP`.
- :mod:`.predict`: closed-form MSE training dynamics in the kernel regime (single network, ensemble
  mean and covariance, kernel regression, linearized finite networks).
- :mod:`.tracking`: GD of a finite MLP whose recorded metrics compare it with its kernel-regime limit.
- :mod:`.networks`: finite MLPs in the NTK and standard parametrizations, trained by gradient
  descent with the engine.

Example:
  >>> from jaxopt_lab import ntk
  >>> net = ntk.MLP((2, 1024, 1024, 1), "relu", sigma_w=1.0, sigma_b=0.1)
  >>> _, x = ntk.circle_inputs(64)
  >>> theta_inf = ntk.mlp_kernels(x, **net.kernel_kwargs()).ntk
  >>> theta_0 = ntk.empirical_ntk(net, net.init(jax.random.key(0)), x)
"""

from jaxopt_lab.ntk.analytic import (ACTIVATIONS, Kernels, activation_fn, mlp_kernels,
                                     mlp_kernels_blocked, mlp_kernels_diag)
from jaxopt_lab.ntk import layers
from jaxopt_lab.ntk.empirical import empirical_ntk
from jaxopt_lab.ntk.layers import monte_carlo_kernels, parallel, serial
from jaxopt_lab.ntk.networks import (MLP, GDState, MSEProblem, TrainTrace, circle_inputs, gd_mse,
                                     mse_loss, sphere_inputs, train_mse)
from jaxopt_lab.ntk.predict import (Ensemble, MSEDynamics, gp_inference,
                                    gradient_descent_mse_ensemble, linearize, linearized_mse,
                                    max_learning_rate, mse_dynamics, mse_ensemble, mse_predict,
                                    residual_components)
from jaxopt_lab.ntk.tracking import TrackedProblem, TrackedState, tracked_gd

__all__ = [
    "ACTIVATIONS", "Ensemble", "GDState", "Kernels", "MLP", "MSEDynamics", "MSEProblem",
    "TrainTrace", "activation_fn", "circle_inputs", "empirical_ntk", "gd_mse", "gp_inference",
    "gradient_descent_mse_ensemble", "layers", "linearize", "linearized_mse", "max_learning_rate",
    "mlp_kernels", "mlp_kernels_blocked", "mlp_kernels_diag", "monte_carlo_kernels",
    "mse_dynamics", "mse_ensemble", "mse_loss", "mse_predict", "parallel", "residual_components",
    "serial", "sphere_inputs", "train_mse", "TrackedProblem", "TrackedState", "tracked_gd",
]
