"""Kernel gradient descent converges along each NTK eigendirection at rate eta * lambda_i / n.

Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 5: under kernel gradient flow on the MSE
loss (1/2n) sum (f - y)^2 with rate eta, the training residual obeys r' = -(eta / n) Theta r, and a
test output obeys f'(x) = -(eta / n) Theta(x, X) r: the residual's component along the eigenvector
v_i of Theta decays as exp(-eta lambda_i t / n), fastest along the top principal components (Fig. 3).

What is checked is the library's predictor (:func:`jaxopt_lab.ntk.mse_predict`, built on one
eigendecomposition) against an independent solution of that linear ODE: scipy's Pade matrix
exponential of the (n + m)-dimensional system [[-eta Theta / n, 0], [-eta Theta(x, X) / n, 0]]
applied to (r_0, f_0(x)), at times spanning the top-K modes' decays from 1 to 1e-4. Value: the
largest deviation, train and test, relative to ||r_0||. Both are float64 solutions of a
well-conditioned problem (eta ||Theta|| t / n <= log(1e4) * lambda_max / lambda_K), so rounding
bounds the deviation near 1e-12: band [0, 1e-9]. The fitted decay rates of the exponential's
components along numpy's eigenvectors (true by construction) are in details.

Data: scikit-learn's digits (a stand-in for MNIST; images normalized to the unit sphere), a random
subset per seed offset, analytic depth-4 ReLU NTK (3 hidden layers, sigma_w = 1, sigma_b = 0.1),
one-hot centered targets, f_0 = 0 on the training points and a random f_0 on 16 test digits.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import scipy.linalg

from jaxopt_lab import ntk
from jaxopt_lab.fitting import loglinear_rate
from theory_checks.ntk_init_convergence import require_x64
from theory_checks.registry import Measurement, check_seed, register

SIZES = {"quick": dict(points=64, modes=8, times=6), "full": dict(points=512, modes=32, times=8)}
LEARNING_RATE = 1.0
ARCH = dict(depth=4, activation="relu", sigma_w=1.0, sigma_b=0.1)


def digits_task(num_points: int, seed: int = 0, num_test: int = 0):
  """``num_points`` random digits (and ``num_test`` others) as unit vectors, with centered one-hot
  targets (n, 10)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  data = load_digits()
  idx = np.random.default_rng(check_seed(seed, "data")).permutation(len(data.target))
  x = data.data[idx].astype(np.float64)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  y = np.eye(10)[data.target[idx]] - 0.1
  n = num_points
  return x[:n], y[:n], x[n:n + num_test]


@register(
    id="ntk.eigendirection_decay",
    paper="Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 5 and Fig. 3",
    claim="under kernel gradient descent the residual along each NTK eigenvector decays as "
          "exp(-eta lambda_i t / n): the library's predictor against the ODE's matrix exponential",
    predicted="max |f_lib - f_expm| / ||r_0|| = 0 (float64 rounding)", band=(0.0, 1e-9))
def check(preset: str, seed: int) -> Measurement:
  require_x64()
  s = SIZES[preset]
  n, m = s["points"], 16
  x, y, x_test = digits_task(n, seed, m)
  k = ntk.mlp_kernels(jnp.asarray(np.concatenate([x, x_test])), **ARCH).ntk
  k = np.asarray(k)
  theta, theta_test = k[:n, :n], k[n:, :n]
  lam, v = np.linalg.eigh(theta)
  r0 = -y  # f_0 = 0 on the training points
  f0_test = np.random.default_rng(check_seed(seed, "f0")).normal(size=(m, 10))
  system = np.zeros((n + m, n + m))
  system[:n, :n] = -LEARNING_RATE * theta / n
  system[n:, :n] = -LEARNING_RATE * theta_test / n
  state0 = np.concatenate([r0, f0_test])
  dyn = ntk.mse_dynamics(jnp.asarray(theta), jnp.asarray(y), learning_rate=LEARNING_RATE)
  top = np.arange(n - 1, n - 1 - s["modes"], -1)
  deviations, rates, rate_dev = [], [], []
  for i in top:
    rate = LEARNING_RATE * lam[i] / n
    t = np.linspace(0.0, np.log(1e4) / rate, s["times"])  # decay from 1 to 1e-4
    state = np.stack([scipy.linalg.expm(system * ti) @ state0 for ti in t])
    r, f_test = state[:, :n], state[:, n:]
    f_lib, f_lib_test = ntk.mse_predict(dyn, jnp.asarray(t), jnp.zeros_like(jnp.asarray(y)),
                                        jnp.asarray(f0_test), jnp.asarray(theta_test))
    deviations.append(float(max(np.max(np.abs(np.asarray(f_lib) - y - r)),
                                np.max(np.abs(np.asarray(f_lib_test) - f_test)))
                            / np.linalg.norm(r0)))
    c = np.einsum("tno,n->to", r, v[:, i])  # (times, 10)
    ch = int(np.argmax(np.abs(c[0])))  # the output channel with the largest component
    rate_dev.append(float(abs(-loglinear_rate(t, np.abs(c[:, ch])).slope / rate - 1)))
    rates.append(float(rate))
  return Measurement(value=max(deviations), details={
      "points": n, "test_points": m, "modes": s["modes"], "times_per_mode": s["times"],
      "library_deviation_per_mode": deviations, "rates": rates,
      "expm_rate_deviation_by_construction": rate_dev,
      "eigenvalue_range": [float(lam[0]), float(lam[-1])], **ARCH})
