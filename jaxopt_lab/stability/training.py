r"""GD and minibatch SGD on the MSE as engine algorithms, with curvature traced inside the jitted loop.

An algorithm here trains a :class:`~jaxopt_lab.stability.models.Model` on a
:class:`~jaxopt_lab.stability.models.Dataset` (the problem pytree) with

.. math:: \theta_{t+1} = \theta_t - \eta\, c_t\, \nabla L_{\xi_t}(\theta_t), \qquad
   L_\xi = \frac1B\sum_{i\in\xi}\tfrac12\|f(x_i;\theta) - y_i\|^2,

where :math:`\xi_t` is the full data set (GD) or a batch of ``B`` indices drawn with replacement,
as a uniform ``B``-subset (without replacement, independent across steps: the sampling of the exact
stability criterion), or from a fresh permutation every epoch (``"reshuffle"``, the last partial
batch of an epoch dropped); :math:`c_t = \min(1, \text{clip}/\|\nabla L_\xi\|)` while
:math:`t < \text{clip\_steps}`, else 1 (no clipping by default).

Every ``monitor.every`` steps the step also measures, on the full training set: the loss, the
sharpness :math:`\lambda_{\max}(\nabla^2 L)` (power iteration or Lanczos warm-started from the
previous top vector, which the state carries), the exact Gauss-Newton trace, Hutchinson's trace and
:math:`\|H\|_F^2`, norms. The measurement sits in :func:`when`, a ``lax.cond`` that stays a
conditional under ``vmap`` (whose batched predicate would otherwise turn it into a ``select`` that
computes both branches every step), so a sweep pays for curvature only on the steps it records.
Between measurements the metrics repeat the last values (``monitor_step`` says when they were taken);
run the engine with ``record_every = monitor.every`` to record each measurement once.

Traced hyperparameters: ``eta`` (step size, >= 0), optional ``clip`` and ``clip_steps``. Static:
the model, the batch size, the sampling and the :class:`Monitor`.

Reference: Wu & Su 2023 (arXiv:2305.17490); edge of stability: Cohen et al. 2021 (arXiv:2103.00065).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_batching import custom_vmap
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from jaxopt_lab.engine.algorithm import Algorithm, Metrics
from jaxopt_lab.stability import curvature
from jaxopt_lab.stability.models import Dataset, Model, mse

PyTree = Any
SAMPLINGS = ("with_replacement", "without_replacement", "reshuffle", "full")


class Monitor(NamedTuple):
  """What the training step measures, and how often (static).

  Attributes:
    every: measure after steps ``every, 2 every, ...``.
    power_iters: Hessian-vector products of the warm-started power iteration for the sharpness
      (0: no sharpness, unless ``lanczos_steps`` > 0).
    lanczos_steps: if > 0, the sharpness is the largest algebraic Ritz value of this many Lanczos
      steps warm-started from the previous top vector (robust to large negative curvature).
    gn_trace: record the exact Gauss-Newton trace ``gn_trace`` (per-example Jacobians: about ``n``
      per-example gradients per measurement; in a 512-run vmapped sweep of the diagonal net, every
      10 steps, it cost 2-6 times the training itself, so switch it off where only the sharpness
      is wanted).
    gn_batch_size: examples per chunk for the Gauss-Newton trace (None: all at once).
    hutchinson_probes: if > 0, record Hutchinson's ``hutch_trace`` of the Hessian.
    frobenius_probes: if > 0, record ``frob_sq``, an estimate of :math:`\\|H\\|_F^2`.
  """

  every: int = 10
  power_iters: int = 20
  lanczos_steps: int = 0
  gn_trace: bool = True
  gn_batch_size: int | None = None
  hutchinson_probes: int = 0
  frobenius_probes: int = 0


class TrainState(NamedTuple):
  """State of a training run.

  Attributes:
    params: the model parameters.
    batch_key: key of the batch draws (``fold_in(batch_key, t)`` per step, per epoch for reshuffle).
    probe_key: key of the curvature probes (``fold_in(probe_key, t)``).
    t: int32, steps taken.
    eigvec: ``(d,)`` flat top Hessian eigenvector estimate (the warm start of the next measurement).
    monitor: the last measurement (the step's metrics).
  """

  params: PyTree
  batch_key: jax.Array
  probe_key: jax.Array
  t: Int[Array, ""]
  eigvec: Float[Array, " d"]
  monitor: dict[str, jax.Array]


# --------------------------------------------------------------------------------------------------
# A conditional that stays one under vmap.


def _broadcast(tree: PyTree, batched: PyTree, size: int) -> PyTree:
  return jax.tree.map(
      lambda x, b: x if b else jnp.broadcast_to(x, (size,) + jnp.shape(x)), tree, batched)


def when(pred: ArrayLike, fn: Callable[[PyTree], PyTree], operand: PyTree,
         otherwise: PyTree) -> PyTree:
  r"""``fn(operand) if pred else otherwise``, a ``lax.cond`` that stays a conditional under ``vmap``.

  Under ``vmap`` with a batched ``pred``, ``lax.cond`` becomes a ``select`` and computes ``fn`` for
  every member of the batch at every call. Here the batching rule computes the vmapped ``fn`` only
  if *some* member's ``pred`` is true (one ``lax.cond`` on ``any(pred)``) and then selects per
  member, so the result is the same as the elementwise definition, and it is cheap when ``pred`` is
  shared by the batch (a step counter: every run of a sweep measures at the same steps). Nested
  vmaps recurse. Not differentiable (it is for measurements).

  Args:
    pred: boolean scalar.
    fn: ``operand -> tree`` shaped like ``otherwise``.
    operand: a pytree of arrays.
    otherwise: the result when ``pred`` is false.

  Returns:
    ``fn(operand)`` or ``otherwise``.

  Example:
    >>> metrics = when(step % 10 == 0, measure, params, old_metrics)
  """

  @custom_vmap
  def _when(pred, operand, otherwise):
    return lax.cond(pred, fn, lambda _: otherwise, operand)

  @_when.def_vmap
  def _rule(axis_size, in_batched, pred, operand, otherwise):
    pred_b, op_b, other_b = in_batched
    otherwise = _broadcast(otherwise, other_b, axis_size)
    in_axes = jax.tree.map(lambda b: 0 if b else None, op_b)
    vfn = jax.vmap(fn, in_axes=(in_axes,), axis_size=axis_size)
    if not pred_b:
      out = when(pred, lambda args: vfn(args[0]), (operand, otherwise), otherwise)
    else:

      def chosen(args):
        operand, otherwise, pred = args
        new = vfn(operand)
        return jax.tree.map(
            lambda a, b: jnp.where(jnp.reshape(pred, (-1,) + (1,) * (a.ndim - 1)), a, b),
            new, otherwise)

      out = when(jnp.any(pred), chosen, (operand, otherwise, pred), otherwise)
    return out, jax.tree.map(lambda _: True, out)

  return _when(pred, operand, otherwise)


# --------------------------------------------------------------------------------------------------
# Losses and measurements.


def loss_fn(model: Model, x: jax.Array, y: jax.Array) -> Callable[[PyTree], jax.Array]:
  r"""``params -> L(params)``, the mean squared error :math:`\frac1n\sum_i\tfrac12\|f(x_i) - y_i\|^2`."""
  return lambda params: mse(model.apply(params, x), y)


def measure(model: Model, monitor: Monitor, params: PyTree, eigvec: jax.Array, data: Dataset,
            key: jax.Array) -> tuple[dict[str, jax.Array], jax.Array]:
  r"""The metrics of a training state on the full training set, and the new top eigenvector.

  Metrics: ``loss``, ``test_loss`` (if the data has a test set), ``grad_norm``
  :math:`\|\nabla L\|`, ``param_norm`` :math:`\|\theta\|_2`, the model's norms, and as the monitor
  asks ``sharpness`` (with ``sharpness_residual`` :math:`\|Hv - \lambda v\|`), ``gn_trace``,
  ``hutch_trace``, ``frob_sq``.

  Example:
    >>> metrics, v = measure(model, Monitor(), params, v, data, jax.random.key(0))
  """
  loss = loss_fn(model, data.x, data.y)
  dtype = eigvec.dtype
  out = {"loss": loss(params)}
  if data.x_test is not None:
    out["test_loss"] = mse(model.apply(params, data.x_test), data.y_test)
  g = jax.grad(loss)(params)
  out["grad_norm"] = jnp.linalg.norm(ravel_pytree(g)[0])
  out["param_norm"] = jnp.linalg.norm(ravel_pytree(params)[0])
  out.update(model.norms(params))
  k_hutch, k_frob, k_lanczos = jax.random.split(key, 3)
  if monitor.power_iters > 0 or monitor.lanczos_steps > 0:
    matvec, d = curvature.hessian_operator(loss, params)
    if monitor.lanczos_steps > 0:
      eig = curvature.lanczos_eigen(matvec, eigvec, min(monitor.lanczos_steps, d), key=k_lanczos)
    else:
      eig = curvature.power_iteration(matvec, eigvec[:, None], monitor.power_iters)
    eigvec = eig.vectors[:, 0]
    out["sharpness"] = eig.values[0]
    out["sharpness_residual"] = eig.residuals[0]
  if monitor.gn_trace:
    out["gn_trace"] = curvature.gauss_newton_trace(model.apply, params, data.x,
                                                   batch_size=monitor.gn_batch_size)
  if monitor.hutchinson_probes > 0:
    out["hutch_trace"] = curvature.hutchinson_trace(
        loss, params, k_hutch, num_probes=monitor.hutchinson_probes).value
  if monitor.frobenius_probes > 0:
    out["frob_sq"] = curvature.frobenius_sq(
        loss, params, k_frob, num_probes=monitor.frobenius_probes).value
  out = {k: jnp.asarray(v, dtype) for k, v in out.items()}
  return out, eigvec


# --------------------------------------------------------------------------------------------------
# The algorithm.


def _check_eta(eta: ArrayLike) -> None:
  """Raises for a negative concrete ``eta``; traced values are guarded in the step instead."""
  if isinstance(eta, jax.core.Tracer):
    return
  arr = np.asarray(eta)
  if np.any(~np.isfinite(arr)) or np.any(arr < 0):
    raise ValueError(f"the step size eta must be finite and >= 0, got {eta!r}")


def _check_batch(batch_size: int, n: int) -> None:
  if batch_size > n:
    raise ValueError(f"batch size B = {batch_size} exceeds the number of examples n = {n}")


def train_init(key: jax.Array, problem: Dataset, *, model: Model, batch_size: int | None,
               monitor: Monitor) -> TrainState:
  r"""Initial :class:`TrainState`: ``model.init`` in the data's dtype, keys split by purpose, a random
  unit start vector for the sharpness, and zero metrics with ``monitor_step = -1`` (nothing measured
  yet: the first measurement is after step ``monitor.every``; call :func:`measure` for the init).

  Example:
    >>> state = train_init(jax.random.key(0), data, model=model, batch_size=1, monitor=Monitor())

  Reference: Wu & Su 2023 (arXiv:2305.17490).
  """
  n = problem.x.shape[0]
  _check_batch(n if batch_size is None else batch_size, n)
  dtype = problem.x.dtype
  k_init, k_batch, k_probe, k_vec = jax.random.split(key, 4)
  params = model.init(k_init, dtype)
  d = ravel_pytree(params)[0].size
  v0 = jax.random.normal(k_vec, (d,), dtype)
  v0 = v0 / jnp.linalg.norm(v0)
  shapes = jax.eval_shape(lambda: measure(model, monitor, params, v0, problem, k_probe)[0])
  metrics = {k: jnp.zeros(s.shape, s.dtype) for k, s in shapes.items()}
  metrics["monitor_step"] = jnp.full((), -1, jnp.int32)
  return TrainState(params, k_batch, k_probe, jnp.zeros((), jnp.int32), v0, metrics)


def batch_indices(key: jax.Array, t: jax.Array, *, n: int, batch_size: int,
                  sampling: str) -> Int[Array, " B"]:
  r"""The indices :math:`\xi_t` of step ``t`` (a pure function of the key and the step).

  ``with_replacement``: ``B`` i.i.d. uniform indices; ``without_replacement``: a uniform ``B``-subset,
  independent across steps; ``reshuffle``: consecutive slices of a permutation drawn per epoch of
  ``n // B`` steps; ``full``: ``0..n-1``.

  Example:
    >>> idx = batch_indices(key, jnp.int32(3), n=60, batch_size=1, sampling="with_replacement")
  """
  if sampling == "full":
    return jnp.arange(n)
  if sampling == "with_replacement":
    return jax.random.randint(jax.random.fold_in(key, t), (batch_size,), 0, n)
  if sampling == "without_replacement":
    return jax.random.permutation(jax.random.fold_in(key, t), n)[:batch_size]
  if sampling == "reshuffle":
    per_epoch = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, t // per_epoch), n)
    return lax.dynamic_slice(perm, ((t % per_epoch) * batch_size,), (batch_size,))
  raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")


def train_step(state: TrainState, problem: Dataset, *, eta: ArrayLike, clip: ArrayLike = np.inf,
               clip_steps: ArrayLike = np.inf, model: Model, batch_size: int | None, sampling: str,
               monitor: Monitor) -> tuple[TrainState, Metrics]:
  r"""One (S)GD step, then the monitor's measurement if the new step count is a multiple of ``every``.

  .. math:: \theta \leftarrow \theta - \eta\,\min\big(1, \tfrac{\text{clip}}{\|g\|}\big)\, g,
     \qquad g = \nabla L_{\xi_t}(\theta)

  (the clipping factor only while ``t < clip_steps``). A negative traced ``eta`` cannot raise inside
  ``jit``: it makes the parameters NaN, so the engine marks the run diverged at step 1; a concrete
  one raises ``ValueError``.

  Args:
    state: a :class:`TrainState`.
    problem: the :class:`Dataset`.
    eta: step size (traced).
    clip: maximal gradient norm (traced; default: no clipping).
    clip_steps: clip only during the first ``clip_steps`` steps (traced; default: always).
    model: the model (static).
    batch_size: ``B`` (static; None for GD).
    sampling: one of ``"with_replacement"``, ``"without_replacement"``, ``"reshuffle"``, ``"full"``.
    monitor: the :class:`Monitor` (static).

  Returns:
    The new state and its metrics (the latest measurement).

  Example:
    >>> state, metrics = train_step(state, data, eta=0.1, model=model, batch_size=1,
    ...                             sampling="with_replacement", monitor=Monitor())

  Reference: Wu & Su 2023 (arXiv:2305.17490), SGD with batch size B.
  """
  _check_eta(eta)
  x, y = problem.x, problem.y
  n = x.shape[0]
  b = n if batch_size is None else batch_size
  _check_batch(b, n)
  dtype = x.dtype
  eta = jnp.asarray(eta, dtype)
  if sampling != "full":
    idx = batch_indices(state.batch_key, state.t, n=n, batch_size=b, sampling=sampling)
    x, y = x[idx], y[idx]
  g = jax.grad(loss_fn(model, x, y))(state.params)
  gnorm = jnp.linalg.norm(ravel_pytree(g)[0])
  clipping = state.t.astype(dtype) < jnp.asarray(clip_steps, dtype)
  limit = jnp.asarray(clip, dtype)
  scale = jnp.where(clipping & (gnorm > limit), limit / jnp.where(gnorm > 0, gnorm, 1.0), 1.0)
  step = jnp.where(eta >= 0, eta * scale, jnp.nan)
  params = jax.tree.map(lambda p, gi: p - step.astype(p.dtype) * gi, state.params, g)
  t = state.t + 1

  def fresh(args):
    params, eigvec, problem, key, t = args
    metrics, eigvec = measure(model, monitor, params, eigvec, problem, key)
    return {**metrics, "monitor_step": t}, eigvec

  metrics, eigvec = when(t % monitor.every == 0, fresh,
                         (params, state.eigvec, problem, jax.random.fold_in(state.probe_key, t), t),
                         (state.monitor, state.eigvec))
  return TrainState(params, state.batch_key, state.probe_key, t, eigvec, metrics), metrics


def _algorithm(name: str, model: Model, batch_size: int | None, sampling: str,
               monitor: Monitor) -> Algorithm:
  if sampling not in SAMPLINGS:
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
  if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
    raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
  if not isinstance(monitor.every, int) or monitor.every < 1:
    raise ValueError(f"monitor.every must be an int >= 1, got {monitor.every!r}")
  kw = dict(model=model, batch_size=batch_size, monitor=monitor)
  return Algorithm(name, functools.partial(train_init, **kw),
                   functools.partial(train_step, sampling=sampling, **kw))


def gd(model: Model, monitor: Monitor = Monitor()) -> Algorithm:
  r"""Full-batch gradient descent :math:`\theta \leftarrow \theta - \eta\nabla L(\theta)` on the MSE.

  Traced hyperparameters: ``eta`` (and optional ``clip``, ``clip_steps``).

  Example:
    >>> res = sweep(gd(model, Monitor(every=10)), data, seeds=range(4), hp={"eta": [0.1, 0.2]},
    ...             num_steps=1000, record_every=10)

  Reference: Cohen et al. 2021 (arXiv:2103.00065); Wu & Su 2023 (arXiv:2305.17490).
  """
  return _algorithm(f"gd_{model.name}", model, None, "full", monitor)


def sgd(model: Model, batch_size: int, *, sampling: str = "with_replacement",
        monitor: Monitor = Monitor()) -> Algorithm:
  r"""Minibatch SGD :math:`\theta \leftarrow \theta - \eta\nabla L_{\xi_t}(\theta)`, batch size ``B``.

  Args:
    model: the :class:`~jaxopt_lab.stability.models.Model`.
    batch_size: ``B`` (static; must not exceed the number of examples: checked at init).
    sampling: ``"with_replacement"`` (default), ``"without_replacement"`` (uniform B-subsets) or
      ``"reshuffle"`` (epochs of a random permutation).
    monitor: what to measure and how often.

  Returns:
    An :class:`~jaxopt_lab.engine.Algorithm` with traced ``eta``, ``clip``, ``clip_steps``.

  Example:
    >>> alg = sgd(diagonal_net(200), 1, monitor=Monitor(every=100))

  Reference: Wu & Su 2023 (arXiv:2305.17490), Algorithm: SGD with batch size B.
  """
  return _algorithm(f"sgd{batch_size}_{sampling}_{model.name}", model, batch_size, sampling,
                    monitor)


def check_hyperparams(hp: Mapping[str, Any]) -> None:
  """Host-side validation of traced hyperparameter values (``eta`` >= 0, ``clip`` > 0)."""
  if "eta" in hp:
    _check_eta(hp["eta"])
  if "clip" in hp and np.any(np.asarray(hp["clip"]) <= 0):
    raise ValueError(f"clip must be > 0, got {hp['clip']!r}")


def sweep_training(algorithm: Algorithm, data: Dataset, *, seeds: Sequence[int],
                   hp: Mapping[str, Any], num_steps: int, record_every: int, **kwargs):
  """:func:`jaxopt_lab.engine.sweep.sweep` after :func:`check_hyperparams` (a negative ``eta`` in the
  grid is a ``ValueError`` before anything compiles), silent by default.

  Example:
    >>> res = sweep_training(sgd(model, 1), data, seeds=range(4), hp={"eta": [0.01, 0.02]},
    ...                      num_steps=10_000, record_every=1000)
  """
  from jaxopt_lab.engine.sweep import sweep  # pylint: disable=g-import-not-at-top

  check_hyperparams(hp)
  kwargs.setdefault("on_chunk", None)
  return sweep(algorithm, data, seeds=np.asarray(seeds), hp=dict(hp), num_steps=num_steps,
               record_every=record_every, **kwargs)
