"""Kernel gradient descent converges along each NTK eigendirection at rate eta * lambda_i / n.

Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 5: under kernel gradient flow on the MSE
loss (1/2n) sum (f - y)^2 with rate eta, the training residual obeys r' = -(eta / n) Theta r, so its
component along the eigenvector v_i of Theta decays exactly as exp(-eta lambda_i t / n): convergence
is fastest along the top kernel principal components (the paper's Fig. 3).

Measured on scikit-learn's digits (a stand-in for MNIST; images normalized to the unit sphere),
analytic depth-4 ReLU NTK (3 hidden layers, sigma_w = 1, sigma_b = 0.1), one-hot centered targets,
f_0 = 0. The residual trajectory r(t) = expm(-eta Theta t / n) r_0 comes from scipy's Pade matrix
exponential (independent of any eigendecomposition); its components along numpy's eigenvectors give,
for each of the top-K modes, a decay rate fitted over >= 4 times spanning its decay from 1 to 1e-4
(fitting.loglinear_rate). Value: the largest relative deviation of a fitted rate from
eta * lambda_i / n. Float64 rounding of the exponential bounds it near 1e-12, hence the band.
Also reported: the deviation of the library's closed form (jaxopt_lab.ntk.mse_predict).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxopt_lab import ntk
from jaxopt_lab.fitting import loglinear_rate
from theory_checks.ntk_init_convergence import require_x64
from theory_checks.registry import Measurement, register

SIZES = {"quick": dict(points=64, modes=8, times=6), "full": dict(points=512, modes=32, times=8)}
LEARNING_RATE = 1.0
ARCH = dict(depth=4, activation="relu", sigma_w=1.0, sigma_b=0.1)


def digits_task(num_points: int) -> tuple[np.ndarray, np.ndarray]:
  """The first ``num_points`` digits as unit vectors, and centered one-hot targets (n, 10)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  data = load_digits()
  x = data.data[:num_points].astype(np.float64)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  y = np.eye(10)[data.target[:num_points]] - 0.1
  return x, y


@register(
    id="ntk.eigendirection_decay",
    paper="Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 5 and Fig. 3",
    claim="under kernel gradient descent the residual along each NTK eigenvector decays as "
          "exp(-eta lambda_i t / n)",
    predicted="fitted rate = eta lambda_i / n (relative deviation 0)", band=(0.0, 1e-9))
def check(preset: str, seed: int) -> Measurement:
  require_x64()
  s = SIZES[preset]
  x, y = digits_task(s["points"])
  n = s["points"]
  theta = np.asarray(ntk.mlp_kernels(jnp.asarray(x), **ARCH).ntk)
  lam, v = np.linalg.eigh(theta)
  r0 = -y  # f_0 = 0
  top = np.arange(n - 1, n - 1 - s["modes"], -1)
  deviations, rates = [], []
  worst_abs = 0.0
  dyn = ntk.mse_dynamics(jnp.asarray(theta), jnp.asarray(y), learning_rate=LEARNING_RATE)
  for i in top:
    rate = LEARNING_RATE * lam[i] / n
    t = np.linspace(0.0, np.log(1e4) / rate, s["times"])  # decay from 1 to 1e-4
    r = np.stack([scipy.linalg.expm(-LEARNING_RATE * theta * ti / n) @ r0 for ti in t])
    c = np.einsum("tno,n->to", r, v[:, i])  # (times, 10)
    k = int(np.argmax(np.abs(c[0])))  # the output channel with the largest component
    fit = loglinear_rate(t, np.abs(c[:, k]))
    deviations.append(float(abs(-fit.slope / rate - 1)))
    rates.append(float(rate))
    worst_abs = max(worst_abs, float(np.max(np.abs(c - np.exp(-rate * t)[:, None] * c[0]))
                                     / np.linalg.norm(r0)))
    f_lib, _ = ntk.mse_predict(dyn, jnp.asarray(t), jnp.zeros_like(jnp.asarray(y)))
    lib_dev = float(np.max(np.abs(np.asarray(f_lib) - y - r)) / np.linalg.norm(r0))
    worst_abs = max(worst_abs, lib_dev)
  return Measurement(value=max(deviations), details={
      "points": n, "modes": s["modes"], "times_per_mode": s["times"],
      "relative_rate_deviation": deviations, "rates": rates,
      "eigenvalue_range": [float(lam[0]), float(lam[-1])],
      "max_component_deviation_over_residual_norm": worst_abs, **ARCH})
