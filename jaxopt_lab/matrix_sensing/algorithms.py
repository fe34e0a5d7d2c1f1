r"""Gradient descent on factored matrix sensing, in the engine's ``init``/``step`` protocol.

Symmetric GD fits :math:`XX^\top` (:math:`X \in \mathbb{R}^{n\times k}`) on
:math:`\tfrac14|\mathcal{A}(XX^\top) - y|^2`; asymmetric GD fits :math:`FG^\top` on
:math:`\tfrac12|\mathcal{A}(FG^\top) - y|^2`; the one-step variant rebalances :math:`(F, G)` once
near the optimum. Traced hyperparameters (``alpha``, ``eta``, ``init_ratio``, ``switch_tol``,
``rebalance_scale``) are keyword-only; the factorization width ``k`` and the rebalance function are
static, bound with ``functools.partial``. Every array follows the problem's dtype.

Reference: Xiong, Ding & Du, "How Over-Parameterization Slows Down Gradient Descent in Matrix
Sensing: The Curses of Symmetry and Initialization", ICLR 2024, arXiv:2310.01769.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from jaxopt_lab.engine.algorithm import Algorithm, Metrics
from jaxopt_lab.matrix_sensing.problem import (
    SensingProblem,
    measurement_residual,
    residual_gradient,
)

RebalanceFn = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


class SymmetricState(NamedTuple):
  """State of symmetric GD: the factor ``x`` of shape ``(n, k)``."""

  x: Float[Array, "n k"]


class AsymmetricState(NamedTuple):
  """State of asymmetric GD: factors ``f`` ``(n1, k)`` and ``g`` ``(n2, k)``."""

  f: Float[Array, "n1 k"]
  g: Float[Array, "n2 k"]


class OneStepState(NamedTuple):
  """State of asymmetric GD with a one-time rebalance.

  Attributes:
    f: ``(n1, k)`` left factor.
    g: ``(n2, k)`` right factor.
    step: int32, steps taken so far.
    rebalanced_at: int32, the step after which the rebalance was applied, or -1 if not yet.
  """

  f: Float[Array, "n1 k"]
  g: Float[Array, "n2 k"]
  step: Int[Array, ""]
  rebalanced_at: Int[Array, ""]


def _dtype(problem: SensingProblem) -> jnp.dtype:
  return problem.m_star.dtype


def _hp(value: ArrayLike, problem: SensingProblem) -> jax.Array:
  return jnp.asarray(value, _dtype(problem))  # a float64 hp never promotes a float32 state


def _check_k(k: int) -> None:
  if not isinstance(k, int) or k < 1:
    raise ValueError(f"the factorization width k must be an int >= 1, got {k!r}")


def _check_k_fits(k: int, m_star: jax.Array) -> None:
  """Raises at trace time (shapes are static) if the width exceeds the matrix dimension."""
  if k > min(m_star.shape):
    raise ValueError(f"the factorization width k = {k} exceeds the matrix dimension "
                     f"{min(m_star.shape)} (M* is {m_star.shape[0]} x {m_star.shape[1]})")


def _sq(a: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(a))


# --------------------------------------------------------------------------------------------------
# Symmetric GD.


def symmetric_init(key: jax.Array, problem: SensingProblem, *, k: int,
                   alpha: ArrayLike) -> SymmetricState:
  r"""Small random init :math:`X_0 \in \mathbb{R}^{n\times k}`, entries :math:`N(0, \alpha^2/n)`.

  So :math:`X_0^\top X_0 \approx \alpha^2 I_k`.

  Args:
    key: typed PRNG key.
    problem: the :class:`SensingProblem` (square ``m_star``).
    k: factorization width (static).
    alpha: init scale (traced).

  Returns:
    A :class:`SymmetricState`.

  Example:
    >>> s = symmetric_init(jax.random.key(0), p, k=3, alpha=0.1)

  Reference: arXiv:2310.01769 (small random initialization).
  """
  _check_k_fits(k, problem.m_star)
  n = problem.m_star.shape[0]
  z = jax.random.normal(key, (n, k), _dtype(problem))
  return SymmetricState(z * (_hp(alpha, problem) / jnp.sqrt(_hp(n, problem))))


def symmetric_metrics(state: SymmetricState, problem: SensingProblem) -> Metrics:
  r"""Metrics of symmetric GD.

  ``error`` :math:`|XX^\top - M^*|_F^2`, ``loss`` :math:`\tfrac14|\mathcal{A}(XX^\top) - y|^2` and
  ``x_norm`` :math:`|X|_F`.
  """
  p = state.x @ state.x.T
  return {
      "error": _sq(p - problem.m_star),
      "loss": 0.25 * _sq(measurement_residual(problem, p)),
      "x_norm": jnp.sqrt(_sq(state.x)),
  }


def symmetric_step(state: SymmetricState, problem: SensingProblem, *,
                   eta: ArrayLike) -> tuple[SymmetricState, Metrics]:
  r"""One GD step on :math:`\tfrac14|\mathcal{A}(XX^\top) - y|^2`.

  .. math:: X \leftarrow X - \eta\, \mathrm{sym}\big(\mathcal{A}^*(\mathcal{A}(XX^\top) - y)\big) X,

  where :math:`\mathrm{sym}(R) = (R + R^\top)/2` (a no-op for symmetrized :math:`A_i`; it keeps the
  step the exact gradient for any operator). Without noise this is
  :math:`X - \eta \mathcal{A}^*\mathcal{A}(XX^\top - M^*) X`.

  Args:
    state: a :class:`SymmetricState`.
    problem: the :class:`SensingProblem`.
    eta: step size (traced).

  Returns:
    The new state and its metrics (:func:`symmetric_metrics`).

  Example:
    >>> s, m = symmetric_step(s, p, eta=0.1)

  Reference: arXiv:2310.01769 (symmetric GD; loss scaling as in the fact sheet).
  """
  x = state.x
  r = residual_gradient(problem, x @ x.T)
  r = 0.5 * (r + r.T)
  new = SymmetricState(x - _hp(eta, problem) * (r @ x))
  return new, symmetric_metrics(new, problem)


def symmetric_gd(k: int) -> Algorithm:
  r"""Symmetric GD, :math:`X \leftarrow X - \eta \mathcal{A}^*\mathcal{A}(XX^\top - M^*)X`.

  Traced hyperparameters: ``alpha`` (init scale, entries :math:`N(0, \alpha^2/n)`) and ``eta``.
  ``k = r`` is the exact parameterization (linear convergence), ``k > r`` the over-parameterized one
  (:math:`|XX^\top - M^*|_F^2 = \Omega(1/T^2)`).

  Args:
    k: factorization width (static; one compile per ``k``).

  Returns:
    An :class:`~jaxopt_lab.engine.Algorithm`.

  Example:
    >>> alg = symmetric_gd(k=3)
    >>> state, metrics = run(alg, jax.random.key(0), p, {"alpha": 0.1, "eta": 0.1}, num_steps=100)

  Reference: arXiv:2310.01769 (abstract: the :math:`\Omega(1/T^2)` lower bound for :math:`k > r`,
  :math:`\exp(-\Omega(T))` for :math:`k = r`).
  """
  _check_k(k)
  return Algorithm(f"symmetric_gd(k={k})", functools.partial(symmetric_init, k=k), symmetric_step)


# --------------------------------------------------------------------------------------------------
# Asymmetric GD.


def asymmetric_init(key: jax.Array, problem: SensingProblem, *, k: int, alpha: ArrayLike,
                    init_ratio: ArrayLike = 1.0 / 3.0) -> AsymmetricState:
  r"""Small random init of the two factors, imbalanced by ``init_ratio``.

  .. math:: (F_0)_{ij} \sim N(0, \alpha^2/n_1), \qquad (G_0)_{ij} \sim N(0, \rho^2\alpha^2/n_2).

  :math:`\rho` = ``init_ratio``; the paper's imbalanced init is :math:`\rho = 1/3`, balanced is 1.

  Args:
    key: typed PRNG key.
    problem: the :class:`SensingProblem`.
    k: factorization width (static).
    alpha: init scale of ``F`` (traced).
    init_ratio: scale of ``G`` relative to ``F`` (traced).

  Returns:
    An :class:`AsymmetricState`.

  Example:
    >>> s = asymmetric_init(jax.random.key(0), p, k=5, alpha=0.3)

  Reference: arXiv:2310.01769 (imbalanced initialization).
  """
  _check_k_fits(k, problem.m_star)
  n1, n2 = problem.m_star.shape
  kf, kg = jax.random.split(key)
  dtype = _dtype(problem)
  a = _hp(alpha, problem)
  f = jax.random.normal(kf, (n1, k), dtype) * (a / jnp.sqrt(_hp(n1, problem)))
  g_scale = a * _hp(init_ratio, problem) / jnp.sqrt(_hp(n2, problem))
  g = jax.random.normal(kg, (n2, k), dtype) * g_scale
  return AsymmetricState(f, g)


def _asymmetric_metrics(f: jax.Array, g: jax.Array, problem: SensingProblem) -> Metrics:
  p = f @ g.T
  return {
      "error": _sq(p - problem.m_star),
      "loss": 0.5 * _sq(measurement_residual(problem, p)),
      "imbalance": jnp.sqrt(_sq(f.T @ f - g.T @ g)),
  }


def _asymmetric_update(f: jax.Array, g: jax.Array, problem: SensingProblem,
                       eta: ArrayLike) -> tuple[jax.Array, jax.Array]:
  r = residual_gradient(problem, f @ g.T)
  e = _hp(eta, problem)
  return f - e * (r @ g), g - e * (r.T @ f)


def asymmetric_step(state: AsymmetricState, problem: SensingProblem, *,
                    eta: ArrayLike) -> tuple[AsymmetricState, Metrics]:
  r"""One simultaneous GD step on :math:`\tfrac12|\mathcal{A}(FG^\top) - y|^2`.

  .. math::
    R = \mathcal{A}^*(\mathcal{A}(FG^\top) - y),\qquad F \leftarrow F - \eta R G,\qquad
    G \leftarrow G - \eta R^\top F.

  Args:
    state: an :class:`AsymmetricState`.
    problem: the :class:`SensingProblem`.
    eta: step size (traced).

  Returns:
    The new state and metrics ``error`` :math:`|FG^\top - M^*|_F^2`, ``loss``, and ``imbalance``
    :math:`|F^\top F - G^\top G|_F`.

  Example:
    >>> s, m = asymmetric_step(s, p, eta=0.1)

  Reference: arXiv:2310.01769 (asymmetric GD).
  """
  f, g = _asymmetric_update(state.f, state.g, problem, eta)
  return AsymmetricState(f, g), _asymmetric_metrics(f, g, problem)


def asymmetric_gd(k: int) -> Algorithm:
  r"""Asymmetric GD :math:`F \leftarrow F - \eta RG,\ G \leftarrow G - \eta R^\top F`, width ``k``.

  Traced hyperparameters: ``alpha``, ``init_ratio`` (default 1/3: the paper's imbalanced init;
  1.0 is balanced) and ``eta``. Over-parameterized (``k > r``) it converges as
  :math:`\exp(-\Omega(\alpha^2 T))`, driven by the imbalance :math:`\Delta = F^\top F - G^\top G`.

  Args:
    k: factorization width (static).

  Returns:
    An :class:`~jaxopt_lab.engine.Algorithm`.

  Example:
    >>> alg = asymmetric_gd(k=5)
    >>> state, metrics = run(alg, jax.random.key(0), p, {"alpha": 0.3, "eta": 0.1}, num_steps=100)

  Reference: arXiv:2310.01769 (abstract: global linear convergence for :math:`k = r`,
  :math:`\exp(-\Omega(\alpha^2 T))` for :math:`k > r`).
  """
  _check_k(k)
  return Algorithm(f"asymmetric_gd(k={k})", functools.partial(asymmetric_init, k=k),
                   asymmetric_step)


# --------------------------------------------------------------------------------------------------
# One-step modification.


def _sqrtm_pair(gram: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(gram^{1/2}, gram^{-1/2}) of a PSD k x k matrix; eigenvalues floored at eps k lambda_max."""
  lam, q = jnp.linalg.eigh(gram)
  finfo = jnp.finfo(gram.dtype)
  floor = jnp.maximum(finfo.eps * gram.shape[0] * jnp.max(lam), finfo.tiny)
  lam = jnp.maximum(lam, floor)  # the same floored eigenvalues in both roots keep them inverse
  root = jnp.sqrt(lam)
  return (q * root[None, :]) @ q.T, (q / root[None, :]) @ q.T


def rebalance_reconstruction(f: Float[Array, "n1 k"], g: Float[Array, "n2 k"],
                             scale: ArrayLike) -> tuple[Float[Array, "n1 k"], Float[Array, "n2 k"]]:
  r"""RECONSTRUCTION (not the paper's eq. 5.1): rebalance :math:`F^\top F` to :math:`bI`.

  .. math::
    F \leftarrow \sqrt{b}\, F (F^\top F)^{-1/2}, \qquad G \leftarrow G (F^\top F)^{1/2} / \sqrt{b},

  so :math:`FG^\top` is unchanged and every direction of :math:`F` gets squared norm :math:`b`; the
  extra directions of :math:`G` then decay at rate :math:`1 - \eta b` regardless of the init scale.
  The paper's exact one-step formula was not available when this was written (see the fact sheet);
  pass it as ``rebalance_fn`` to :func:`asymmetric_gd_one_step` to replace this one. Eigenvalues of
  :math:`F^\top F` below :math:`\epsilon k \lambda_{\max}` are floored (then :math:`F^\top F = bI`
  holds only on the well-conditioned directions; the product is preserved either way).

  Args:
    f: ``(n1, k)`` left factor.
    g: ``(n2, k)`` right factor.
    scale: :math:`b > 0`, of the order of :math:`\sigma_1`.

  Returns:
    The rebalanced ``(f, g)``.

  Example:
    >>> f2, g2 = rebalance_reconstruction(f, g, 1.0)  # f2 @ g2.T == f @ g.T, f2.T @ f2 == I

  Reference: arXiv:2310.01769 (a one-step modification removes the alpha dependence).
  """
  b = jnp.asarray(scale, f.dtype)
  half, inv_half = _sqrtm_pair(f.T @ f)
  sb = jnp.sqrt(b)
  return sb * (f @ inv_half), (g @ half) / sb


def one_step_init(key: jax.Array, problem: SensingProblem, *, k: int, alpha: ArrayLike,
                  init_ratio: ArrayLike = 1.0 / 3.0) -> OneStepState:
  r"""The :func:`asymmetric_init` factors plus the counters ``step = 0``, ``rebalanced_at = -1``.

  Args:
    key: typed PRNG key.
    problem: the :class:`SensingProblem`.
    k: factorization width (static).
    alpha: init scale of ``F`` (traced).
    init_ratio: scale of ``G`` relative to ``F`` (traced).

  Returns:
    A :class:`OneStepState`.

  Example:
    >>> s = one_step_init(jax.random.key(0), p, k=5, alpha=0.1)

  Reference: arXiv:2310.01769.
  """
  s = asymmetric_init(key, problem, k=k, alpha=alpha, init_ratio=init_ratio)
  return OneStepState(s.f, s.g, jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32))


def one_step_step(state: OneStepState, problem: SensingProblem, *, rebalance_fn: RebalanceFn,
                  eta: ArrayLike, switch_tol: ArrayLike = 1e-2,
                  rebalance_scale: ArrayLike = 1.0) -> tuple[OneStepState, Metrics]:
  r"""An asymmetric GD step, then ``rebalance_fn`` once, when the relative error first gets small.

  .. math::
    (F, G) \leftarrow \mathrm{GD}(F, G);\quad \text{if not yet applied and }
    |FG^\top - M^*|_F < \tau |M^*|_F:\ (F, G) \leftarrow \mathrm{rebalance}(F, G, b).

  The criterion uses the truth :math:`M^*` (an experiment's oracle switch; a practical variant would
  use the measured residual).

  Args:
    state: a :class:`OneStepState`.
    problem: the :class:`SensingProblem`.
    rebalance_fn: ``(f, g, b) -> (f, g)`` (static).
    eta: step size (traced).
    switch_tol: :math:`\tau`, relative error that triggers the rebalance (traced).
    rebalance_scale: :math:`b` passed to ``rebalance_fn`` (traced).

  Returns:
    The new state and the :func:`asymmetric_step` metrics plus ``rebalanced_at`` (int32, -1 before).

  Example:
    >>> s, m = one_step_step(s, p, rebalance_fn=rebalance_reconstruction, eta=0.1)

  Reference: arXiv:2310.01769 (the one-step modification; formula reconstructed).
  """
  f, g = _asymmetric_update(state.f, state.g, problem, eta)
  step = state.step + 1
  rel = jnp.sqrt(_sq(f @ g.T - problem.m_star) / _sq(problem.m_star))
  trigger = (state.rebalanced_at < 0) & (rel < _hp(switch_tol, problem))
  b = _hp(rebalance_scale, problem)
  f, g = jax.lax.cond(trigger, lambda fg: rebalance_fn(fg[0], fg[1], b), lambda fg: fg, (f, g))
  rebalanced_at = jnp.where(trigger, step, state.rebalanced_at).astype(jnp.int32)
  metrics = _asymmetric_metrics(f, g, problem)
  metrics["rebalanced_at"] = rebalanced_at
  return OneStepState(f, g, step, rebalanced_at), metrics


def asymmetric_gd_one_step(k: int,
                           rebalance_fn: RebalanceFn = rebalance_reconstruction) -> Algorithm:
  r"""Asymmetric GD whose one modified step applies ``rebalance_fn`` once near the optimum.

  Traced hyperparameters: ``alpha``, ``init_ratio`` (default 1/3), ``eta``, ``switch_tol`` (default
  ``1e-2``: relative error :math:`|FG^\top - M^*|_F/|M^*|_F` that triggers the step) and
  ``rebalance_scale`` (:math:`b`, default 1 :math:`= \sigma_1`). After the step the rate no longer
  depends on :math:`\alpha`.

  Args:
    k: factorization width (static).
    rebalance_fn: ``(f, g, b) -> (f, g)``, static; default :func:`rebalance_reconstruction` (a
      reconstruction, not the paper's eq. 5.1).

  Returns:
    An :class:`~jaxopt_lab.engine.Algorithm`.

  Example:
    >>> alg = asymmetric_gd_one_step(k=5)
    >>> state, m = run(alg, jax.random.key(0), p, {"alpha": 0.1, "eta": 0.1}, num_steps=500)
    >>> int(m["rebalanced_at"][-1])  # the step at which the rebalance happened

  Reference: arXiv:2310.01769.
  """
  _check_k(k)
  name = getattr(rebalance_fn, "__name__", "custom")
  return Algorithm(f"asymmetric_gd_one_step(k={k}, {name})", functools.partial(one_step_init, k=k),
                   functools.partial(one_step_step, rebalance_fn=rebalance_fn))
