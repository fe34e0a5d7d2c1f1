r"""Gradient flows of the UFM: the central-path flow of Theorem 3.1 and the joint flow on (W, H).

Both are integrated by classical fixed-step RK4 in ``lax.scan`` (pure functions of the initial point and
traced hyperparameters: jit once per shape, vmap over seeds and hyperparameters). The global error is
:math:`O(dt^4)`; ``tests/test_neural_collapse_flows.py`` measures it by halving ``dt`` (the error ratio
is 16 to within 2%) and states its size at the fact sheet's ``dt = 1e-3``.

Clock. The central-path field is :math:`v(H) = -[W^{*\top}(W^*H - Y) + \lambda_H H] = -Kn\nabla
\mathcal L(H)` with :math:`W^* = Y H^\top(HH^\top + n\lambda_W I)^{-1}` (eq. 1's normalization: the
:math:`n` in front of :math:`\lambda_W` comes from :math:`\lambda_W/(2K)` against :math:`1/(2Kn)`), so
``t`` here is :math:`Kn` times the time of plain gradient flow on :math:`\mathcal L`. In this clock the
statements of Theorem 3.1 hold as printed (:math:`e^{2\lambda_H t}\mathrm{tr}\,\Sigma_W` non-increasing)
and eq. 2's minimizer is one implicit step of size :math:`1/\beta`. The joint flow uses the same clock:
:math:`(\dot W, \dot H) = -Kn\,\nabla f(W, H)`.

Reference: Tirer, Huang & Niles-Weed 2023 (arXiv:2210.16658), Section 3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Float

from jaxopt_lab.engine.algorithm import Algorithm
from jaxopt_lab.neural_collapse import metrics, models, validation

PyTree = Any


def rk4_step(field: Callable[[PyTree], PyTree], y: PyTree, dt: ArrayLike) -> PyTree:
  r"""One classical Runge-Kutta step for :math:`\dot y = v(y)` on a pytree.

  .. math:: y_{+} = y + \tfrac{dt}{6}(k_1 + 2k_2 + 2k_3 + k_4), \quad k_1 = v(y), \
            k_2 = v(y + \tfrac{dt}{2}k_1), \ k_3 = v(y + \tfrac{dt}{2}k_2), \ k_4 = v(y + dt\,k_3)

  Reference: Hairer, Norsett & Wanner, Solving ODEs I (1993), Section II.1.
  """
  axpy = lambda a, x, z: jax.tree.map(lambda xi, zi: xi + a * zi, x, z)
  k1 = field(y)
  k2 = field(axpy(dt / 2, y, k1))
  k3 = field(axpy(dt / 2, y, k2))
  k4 = field(axpy(dt, y, k3))
  incr = jax.tree.map(lambda a, b, c, e: (a + 2 * b + 2 * c + e) / 6, k1, k2, k3, k4)
  return axpy(dt, y, incr)


class FlowResult(NamedTuple):
  """The end point of a flow and its records.

  Attributes:
    final: the state at ``t = num_steps * dt`` (``H`` or :class:`~models.UFMParams`).
    records: dict of arrays of shape ``(num_steps // record_every + 1,)``; index 0 is ``t = 0``.
  """

  final: PyTree
  records: dict[str, jax.Array]


def _cheap_records(H: jax.Array, t: jax.Array, lambda_H: ArrayLike, num_classes: int
                   ) -> dict[str, jax.Array]:
  labels = metrics.class_by_class_labels(num_classes, H.shape[1] // num_classes)
  tr_w, tr_b = metrics.scatter_traces(H, labels, num_classes)
  growth = jnp.exp(2 * lambda_H * t)
  return {"t": t, "tr_sigma_w": tr_w, "tr_sigma_b": tr_b,
          "nc1_tilde": metrics.nc1_tilde_core(H, labels, num_classes),
          "scaled_tr_sigma_w": growth * tr_w, "scaled_tr_sigma_b": growth * tr_b}


def _full_records(H: jax.Array, W: jax.Array, num_classes: int) -> dict[str, jax.Array]:
  labels = metrics.class_by_class_labels(num_classes, H.shape[1] // num_classes)
  return metrics.metrics_core(H, labels, W, None, num_classes)


def _scan_flow(field, y0, record_fn, dt, num_steps, record_every):
  def one_record(carry, _):
    y, step = carry
    y = jax.lax.fori_loop(0, record_every, lambda _, z: rk4_step(field, z, dt), y)
    step = step + record_every
    return (y, step), record_fn(y, step * dt)

  first = record_fn(y0, jnp.zeros((), jnp.result_type(dt, float)))
  (y, _), recs = jax.lax.scan(one_record, (y0, jnp.zeros((), jnp.int32)), None,
                              length=num_steps // record_every)
  recs = jax.tree.map(lambda a, r: jnp.concatenate([a[None], r]), first, recs)
  return FlowResult(y, recs)


@functools.partial(jax.jit, static_argnames=("num_classes", "num_steps", "record_every",
                                             "full_metrics"))
def _central_path_core(H0, lambda_W, lambda_H, dt, *, num_classes, num_steps, record_every,
                       full_metrics):
  field = functools.partial(models.central_path_field, num_classes=num_classes, lambda_W=lambda_W,
                            lambda_H=lambda_H)

  def record(H, t):
    rec = _cheap_records(H, t, lambda_H, num_classes)
    rec["loss"] = models.reduced_loss(H, num_classes=num_classes, lambda_W=lambda_W,
                                      lambda_H=lambda_H)
    if full_metrics:
      W = models.optimal_classifier(H, num_classes=num_classes, lambda_W=lambda_W)
      rec.update({k: v for k, v in _full_records(H, W, num_classes).items() if k not in rec})
    return rec

  return _scan_flow(field, H0, record, dt, num_steps, record_every)


def _check_flow_args(H0, num_classes, lambda_W, lambda_H, dt, num_steps, record_every):
  validation.check_columns(H0, num_classes, "H0")
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H)
  validation.check_nonnegative("dt", dt, strict=True)
  if num_steps < 1 or record_every < 1 or num_steps % record_every:
    raise ValueError(f"num_steps ({num_steps}) must be a positive multiple of record_every "
                     f"({record_every})")


def central_path_flow(H0: Float[ArrayLike, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                      lambda_H: ArrayLike, dt: ArrayLike, num_steps: int, record_every: int = 1,
                      full_metrics: bool = False) -> FlowResult:
  r"""Gradient flow on the central path (Theorem 3.1), RK4 with a fixed step.

  .. math:: \frac{dH}{dt} = -\left[W^*(H)^\top (W^*(H) H - Y) + \lambda_H H\right], \qquad
            W^*(H) = Y H^\top (H H^\top + n\lambda_W I_d)^{-1}

  Records (every ``record_every`` steps, and at t = 0): ``t``, ``tr_sigma_w``, ``tr_sigma_b``,
  ``nc1_tilde``, ``scaled_tr_sigma_w`` :math:`= e^{2\lambda_H t}\mathrm{tr}\,\Sigma_W`,
  ``scaled_tr_sigma_b``, ``loss`` (the reduced loss :math:`\mathcal L(H_t)`), and with
  ``full_metrics`` every metric of :func:`~jaxopt_lab.neural_collapse.metrics.metrics_core` with
  :math:`W = W^*(H_t)` (NC1, NC2, NC3, NC4; an SVD per record).

  Args:
    H0: initial features, columns class by class (``N = Kn``).
    num_classes: K (static).
    lambda_W: > 0; lambda_H: >= 0; dt: > 0 (all traceable: vmap over them).
    num_steps, record_every: static step counts (``num_steps % record_every == 0``).
    full_metrics: record all NC metrics (static).

  Returns:
    :class:`FlowResult` with ``final`` the features at ``t = num_steps * dt``.

  Raises:
    ValueError: for bad shapes, non-finite H0, N not a multiple of K or invalid hyperparameters.

  Example:
    >>> res = central_path_flow(H0, num_classes=4, lambda_W=2**0.5, lambda_H=0.1, dt=1e-3,
    ...                         num_steps=20_000, record_every=100)
    >>> res.records["nc1_tilde"][-1]

  Reference: arXiv:2210.16658 Section 3, Theorem 3.1.
  """
  H0 = jnp.asarray(H0)
  _check_flow_args(H0, num_classes, lambda_W, lambda_H, dt, num_steps, record_every)
  return _central_path_core(H0, *validation.as_float(lambda_W, lambda_H, dt), num_classes=num_classes,
                            num_steps=num_steps, record_every=record_every, full_metrics=full_metrics)


@functools.partial(jax.jit, static_argnames=("num_classes", "num_steps", "record_every",
                                             "full_metrics"))
def _joint_core(W0, H0, lambda_W, lambda_H, dt, anchor, beta, *, num_classes, num_steps,
                record_every, full_metrics):
  k, n = num_classes, H0.shape[1] // num_classes
  b0 = jnp.zeros(k, H0.dtype)

  def loss(p):
    if anchor is None:
      return models.mse_loss(p, num_classes=k, lambda_W=lambda_W, lambda_H=lambda_H)
    return models.perturbed_loss(p, anchor, num_classes=k, lambda_W=lambda_W, lambda_H=lambda_H,
                                 beta=beta)

  def field(p):
    g = jax.grad(loss)(p)
    return models.UFMParams(-k * n * g.W, -k * n * g.H, jnp.zeros_like(g.b))

  def record(p, t):
    rec = _cheap_records(p.H, t, lambda_H, k)
    rec["loss"] = loss(p)
    rec["w_norm_sq"] = jnp.sum(p.W**2)
    if full_metrics:
      rec.update({k: v for k, v in _full_records(p.H, p.W, k).items() if k not in rec})
    return rec

  return _scan_flow(field, models.UFMParams(W0, H0, b0), record, dt, num_steps, record_every)


def joint_flow(W0: Float[ArrayLike, "K d"], H0: Float[ArrayLike, "d N"], *, num_classes: int,
               lambda_W: ArrayLike, lambda_H: ArrayLike, dt: ArrayLike, num_steps: int,
               record_every: int = 1, anchor: Float[ArrayLike, "d N"] | None = None,
               beta: ArrayLike = 0.0, full_metrics: bool = False) -> FlowResult:
  r"""Joint gradient flow on :math:`(W, H)` of eq. 1 (or of eq. 2 with ``anchor`` :math:`=H_0`), RK4.

  .. math:: \dot W = -[(WH - Y)H^\top + n\lambda_W W], \qquad
            \dot H = -[W^\top(WH - Y) + \lambda_H H] \;\big(- \beta (H - H_0)\big)

  i.e. :math:`-Kn\nabla f`, the central-path flow's clock. Records as in :func:`central_path_flow`
  (cheap ones) plus ``loss`` and ``w_norm_sq``, and with ``full_metrics`` (static) every metric of
  :func:`~jaxopt_lab.neural_collapse.metrics.metrics_core` with the flow's own :math:`W_t` (NC1-NC4);
  ``final`` is a :class:`~models.UFMParams` (b = 0).

  Raises:
    ValueError: for bad shapes or non-finite input, or invalid hyperparameters.

  Reference: arXiv:2210.16658 eqs. 1-2.
  """
  W0, H0 = jnp.asarray(W0), jnp.asarray(H0)
  _check_flow_args(H0, num_classes, lambda_W, lambda_H, dt, num_steps, record_every)
  if W0.shape != (num_classes, H0.shape[0]):
    raise ValueError(f"W0 must have shape {(num_classes, H0.shape[0])}, got {W0.shape}")
  validation.check_finite(W0, "W0")
  if anchor is not None:
    anchor = jnp.asarray(anchor)
    if anchor.shape != H0.shape:
      raise ValueError(f"anchor must have the shape of H0 {H0.shape}, got {anchor.shape}")
    validation.check_finite(anchor, "anchor")
    validation.check_nonnegative("beta", beta)
  return _joint_core(W0, H0, *validation.as_float(lambda_W, lambda_H, dt), anchor,
                     validation.as_float(beta), num_classes=num_classes,
                     num_steps=num_steps, record_every=record_every, full_metrics=full_metrics)


class CentralPathState(NamedTuple):
  """State of :func:`central_path_algorithm`: the features and the int32 step count."""

  H: jax.Array
  step: jax.Array


def central_path_algorithm(*, num_classes: int, n: int, d: int, dt: float,
                           mean_scale: float = 1.0, noise: float = 1.0,
                           full_metrics: bool = False) -> Algorithm:
  r"""The central-path flow as an engine :class:`~jaxopt_lab.engine.algorithm.Algorithm`.

  ``init(key, problem)`` draws :math:`H_0` by
  :func:`~jaxopt_lab.neural_collapse.models.gaussian_class_features` when ``problem`` is None, or takes
  ``problem`` as :math:`H_0`; ``step(state, problem, *, lambda_W, lambda_H)`` is one RK4 step and
  reports the cheap records of :func:`central_path_flow` (no validation: used inside sweeps), and
  with ``full_metrics`` NC1-NC4 with :math:`W = W^*(H_t)` as :func:`central_path_flow` does (computed
  only at the recorded steps: the engine drops the other steps' metrics).

  Example:
    >>> alg = central_path_algorithm(num_classes=4, n=10, d=10, dt=1e-3)
    >>> state, recs = run(alg, jax.random.key(0), None, {"lambda_W": 1.41, "lambda_H": 0.1},
    ...                   num_steps=20_000, record_every=100)

  Raises:
    ValueError: unless ``num_classes >= 2``, ``n >= 1`` and ``d >= 1`` are ints, ``dt > 0``,
      ``mean_scale >= 0`` and ``noise >= 0`` (all finite).
  """
  for name, v, lo in (("num_classes", num_classes, 2), ("n", n, 1), ("d", d, 1)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
      raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
  validation.check_nonnegative("dt", dt, strict=True)
  validation.check_nonnegative("mean_scale", mean_scale)
  validation.check_nonnegative("noise", noise)

  def init(key, problem):
    if problem is None:
      H0 = models.gaussian_class_features(key, num_classes=num_classes, n=n, d=d,
                                          mean_scale=mean_scale, noise=noise)
    else:
      H0 = jnp.asarray(problem)
    return CentralPathState(H0, jnp.zeros((), jnp.int32))

  def step(state, problem, *, lambda_W, lambda_H):
    del problem
    field = functools.partial(models.central_path_field, num_classes=num_classes,
                              lambda_W=lambda_W, lambda_H=lambda_H)
    H = rk4_step(field, state.H, dt)
    s = state.step + 1
    rec = _cheap_records(H, s * dt, lambda_H, num_classes)
    if full_metrics:
      W = models.optimal_classifier(H, num_classes=num_classes, lambda_W=lambda_W)
      rec.update({k: v for k, v in _full_records(H, W, num_classes).items() if k not in rec})
    return CentralPathState(H, s), rec

  return Algorithm("central_path_flow", init, step)
