r"""Minimizers of the UFM (MSE with/without bias, cross-entropy) and of eq. 2 by optax's L-BFGS.

The solver is ``optax.lbfgs`` with ``optax.scale_by_zoom_linesearch`` (strong Wolfe), run for a fixed
number of iterations in ``lax.scan`` (so it jits once per shape, vmaps over seeds and traced
hyperparameters, and never changes state shapes). An iterate is frozen once the gradient norm reaches
``gtol`` or an update would be non-finite, so extra iterations after convergence are harmless. Run in
float64 (``jax_enable_x64``): the closed forms are then reached to ~1e-10.

The public solvers validate their input on the host (shapes always, values when concrete) and call
jitted cores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike
from jaxtyping import Float

from jaxopt_lab.neural_collapse import models, validation

PyTree = Any


class SolveResult(NamedTuple):
  """A minimizer and the solver's final record.

  Attributes:
    params: the minimizer (same pytree as the initial point).
    value: the objective at ``params``.
    grad_norm: the gradient norm at ``params``.
    num_iters: iterations actually taken before freezing (int32).
  """

  params: PyTree
  value: jax.Array
  grad_norm: jax.Array
  num_iters: jax.Array


def lbfgs_minimize(fun: Callable[[PyTree], jax.Array], params0: PyTree, *, num_iters: int,
                   memory_size: int = 20, max_linesearch_steps: int = 40,
                   gtol: float = 1e-13) -> SolveResult:
  r"""Minimizes ``fun`` from ``params0`` by L-BFGS with a zoom (strong Wolfe) line search.

  .. math:: x_{t+1} = x_t - \eta_t P_t \nabla f(x_t), \qquad P_t \text{: L-BFGS inverse-Hessian
            estimate}, \ \eta_t \text{: zoom line search}

  A fixed number of iterations in ``lax.scan``; iterates freeze once
  :math:`\|\nabla f\| \le` ``gtol`` or an update is non-finite. Pure and traceable.

  Args:
    fun: scalar objective of a pytree (closed over its data and hyperparameters).
    params0: the starting point.
    num_iters: iterations (static).
    memory_size: L-BFGS memory (static).
    max_linesearch_steps: zoom line-search budget per iteration (static).
    gtol: gradient-norm tolerance at which the iterate freezes.

  Returns:
    A :class:`SolveResult`.

  Example:
    >>> res = lbfgs_minimize(lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros(3), num_iters=20)

  Reference: Nocedal & Wright, Numerical Optimization (2006), Alg. 7.5 and 3.5-3.6; optax.lbfgs.
  """
  opt = optax.lbfgs(memory_size=memory_size, linesearch=optax.scale_by_zoom_linesearch(
      max_linesearch_steps=max_linesearch_steps, initial_guess_strategy="one"))
  value_and_grad = optax.value_and_grad_from_state(fun)

  def body(carry, _):
    params, state, done, iters = carry
    value, grad = value_and_grad(params, state=state)
    updates, new_state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    new_params = optax.apply_updates(params, updates)
    gnorm = optax.tree.norm(grad)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(new_params)]))
    freeze = done | (gnorm <= gtol) | ~finite
    keep = lambda old, new: jax.tree.map(lambda a, b: jnp.where(freeze, a, b), old, new)
    return (keep(params, new_params), keep(state, new_state), freeze,
            iters + jnp.where(freeze, 0, 1).astype(jnp.int32)), None

  init = (params0, opt.init(params0), jnp.array(False), jnp.zeros((), jnp.int32))
  (params, _, _, iters), _ = jax.lax.scan(body, init, None, length=num_iters)
  value, grad = jax.value_and_grad(fun)(params)
  return SolveResult(params, value, optax.tree.norm(grad), iters)


def _random_ufm(key: jax.Array, k: int, n: int, d: int, scale: ArrayLike) -> models.UFMParams:
  kw, kh = jax.random.split(key)
  return models.UFMParams(scale * jax.random.normal(kw, (k, d)) / jnp.sqrt(d),
                          scale * jax.random.normal(kh, (d, k * n)), jnp.zeros(k))


@functools.partial(jax.jit, static_argnames=("num_classes", "n", "d", "num_iters"))
def _solve_mse(key, lambda_W, lambda_H, init_scale, bias_mask, *, num_classes, n, d, num_iters):
  # The bias enters as mask * b: with mask 0 its gradient is 0 and b stays 0, so one compiled
  # program serves both models (and the mask can be vmapped).
  def fun(p):
    return models.mse_loss(p._replace(b=bias_mask * p.b), num_classes=num_classes,
                           lambda_W=lambda_W, lambda_H=lambda_H, bias=True)

  res = lbfgs_minimize(fun, _random_ufm(key, num_classes, n, d, init_scale), num_iters=num_iters)
  return res._replace(params=res.params._replace(b=bias_mask * res.params.b))


@functools.partial(jax.jit, static_argnames=("num_classes", "n", "d", "num_iters"))
def _solve_ce(key, lambda_W, lambda_H, lambda_b, init_scale, *, num_classes, n, d, num_iters):
  fun = functools.partial(models.ce_loss, num_classes=num_classes, lambda_W=lambda_W,
                          lambda_H=lambda_H, lambda_b=lambda_b)
  return lbfgs_minimize(fun, _random_ufm(key, num_classes, n, d, init_scale), num_iters=num_iters)


@functools.partial(jax.jit, static_argnames=("num_classes", "num_iters"))
def _solve_perturbed(H0, lambda_W, lambda_H, beta, *, num_classes, num_iters):
  fun = functools.partial(models.perturbed_loss, H0=H0, num_classes=num_classes, lambda_W=lambda_W,
                          lambda_H=lambda_H, beta=beta)
  W0 = models.optimal_classifier(H0, num_classes=num_classes, lambda_W=lambda_W)
  return lbfgs_minimize(fun, models.UFMParams(W0, H0, jnp.zeros(num_classes, H0.dtype)),
                        num_iters=num_iters)


def _check_ufm(num_classes: int, n: int, d: int, lambda_W, lambda_H, what: str) -> None:
  if num_classes < 2 or n < 1:
    raise ValueError(f"need K >= 2 classes and n >= 1 samples per class, got K={num_classes}, n={n}")
  validation.check_dims_for_theory(d, num_classes, what)
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H, strict=True)


def solve_ufm_mse(key: jax.Array, *, num_classes: int, n: int, d: int, lambda_W: ArrayLike,
                  lambda_H: ArrayLike, bias: bool = False, num_iters: int = 300,
                  init_scale: ArrayLike = 1.0) -> SolveResult:
  r"""A global minimizer of eq. 1 (optionally with an unregularized bias) by L-BFGS from a random point.

  .. math:: \min_{W,H,(b)} \frac{1}{2Kn}\|WH + b\mathbf 1^\top - Y\|_F^2 + \frac{\lambda_W}{2K}\|W\|_F^2
            + \frac{\lambda_H}{2Kn}\|H\|_F^2

  The landscape has no spurious local minima (strict saddles only), so a random start reaches the
  closed form of :func:`~jaxopt_lab.neural_collapse.models.mse_closed_form`.

  Args:
    key: a typed PRNG key for the random start (vmap over keys for seeds).
    num_classes, n, d: K, samples per class, feature dimension (static; d >= K).
    lambda_W, lambda_H: positive regularization (traceable).
    bias: include the unregularized bias (a Python bool; one compiled program serves both).
    num_iters: L-BFGS iterations (static).
    init_scale: scale of the random start.

  Returns:
    :class:`SolveResult` with ``params`` a :class:`~jaxopt_lab.neural_collapse.models.UFMParams`.

  Raises:
    ValueError: for d < K (the theory the solver is compared with needs d >= K), K < 2, or a
      non-positive regularization.

  Example:
    >>> res = solve_ufm_mse(jax.random.key(0), num_classes=4, n=5, d=6, lambda_W=0.3, lambda_H=0.4)

  Reference: arXiv:2210.16658 eq. 1 and Theorem 2.1; benign landscape: Zhou et al. 2022
  (arXiv:2203.01238, MSE) and Zhu et al. 2021 (arXiv:2105.02375, CE).
  """
  _check_ufm(num_classes, n, d, lambda_W, lambda_H, "solve_ufm_mse")
  return _solve_mse(key, *validation.as_float(lambda_W, lambda_H, init_scale, 1.0 if bias else 0.0),
                    num_classes=num_classes, n=n, d=d, num_iters=num_iters)


def solve_ufm_ce(key: jax.Array, *, num_classes: int, n: int, d: int, lambda_W: ArrayLike,
                 lambda_H: ArrayLike, lambda_b: ArrayLike, num_iters: int = 400,
                 init_scale: ArrayLike = 1.0) -> SolveResult:
  r"""A global minimizer of the cross-entropy UFM (Zhu et al.'s normalization) by L-BFGS.

  .. math:: \min_{W,H,b} \frac1N\sum_i \mathrm{CE}(Wh_i + b, y_i) + \frac{\lambda_W}{2}\|W\|_F^2
            + \frac{\lambda_H}{2}\|H\|_F^2 + \frac{\lambda_b}{2}\|b\|^2

  Compare with :func:`~jaxopt_lab.neural_collapse.models.ce_closed_form`.

  Raises:
    ValueError: for d < K, K < 2, or non-positive regularization.

  Reference: Zhu et al. 2021 (arXiv:2105.02375), Theorem 3.1.
  """
  _check_ufm(num_classes, n, d, lambda_W, lambda_H, "solve_ufm_ce")
  validation.check_nonnegative("lambda_b", lambda_b)
  return _solve_ce(key, *validation.as_float(lambda_W, lambda_H, lambda_b, init_scale),
                   num_classes=num_classes, n=n, d=d,
                   num_iters=num_iters)


def solve_perturbed(H0: Float[ArrayLike, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                    lambda_H: ArrayLike, beta: ArrayLike, num_iters: int = 300) -> SolveResult:
  r"""A minimizer of eq. 2 by L-BFGS started at :math:`(W^*(H_0), H_0)`.

  .. math:: \min_{W,H} f(W, H) + \frac{\beta}{2Kn}\|H - H_0\|_F^2

  For :math:`\beta` large enough the problem is strongly convex near :math:`H_0` and its minimizer is
  the implicit Euler step :math:`H = H_0 + \frac1\beta v(H)` of the central-path field ``v``
  (:func:`~jaxopt_lab.neural_collapse.models.central_path_field`).

  Args:
    H0: the given features, columns class by class (``N = Kn``).
    num_classes: K (static).
    lambda_W, lambda_H, beta: hyperparameters (traceable; lambda_W > 0, lambda_H >= 0, beta > 0).
    num_iters: L-BFGS iterations (static).

  Raises:
    ValueError: for non-finite ``H0``, N not a multiple of K, or invalid hyperparameters.

  Example:
    >>> res = solve_perturbed(H0, num_classes=4, lambda_W=1.4, lambda_H=0.1, beta=100.0)
    >>> H = res.params.H

  Reference: arXiv:2210.16658 eq. 2 and Section 3.
  """
  H0 = jnp.asarray(H0)
  validation.check_columns(H0, num_classes, "H0")
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H)
  validation.check_nonnegative("beta", beta, strict=True)
  return _solve_perturbed(H0, *validation.as_float(lambda_W, lambda_H, beta), num_classes=num_classes,
                          num_iters=num_iters)
