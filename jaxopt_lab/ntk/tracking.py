r"""Finite-network GD tracked against its infinite-width kernel-regime trajectory.

Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572). A finite NTK-parametrized MLP is trained by
full-batch GD on :math:`\mathcal{L} = \frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2`, and every recorded
step is compared with the limit started from the same :math:`f_0`:

.. math::
    f^\infty_t(x) = f_0(x) + \Theta(x, X)\,\Theta^{-1}\big(I - (I - \eta\Theta/n)^t\big)(Y - f_0(X)),

the residual's components along the top eigenvectors :math:`v_k` of :math:`\Theta(X, X)` against their
predicted decay :math:`|1 - \eta\lambda_k/n|^t`, and the relative change of the empirical NTK
(Theorem 2: it vanishes as the width grows; as 1/width by Dyer & Gur-Ari 2019, arXiv:1909.11304).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_lab.engine import Algorithm
from jaxopt_lab.ntk.empirical import empirical_ntk
from jaxopt_lab.ntk.networks import MLP, GDState, MSEProblem, gd_mse, mse_loss
from jaxopt_lab.ntk.predict import MSEDynamics, mse_predict, residual_components


class TrackedProblem(NamedTuple):
  """What every run shares: the data and the analytic kernels' one eigendecomposition.

  ``dyn`` is :func:`jaxopt_lab.ntk.mse_dynamics` of the analytic NTK at learning rate 1; a run with
  rate ``lr`` scales its ``rate`` (:math:`\\eta / n`) by ``lr``, which is all the rate enters.
  """

  x: jax.Array
  y: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  dyn: MSEDynamics
  ntk_test_train: jax.Array


class TrackedState(NamedTuple):
  """GD state plus what the comparisons need from initialization."""

  gd: GDState
  t: jax.Array  # int32 steps taken
  f0_train: jax.Array
  f0_test: jax.Array
  ntk0: jax.Array  # empirical NTK (traced over outputs) on the training inputs at init; (1, 1) if off


def _rms(a: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.mean(a * a))


def tracked_gd(net: MLP, *, track_ntk: bool, num_pcs: int) -> Algorithm:
  r"""Full-batch GD (:func:`jaxopt_lab.ntk.gd_mse`, traced ``lr``) whose metrics compare the network
  with its infinite-width kernel-regime trajectory (module docstring).

  Args:
    net: the finite network.
    track_ntk: also record ``ntk_change``, :math:`\|\hat\Theta_t - \hat\Theta_0\|_F /
      \|\hat\Theta_0\|_F` on the training inputs (one empirical NTK per recorded step).
    num_pcs: record the residual's norm along the top ``num_pcs`` eigenvectors of the analytic NTK
      (``pc{k}_residual``) and its kernel-regime prediction (``pc{k}_predicted``).

  Returns:
    An engine :class:`~jaxopt_lab.engine.Algorithm` on :class:`TrackedProblem`; metrics ``loss``,
    ``test_loss``, ``gap_train``, ``gap_test`` (RMS distance to :math:`f^\infty_t` over RMS of
    the targets) and the optional ones above.

  Example:
    >>> alg = tracked_gd(net, track_ntk=True, num_pcs=3)
    >>> res = sweep(alg, problem, seeds=range(8), hp={"lr": [0.5, 1.0]}, num_steps=1000,
    ...             record_every=100)

  Reference: Jacot et al. 2018, arXiv:1806.07572 (Theorem 2 and Section 5).
  """
  gd = gd_mse(net)

  def init(key, problem: TrackedProblem) -> TrackedState:
    inner = gd.init(key, MSEProblem(problem.x, problem.y))
    dtype = problem.x.dtype
    ntk0 = (empirical_ntk(net, inner.params, problem.x) if track_ntk
            else jnp.zeros((1, 1), dtype))
    return TrackedState(inner, jnp.zeros((), jnp.int32), net.apply(inner.params, problem.x),
                        net.apply(inner.params, problem.x_test), ntk0)

  def step(state: TrackedState, problem: TrackedProblem, *,
           lr) -> tuple[TrackedState, dict[str, jax.Array]]:
    inner, metrics = gd.step(state.gd, MSEProblem(problem.x, problem.y), lr=lr)
    t = state.t + 1
    params = inner.params
    f_train, f_test = net.apply(params, problem.x), net.apply(params, problem.x_test)
    dyn = problem.dyn._replace(rate=problem.dyn.rate * lr)
    pred_train, pred_test = mse_predict(dyn, t[None], state.f0_train, state.f0_test,
                                            problem.ntk_test_train, discrete=True)
    scale = _rms(problem.y)
    metrics["test_loss"] = mse_loss(net, params, problem.x_test, problem.y_test)
    metrics["gap_train"] = _rms(f_train - pred_train[0]) / scale
    metrics["gap_test"] = _rms(f_test - pred_test[0]) / scale
    if track_ntk:
      theta = empirical_ntk(net, params, problem.x)
      metrics["ntk_change"] = jnp.linalg.norm(theta - state.ntk0) / jnp.linalg.norm(state.ntk0)
    if num_pcs:  # components along the top eigenvectors (residual_components is ascending)
      got = jnp.linalg.norm(residual_components(dyn, f_train)[::-1][:num_pcs], axis=-1)
      want = jnp.linalg.norm(residual_components(dyn, pred_train[0])[::-1][:num_pcs], axis=-1)
      for k in range(num_pcs):
        metrics[f"pc{k + 1}_residual"] = got[k]
        metrics[f"pc{k + 1}_predicted"] = want[k]
    return TrackedState(inner, t, state.f0_train, state.f0_test, state.ntk0), metrics

  return Algorithm(f"ntk_gd_mse_{net.activation}_w{net.widths[1]}_L{net.depth}", init, step)


__all__ = ["TrackedProblem", "TrackedState", "tracked_gd"]
