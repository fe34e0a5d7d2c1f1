r"""Curvature of a scalar loss over a pytree of parameters: HVPs, eigenvalues, traces, densities.

Every estimator is a pure function of the loss, the parameters and an explicit PRNG key, with fixed
iteration counts (no data-dependent early stopping), so it can be jitted, vmapped over seeds or over
runs of a sweep, and called inside a ``lax.scan``. Vectors are flat, in the order of
``jax.flatten_util.ravel_pytree(params)``; :func:`flatten` gives that order and the way back.

Writing :math:`H = \nabla^2 L(\theta) \in \mathbb{R}^{d\times d}`:

- :func:`hvp`, :func:`hessian_operator`: :math:`v \mapsto Hv`, forward-over-reverse (a JVP of the
  gradient), exact up to rounding; about 2 gradients of cost.
- :func:`power_iteration` / :func:`top_eigenvalues_power`: block power (subspace) iteration with a
  Rayleigh-Ritz step, warm-startable; the largest-magnitude eigenvalues.
- :func:`lanczos` / :func:`top_eigenvalues_lanczos`: Lanczos with full reorthogonalization; largest
  algebraic (``"LA"``) or largest magnitude (``"LM"``) Ritz values.
- :func:`hutchinson_trace`, :func:`hutch_pp_trace`: :math:`\mathrm{tr}\,H`; :func:`frobenius_sq`:
  :math:`\|H\|_F^2 = \mathbb{E}\|Hv\|^2`.
- :func:`gauss_newton_trace`: the exact :math:`\mathrm{tr}\,G = \frac1n\sum_i \|J_i\|_F^2` from
  per-example Jacobians of the model output (the Hessian at an interpolating minimum of the MSE).
- :func:`slq` and :func:`spectral_density`: stochastic Lanczos quadrature of the spectral density.

References: Pearlmutter 1994 (HVP); Golub & Van Loan, Matrix Computations, ch. 8-10 (power, Lanczos);
Hutchinson 1989; Meyer, Musco, Musco & Woodruff 2021, "Hutch++" (arXiv:2010.09649); Ubaru, Chen & Saad
2017 (SLQ); Ghorbani, Krishnan & Xiao 2019 (arXiv:1901.10159) and Yao et al. 2020, PyHessian
(arXiv:1912.07145) for these tools on neural networks; used for Wu & Su 2023 (arXiv:2305.17490).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

PyTree = Any
LossFn = Callable[[PyTree], jax.Array]
MatVec = Callable[[jax.Array], jax.Array]


class Eigen(NamedTuple):
  """Approximate eigenpairs of a symmetric operator.

  Attributes:
    values: ``(k,)`` eigenvalue estimates (Ritz values), ordered as the method selects them.
    vectors: ``(d, k)`` orthonormal flat eigenvector estimates (columns).
    residuals: ``(k,)`` :math:`\\|Hv - \\lambda v\\|`: some exact eigenvalue lies within this of
      each value (and within :math:`r^2/\\mathrm{gap}`, Kato-Temple).
  """

  values: Float[Array, " k"]
  vectors: Float[Array, "d k"]
  residuals: Float[Array, " k"]


class Tridiagonal(NamedTuple):
  """The output of :func:`lanczos`: :math:`T = Q^\\top H Q` with ``Q`` orthonormal rows.

  Attributes:
    alphas: ``(m,)`` diagonal of ``T``.
    betas: ``(m,)`` off-diagonal of ``T`` (``betas[:-1]``); ``betas[-1]`` is the norm of the last
      residual, which bounds the Ritz residuals (:math:`|\\beta_m s_{m,i}|`).
    basis: ``(m, d)`` the Lanczos vectors as rows.
  """

  alphas: Float[Array, " m"]
  betas: Float[Array, " m"]
  basis: Float[Array, "m d"]


class Estimate(NamedTuple):
  """A Monte-Carlo estimate and its standard error (sample std over probes / sqrt(probes))."""

  value: Float[Array, ""]
  std_err: Float[Array, ""]


class Quadrature(NamedTuple):
  """Stochastic Lanczos quadrature: per probe ``p``, nodes and weights (each row sums to 1).

  The spectral measure :math:`\\frac1d\\sum_i \\delta_{\\lambda_i}` is approximated by
  :math:`\\frac1P\\sum_p\\sum_j w_{pj}\\,\\delta_{\\theta_{pj}}`.
  """

  nodes: Float[Array, "p m"]
  weights: Float[Array, "p m"]


# --------------------------------------------------------------------------------------------------
# Flattening and Hessian-vector products.


def check_scalar_loss(loss_fn: LossFn, params: PyTree) -> None:
  """Raises ``ValueError`` naming the shape unless ``loss_fn(params)`` is a real scalar."""
  out = jax.eval_shape(loss_fn, params)
  shape = getattr(out, "shape", None)
  if shape != ():
    raise ValueError(f"loss_fn must return a scalar, got an output of shape {shape}"
                     + ("" if shape is not None else f" ({type(out).__name__})"))
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(f"loss_fn must return a real floating scalar, got dtype {out.dtype}")


def flatten(loss_fn: LossFn, params: PyTree) -> tuple[Callable[[jax.Array], jax.Array],
                                                      Float[Array, " d"], Callable[[jax.Array], PyTree]]:
  r"""The loss as a function of one flat vector :math:`w \in \mathbb{R}^d`.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point (any pytree of floating arrays).

  Returns:
    ``(flat_loss, w, unravel)``: ``flat_loss(w) == loss_fn(params)``, ``w`` the raveled parameters and
    ``unravel`` the inverse of the raveling.

  Raises:
    ValueError: if ``loss_fn(params)`` is not a scalar (the message names its shape).

  Example:
    >>> f, w, unravel = flatten(lambda p: jnp.sum(p["a"] ** 2), {"a": jnp.ones(3)})
  """
  check_scalar_loss(loss_fn, params)
  w, unravel = ravel_pytree(params)
  return (lambda v: loss_fn(unravel(v))), w, unravel


def hvp(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
  r"""Hessian-vector product :math:`\nabla^2 L(\theta)\, v`, forward-over-reverse.

  .. math:: Hv = \frac{d}{d\epsilon}\nabla L(\theta + \epsilon v)\Big|_{\epsilon=0}

  computed as ``jax.jvp(jax.grad(loss_fn), (params,), (v,))``; exact up to rounding, about 2
  gradients of cost (Pearlmutter 1994).

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    v: a pytree shaped like ``params``.

  Returns:
    :math:`Hv` as a pytree shaped like ``params``.

  Raises:
    ValueError: if the loss is not a scalar.

  Example:
    >>> hv = hvp(loss, params, jax.tree.map(jnp.ones_like, params))
  """
  check_scalar_loss(loss_fn, params)
  return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def hessian_operator(loss_fn: LossFn, params: PyTree) -> tuple[MatVec, int]:
  r"""The flat operator :math:`v \mapsto Hv` at ``params``, forward-over-reverse.

  Each product is ``jax.jvp`` of the gradient of the flattened loss (exact up to rounding; about 2
  gradients of cost). On CPU this measured faster than ``jax.linearize`` of the gradient, whose stored
  tangent program was slower under ``vmap`` (benchmarks/stability_curvature.py); XLA shares the primal
  computation when the operator is applied to a batch of vectors under ``vmap``.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.

  Returns:
    ``(matvec, d)``: ``matvec`` maps a flat ``(d,)`` vector to :math:`Hv`, ``(d,)``.

  Raises:
    ValueError: if the loss is not a scalar.

  Example:
    >>> matvec, d = hessian_operator(loss, params)
    >>> hv = matvec(jnp.ones(d))
  """
  f, w, _ = flatten(loss_fn, params)
  grad = jax.grad(f)
  return (lambda v: jax.jvp(grad, (w,), (v,))[1]), int(w.size)


def dense_hessian(loss_fn: LossFn, params: PyTree) -> Float[Array, "d d"]:
  r"""The dense Hessian :math:`\nabla^2 L \in \mathbb{R}^{d\times d}` (``jax.hessian``), for references.

  Memory :math:`O(d^2)`: meant for small problems and tests.

  Example:
    >>> h = dense_hessian(loss, params)
  """
  f, w, _ = flatten(loss_fn, params)
  return jax.hessian(f)(w)


def _block(matvec: MatVec, batch_size: int | None = None) -> Callable[[jax.Array], jax.Array]:
  """Applies ``matvec`` to the columns of a ``(d, k)`` block: all vmapped, or ``batch_size`` at a time."""
  if batch_size is None:
    return jax.vmap(matvec, in_axes=1, out_axes=1)
  return lambda v: jax.lax.map(matvec, v.T, batch_size=batch_size).T


def _rademacher(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
  return jax.random.rademacher(key, shape, jnp.int32).astype(dtype)


# --------------------------------------------------------------------------------------------------
# Top eigenvalues: power iteration and Lanczos.


def _rayleigh_ritz(matvec: MatVec, v: jax.Array) -> Eigen:
  """Ritz pairs of ``matvec`` on the span of the orthonormal columns of ``v``, largest |value| first."""
  w = _block(matvec)(v)
  t = v.T @ w
  theta, s = jnp.linalg.eigh(0.5 * (t + t.T))
  order = jnp.argsort(-jnp.abs(theta))
  theta, s = theta[order], s[:, order]
  vecs, hv = v @ s, w @ s
  res = jnp.linalg.norm(hv - vecs * theta[None, :], axis=0)
  return Eigen(theta, vecs, res)


def power_iteration(matvec: MatVec, v0: Float[Array, "d k"], num_iters: int) -> Eigen:
  r"""Block power (subspace) iteration from ``v0`` followed by a Rayleigh-Ritz step.

  .. math:: V_{j+1} = \mathrm{qr}(H V_j), \quad j < \text{num\_iters} - 1; \qquad
     \text{eig}(V^\top H V) \to (\lambda_i, V s_i),

  the last block product serving the Rayleigh-Ritz step, so the cost is exactly
  ``num_iters * k`` products. Converges to the ``k`` eigenvalues of largest magnitude. Accuracy: the
  error of the top value after :math:`j` products is :math:`O\big(|\lambda_{k+1}/\lambda_i|^{2(j-1)}\big)`
  (times the squared tangent of the start's angle, so a warm start from the previous vectors converges
  in a few products); a posteriori, ``residuals`` bound the distance to the nearest exact eigenvalue.

  Args:
    matvec: a symmetric linear operator on flat ``(d,)`` vectors.
    v0: ``(d, k)`` start block (any full-rank block; the previous call's ``vectors`` to warm start).
    num_iters: number of block products (static, >= 1); 1 is the Rayleigh-Ritz step on ``v0``.

  Returns:
    An :class:`Eigen`, values ordered by decreasing magnitude.

  Example:
    >>> eig = power_iteration(matvec, jax.random.normal(key, (d, 1)), 20)

  Reference: Golub & Van Loan, Matrix Computations (4th ed.), sec. 8.2.
  """
  if v0.ndim != 2:
    raise ValueError(f"v0 must be a (d, k) block, got shape {v0.shape}")
  if num_iters < 1:
    raise ValueError(f"num_iters must be >= 1, got {num_iters}")
  # k = 1 needs no QR (normalization is its orthonormalization), which keeps the compiled loop small.
  ortho = ((lambda b: b / jnp.linalg.norm(b)) if v0.shape[1] == 1
           else (lambda b: jnp.linalg.qr(b)[0]))
  v = ortho(v0)

  def body(_, v):
    return ortho(_block(matvec)(v))

  v = jax.lax.fori_loop(0, num_iters - 1, body, v)
  return _rayleigh_ritz(matvec, v)


def top_eigenvalues_power(loss_fn: LossFn, params: PyTree, key: jax.Array | None = None, *,
                          k: int = 1, num_iters: int = 20,
                          v0: Float[Array, "d k"] | None = None) -> Eigen:
  r"""The ``k`` largest-magnitude Hessian eigenvalues by block power iteration (warm-startable).

  See :func:`power_iteration` for the accuracy. Near a minimum the Hessian is nearly PSD and these are
  the top (sharpness) eigenvalues; where large negative curvature is possible use
  :func:`top_eigenvalues_lanczos` with ``which="LA"``.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    key: PRNG key for a random start (used when ``v0`` is None).
    k: number of eigenvalues (static).
    num_iters: Hessian-vector products per column (static, >= 1; see :func:`power_iteration`).
    v0: optional ``(d, k)`` start block, e.g. the previous step's ``vectors``.

  Returns:
    An :class:`Eigen` (values by decreasing magnitude, flat vectors).

  Raises:
    ValueError: if the loss is not a scalar, or neither ``key`` nor ``v0`` is given.

  Example:
    >>> eig = top_eigenvalues_power(loss, params, jax.random.key(0), k=2)
    >>> eig = top_eigenvalues_power(loss, params, v0=eig.vectors, num_iters=3)  # warm start

  Reference: Wu & Su 2023 (arXiv:2305.17490) sharpness; Yao et al. 2020 (arXiv:1912.07145).
  """
  matvec, d = hessian_operator(loss_fn, params)
  dtype = ravel_pytree(params)[0].dtype
  if v0 is None:
    if key is None:
      raise ValueError("top_eigenvalues_power needs a key or a start block v0")
    v0 = jax.random.normal(key, (d, k), dtype)
  if v0.shape != (d, k):
    raise ValueError(f"v0 must have shape (d, k) = {(d, k)}, got {v0.shape}")
  return power_iteration(matvec, v0, num_iters)


def lanczos(matvec: MatVec, v0: Float[Array, " d"], num_steps: int,
            key: jax.Array | None = None) -> Tridiagonal:
  r"""Lanczos tridiagonalization with full reorthogonalization, a fixed number of steps.

  .. math:: H Q_m^\top = Q_m^\top T_m + \beta_m q_{m+1} e_m^\top, \qquad T_m = Q_m H Q_m^\top.

  Each step applies the three-term recurrence :math:`w = Hq_j - \alpha_j q_j - \beta_{j-1} q_{j-1}`
  and then orthogonalizes ``w`` against all previous vectors (classical Gram-Schmidt), with a second
  pass where the first cancelled more than :math:`1 - 1/\sqrt2` of the norm (Kahan-Parlett "twice
  is enough"), so ``Q`` stays orthonormal to rounding and no spurious copies of eigenvalues appear.
  On breakdown (an invariant subspace found, :math:`\beta_j \approx 0`) the next vector is a random
  one (a normal draw from ``fold_in(key, j)``) orthogonalized twice against all previous, and
  :math:`\beta_j = 0`, so ``T`` stays exact for every ``num_steps <= d``. Accuracy of the top Ritz
  value after ``m`` steps (Kaniel-Paige):
  :math:`(\lambda_1-\lambda_d)\big(\tan\phi_0 / T_{m-1}(1 + 2\gamma)\big)^2` with the Chebyshev polynomial
  :math:`T_{m-1}` and :math:`\gamma = (\lambda_1-\lambda_2)/(\lambda_2-\lambda_d)`; exact once ``m``
  reaches the number of distinct eigenvalues seen by ``v0``. Cost: ``m`` products plus
  :math:`O(m^2 d)` (one or two reads of the stored basis per step).

  Args:
    matvec: a symmetric operator on flat ``(d,)`` vectors.
    v0: ``(d,)`` start vector (normalized here; must be non-zero).
    num_steps: ``m``, static, ``1 <= m <= d``.
    key: PRNG key for breakdown restarts (default: a fixed key; only used on breakdown).

  Returns:
    A :class:`Tridiagonal`.

  Example:
    >>> tri = lanczos(matvec, jax.random.normal(key, (d,)), 30)

  Reference: Golub & Van Loan, Matrix Computations (4th ed.), sec. 10.1-10.3; Parlett, The
  Symmetric Eigenvalue Problem (1998), sec. 6.9 ("twice is enough").
  """
  if v0.ndim != 1:
    raise ValueError(f"v0 must be a flat (d,) vector, got shape {v0.shape}")
  tri = _lanczos_block(lambda v: matvec(v[0])[None], v0[None], num_steps, key)
  return Tridiagonal(tri.alphas[0], tri.betas[0], tri.basis[0])


def _lanczos_block(matvec: MatVec, v0: Float[Array, "p d"], num_steps: int,
                   key: jax.Array | None) -> Tridiagonal:
  """:func:`lanczos` from ``p`` start vectors at once (``matvec`` maps ``(p, d)`` to ``(p, d)``).

  The ``p`` runs are independent; batching them lets the operator share its primal work, and
  the breakdown restart and the second Gram-Schmidt pass are real branches (``lax.cond`` on any run
  needing them), so they cost nothing when not taken (under an outer ``vmap`` they turn into
  selects). Returns a :class:`Tridiagonal` with a leading ``p`` axis.
  """
  p, d = v0.shape
  if not 1 <= num_steps <= d:
    raise ValueError(f"num_steps must be in [1, d = {d}], got {num_steps}")
  key = jax.random.key(0) if key is None else key
  dtype = v0.dtype
  tiny = 10 * jnp.finfo(dtype).eps
  norm = lambda u: jnp.linalg.norm(u, axis=1)

  def project(basis, w):  # one classical Gram-Schmidt pass; rows not yet filled are zero
    return w - jnp.einsum("pmd,pm->pd", basis, jnp.einsum("pmd,pd->pm", basis, w))

  def restart(basis, j):
    fresh = jax.random.normal(jax.random.fold_in(key, j), (p, d), dtype)
    fresh = project(basis, project(basis, fresh))
    fresh_norm = norm(fresh)[:, None]
    return fresh / jnp.where(fresh_norm > 0, fresh_norm, 1.0)

  q0 = v0 / jnp.linalg.norm(v0, axis=1, keepdims=True)
  basis = jnp.zeros((p, num_steps, d), dtype).at[:, 0].set(q0)

  def body(carry, j):
    basis, q_prev, beta_prev, scale = carry
    q = jax.lax.dynamic_index_in_dim(basis, j, axis=1, keepdims=False)
    w = matvec(q)
    alpha = jnp.sum(q * w, axis=1)
    scale = jnp.maximum(scale, norm(w))
    w = w - alpha[:, None] * q - beta_prev[:, None] * q_prev
    before = norm(w)
    w = project(basis, w)
    w = jax.lax.cond(jnp.any(norm(w) < before * 0.5 ** 0.5), project, lambda _, w: w, basis, w)
    beta = norm(w)
    broke = beta <= tiny * scale
    nxt = w / jnp.where(broke, 1.0, beta)[:, None]
    nxt = jax.lax.cond(jnp.any(broke),
                       lambda: jnp.where(broke[:, None], restart(basis, j), nxt), lambda: nxt)
    beta = jnp.where(broke, jnp.zeros_like(beta), beta)
    # Row j + 1 (at the last step j + 1 = m: rewrite row j unchanged), an in-place update.
    last = j + 1 >= num_steps
    basis = jax.lax.dynamic_update_index_in_dim(
        basis, jnp.where(last, q, nxt), jnp.minimum(j + 1, num_steps - 1), axis=1)
    return (basis, q, beta, scale), (alpha, beta)

  zero = jnp.zeros((p,), dtype)
  (basis, *_), (alphas, betas) = jax.lax.scan(
      body, (basis, jnp.zeros_like(q0), zero, zero), jnp.arange(num_steps))
  return Tridiagonal(alphas.T, betas.T, basis)


def tridiagonal_eigh(tri: Tridiagonal) -> tuple[Float[Array, " m"], Float[Array, "m m"]]:
  """Eigen-decomposition of the tridiagonal ``T`` of a :class:`Tridiagonal` (ascending values)."""
  t = (jnp.diag(tri.alphas) + jnp.diag(tri.betas[:-1], 1) + jnp.diag(tri.betas[:-1], -1))
  return jnp.linalg.eigh(t)


def lanczos_eigen(matvec: MatVec, v0: Float[Array, " d"], num_steps: int, *, k: int = 1,
                  which: str = "LA", key: jax.Array | None = None) -> Eigen:
  r"""``k`` extreme Ritz pairs of ``matvec`` from :func:`lanczos` (accuracy: see there).

  Args:
    matvec: a symmetric operator on flat ``(d,)`` vectors.
    v0: ``(d,)`` start vector.
    num_steps: Lanczos steps ``m`` (static, ``k <= m <= d``).
    k: number of eigenpairs (static).
    which: ``"LA"`` largest algebraic (the sharpness when negative curvature may be large) or
      ``"LM"`` largest magnitude.
    key: PRNG key for breakdown restarts.

  Returns:
    An :class:`Eigen`; ``residuals`` are the Lanczos bounds :math:`|\beta_m s_{m,i}|`.

  Example:
    >>> eig = lanczos_eigen(matvec, v0, 30, k=3)
  """
  if which not in ("LA", "LM"):
    raise ValueError(f"which must be 'LA' or 'LM', got {which!r}")
  if not 1 <= k <= num_steps:
    raise ValueError(f"k must be in [1, num_steps = {num_steps}], got {k}")
  tri = lanczos(matvec, v0, num_steps, key)
  theta, s = tridiagonal_eigh(tri)
  order = jnp.argsort(-theta if which == "LA" else -jnp.abs(theta))[:k]
  theta, s = theta[order], s[:, order]
  vectors = tri.basis.T @ s
  residuals = jnp.abs(tri.betas[-1] * s[-1, :])
  return Eigen(theta, vectors, residuals)


def top_eigenvalues_lanczos(loss_fn: LossFn, params: PyTree, key: jax.Array, *, k: int = 1,
                            num_steps: int = 30, which: str = "LA",
                            v0: Float[Array, " d"] | None = None) -> Eigen:
  r"""The ``k`` top Hessian eigenvalues by Lanczos with full reorthogonalization.

  Accuracy: see :func:`lanczos`; with ``num_steps`` 30 on the Hessians of the small networks of this
  library the top value matches a dense ``eigh`` to about 1e-8 relative (tested), and the returned
  ``residuals`` bound the error a posteriori.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    key: PRNG key for the start vector (if ``v0`` is None) and breakdown restarts.
    k: number of eigenvalues (static).
    num_steps: Lanczos steps (static, ``<= d``; clipped to ``d``).
    which: ``"LA"`` (largest algebraic) or ``"LM"`` (largest magnitude).
    v0: optional ``(d,)`` start vector (warm start).

  Returns:
    An :class:`Eigen` ordered by ``which``.

  Raises:
    ValueError: if the loss is not a scalar or the counts are out of range.

  Example:
    >>> lam_max = top_eigenvalues_lanczos(loss, params, jax.random.key(0)).values[0]

  Reference: Ghorbani, Krishnan & Xiao 2019 (arXiv:1901.10159); Wu & Su 2023 (arXiv:2305.17490).
  """
  matvec, d = hessian_operator(loss_fn, params)
  dtype = ravel_pytree(params)[0].dtype
  k_start, k_restart = jax.random.split(key)
  if v0 is None:
    v0 = jax.random.normal(k_start, (d,), dtype)
  return lanczos_eigen(matvec, v0, min(num_steps, d), k=k, which=which, key=k_restart)


# --------------------------------------------------------------------------------------------------
# Traces and norms.


def _check_count(name: str, value: int, minimum: int = 1) -> None:
  if not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _estimate(samples: jax.Array) -> Estimate:
  m = samples.shape[0]
  std = jnp.std(samples, ddof=1) if m > 1 else jnp.full((), jnp.nan, samples.dtype)
  return Estimate(jnp.mean(samples), std / jnp.sqrt(jnp.asarray(m, samples.dtype)))


def _probe_samples(loss_fn: LossFn, params: PyTree, key: jax.Array, num_probes: int,
                   batch_size: int | None,
                   stat: Callable[[jax.Array, jax.Array], jax.Array]) -> Float[Array, " m"]:
  """``stat(v_j, H v_j)`` for Rademacher probes ``v_j`` drawn from ``split(key, num_probes)[j]``.

  Each probe is drawn where it is used, so one probe's vector is never stored next to the others';
  the probes are the same for every ``batch_size`` (all vmapped, or ``lax.map`` chunks).
  """
  matvec, d = hessian_operator(loss_fn, params)
  dtype = ravel_pytree(params)[0].dtype

  def one(k):
    v = _rademacher(k, (d,), dtype)
    return stat(v, matvec(v))

  keys = jax.random.split(key, num_probes)
  if batch_size is None:
    return jax.vmap(one)(keys)
  return jax.lax.map(one, keys, batch_size=batch_size)


def hutchinson_trace(loss_fn: LossFn, params: PyTree, key: jax.Array, *, num_probes: int,
                     batch_size: int | None = None) -> Estimate:
  r"""Hutchinson's estimate of :math:`\mathrm{tr}\,H` with Rademacher probes.

  .. math:: \widehat{\mathrm{tr}} = \frac1m \sum_{j=1}^m v_j^\top H v_j, \qquad
     \mathrm{Var} = \frac2m\Big(\|H\|_F^2 - \sum_i H_{ii}^2\Big).

  Unbiased; ``m`` HVPs, vmapped over all probes at once or ``batch_size`` at a time.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    key: PRNG key for the probes.
    num_probes: ``m`` (static).
    batch_size: probes per vmapped chunk (``lax.map``); None: all at once. On a 2-core CPU, 100
      probes of an 85k-parameter MLP cost 3.6 gradients per probe all at once and 1.6 one at a time
      (benchmarks/stability_curvature.py); on accelerators larger batches pay. Each probe is drawn
      inside its chunk (``split(key, num_probes)``), so no ``(d, num_probes)`` block is stored and
      the estimate does not depend on ``batch_size``.

  Returns:
    An :class:`Estimate` (value and its standard error from the sample variance).

  Example:
    >>> tr = hutchinson_trace(loss, params, jax.random.key(0), num_probes=100).value

  Reference: Hutchinson 1989; Avron & Toledo 2011.
  """
  _check_count("num_probes", num_probes)
  return _estimate(_probe_samples(loss_fn, params, key, num_probes, batch_size, jnp.vdot))


def hutch_pp_trace(loss_fn: LossFn, params: PyTree, key: jax.Array, *,
                   num_matvecs: int) -> Float[Array, ""]:
  r"""Hutch++ estimate of :math:`\mathrm{tr}\,H` from ``num_matvecs`` = 3s Hessian-vector products.

  .. math:: Q = \mathrm{qr}(H S), \quad
     \widehat{\mathrm{tr}} = \mathrm{tr}(Q^\top H Q) + \frac1s \mathrm{tr}\big(G^\top (I - QQ^\top) H
     (I - QQ^\top) G\big)

  with Rademacher :math:`S, G \in \mathbb{R}^{d\times s}`. Unbiased; for PSD :math:`H`,
  :math:`|\widehat{\mathrm{tr}} - \mathrm{tr}\,H| \le \epsilon\,\mathrm{tr}\,H` with
  :math:`O(1/\epsilon)` products (vs :math:`O(1/\epsilon^2)` for Hutchinson), and it is exact when
  the rank of :math:`H` is at most ``s``.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    key: PRNG key.
    num_matvecs: a multiple of 3 with ``num_matvecs // 3 <= d`` (static).

  Returns:
    The trace estimate.

  Example:
    >>> tr = hutch_pp_trace(loss, params, jax.random.key(0), num_matvecs=99)

  Reference: Meyer, Musco, Musco & Woodruff 2021 (arXiv:2010.09649), Algorithm 1.
  """
  _check_count("num_matvecs", num_matvecs, 3)
  if num_matvecs % 3:
    raise ValueError(f"num_matvecs must be a multiple of 3, got {num_matvecs}")
  matvec, d = hessian_operator(loss_fn, params)
  s = num_matvecs // 3
  if s > d:
    raise ValueError(f"num_matvecs // 3 = {s} exceeds the dimension d = {d}")
  dtype = ravel_pytree(params)[0].dtype
  k_s, k_g = jax.random.split(key)
  hmat = _block(matvec)
  q = jnp.linalg.qr(hmat(_rademacher(k_s, (d, s), dtype)))[0]
  g = _rademacher(k_g, (d, s), dtype)
  g = g - q @ (q.T @ g)
  both = jnp.concatenate([q, g], axis=1)
  hb = hmat(both)
  low = jnp.sum(q * hb[:, :s])
  rest = hb[:, s:]
  rest = rest - q @ (q.T @ rest)
  return low + jnp.sum(g * rest) / s


def frobenius_sq(loss_fn: LossFn, params: PyTree, key: jax.Array, *, num_probes: int,
                 batch_size: int | None = None) -> Estimate:
  r"""Estimate of :math:`\|H\|_F^2 = \mathbb{E}_v \|Hv\|^2` with Rademacher probes.

  .. math:: \widehat{\|H\|_F^2} = \frac1m\sum_j \|Hv_j\|^2, \qquad
     \mathrm{Var} = \frac2m\Big(\|H^2\|_F^2 - \sum_i (H^2)_{ii}^2\Big)

  (Hutchinson's estimator applied to :math:`H^2`); unbiased.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    key: PRNG key.
    num_probes: ``m`` (static).
    batch_size: probes per vmapped chunk; None: all at once (see :func:`hutchinson_trace`).

  Returns:
    An :class:`Estimate`.

  Example:
    >>> f2 = frobenius_sq(loss, params, jax.random.key(0), num_probes=100).value

  Reference: Wu & Su 2023 (arXiv:2305.17490) and Wu, Wang & Su 2022 (the Frobenius-norm bound).
  """
  _check_count("num_probes", num_probes)
  return _estimate(_probe_samples(loss_fn, params, key, num_probes, batch_size,
                                  lambda v, hv: jnp.vdot(hv, hv)))


def per_example_jacobians(apply_fn: Callable[[PyTree, jax.Array], jax.Array], params: PyTree,
                          x: jax.Array, *, batch_size: int | None = None) -> Float[Array, "n k d"]:
  r"""Flat per-example Jacobians :math:`J_i = \partial f(x_i;\theta)/\partial\theta`, ``(n, k, d)``.

  ``apply_fn(params, x)`` maps ``(n, ...)`` inputs to ``(n,)`` (then ``k = 1``) or ``(n, k)``
  outputs; it is called on one example at a time (``x[i][None]``).

  Args:
    apply_fn: the model.
    params: the point.
    x: ``(n, ...)`` inputs.
    batch_size: examples per vmapped chunk (``lax.map``), to bound memory; None: all at once.

  Returns:
    ``(n, k, d)`` in the raveling order of ``params``.

  Example:
    >>> jac = per_example_jacobians(model.apply, params, data.x)
  """
  w, unravel = ravel_pytree(params)

  def one(xi):
    out = lambda v: jnp.reshape(apply_fn(unravel(v), xi[None]), (-1,))
    return jax.jacrev(out)(w)

  if batch_size is None:
    return jax.vmap(one)(x)
  return jax.lax.map(one, x, batch_size=batch_size)


def gauss_newton_trace(apply_fn: Callable[[PyTree, jax.Array], jax.Array], params: PyTree,
                       x: jax.Array, *, batch_size: int | None = None) -> Float[Array, ""]:
  r"""Exact trace of the Gauss-Newton matrix of the mean squared error.

  For :math:`L = \frac1n\sum_i \tfrac12\|f(x_i;\theta) - y_i\|^2`,

  .. math:: G = \frac1n\sum_i J_i^\top J_i, \qquad \mathrm{tr}\,G = \frac1n \sum_i \|J_i\|_F^2,

  which equals :math:`\mathrm{tr}\,\nabla^2 L` at an interpolating minimum (the residual term
  vanishes) and differs from it by :math:`\frac1n\sum_i \langle r_i, \nabla^2 f_i\rangle` elsewhere.
  Exact up to rounding; ``n`` gradients (Jacobians) of cost, no probes.

  Args:
    apply_fn: ``(params, x) -> (n,)`` or ``(n, k)`` outputs.
    params: the point.
    x: ``(n, ...)`` inputs.
    batch_size: examples per vmapped chunk (memory ``batch_size * k * d``); None: all at once.

  Returns:
    :math:`\mathrm{tr}\,G`.

  Example:
    >>> tr_g = gauss_newton_trace(model.apply, params, data.x)

  Reference: Wu & Su 2023 (arXiv:2305.17490), the trace :math:`\mathrm{tr}\,G` of the stability bound.
  """
  w, unravel = ravel_pytree(params)

  def sq(xi):
    out = lambda v: jnp.reshape(apply_fn(unravel(v), xi[None]), (-1,))
    jac = jax.jacrev(out)(w)
    return jnp.sum(jac * jac)

  per = jax.vmap(sq)(x) if batch_size is None else jax.lax.map(sq, x, batch_size=batch_size)
  return jnp.mean(per)


# --------------------------------------------------------------------------------------------------
# Spectral density: stochastic Lanczos quadrature.


def slq(loss_fn: LossFn, params: PyTree, key: jax.Array, *, num_probes: int,
        num_steps: int) -> Quadrature:
  r"""Stochastic Lanczos quadrature of the Hessian's spectral density.

  For each normalized Rademacher probe :math:`v_p`, ``num_steps`` = m Lanczos steps give
  :math:`T_m = S\,\mathrm{diag}(\theta)\,S^\top`; nodes :math:`\theta_{pj}` and weights
  :math:`w_{pj} = S_{1j}^2` satisfy

  .. math:: \sum_j w_{pj}\, \theta_{pj}^r = v_p^\top H^r v_p \quad (r \le 2m - 1)

  exactly (Gauss quadrature), and :math:`\mathbb{E}_v[v^\top g(H) v] = \frac1d \mathrm{tr}\,g(H)`.
  So :math:`d\cdot\frac1P\sum_{p,j} w_{pj} g(\theta_{pj})` estimates :math:`\mathrm{tr}\,g(H)` with the
  Hutchinson variance over ``num_probes`` probes plus a quadrature error that vanishes for
  polynomials of degree :math:`< 2m`.

  Args:
    loss_fn: ``params -> scalar``.
    params: the point.
    key: PRNG key.
    num_probes: ``P`` (static).
    num_steps: ``m`` (static, clipped to ``d``).

  Returns:
    A :class:`Quadrature` with ``(P, m)`` nodes and weights.

  Example:
    >>> q = slq(loss, params, jax.random.key(0), num_probes=4, num_steps=50)
    >>> dens = spectral_density(q, jnp.linspace(-1, 10, 500), sigma=0.05)

  Reference: Ubaru, Chen & Saad 2017 (SIAM J. Matrix Anal. Appl.); Ghorbani et al. 2019
  (arXiv:1901.10159); Yao et al. 2020, PyHessian (arXiv:1912.07145).
  """
  _check_count("num_probes", num_probes)
  _check_count("num_steps", num_steps)
  matvec, d = hessian_operator(loss_fn, params)
  dtype = ravel_pytree(params)[0].dtype
  m = min(num_steps, d)
  k_v, k_r = jax.vmap(jax.random.split, out_axes=1)(jax.random.split(key, num_probes))
  v0 = jax.vmap(lambda k: _rademacher(k, (d,), dtype))(k_v)
  # All probes in one Lanczos block: the products share the primal work, and a breakdown restart
  # is a branch taken only when some probe needs it.
  tri = _lanczos_block(jax.vmap(matvec), v0, m, k_r[0])
  theta, s = jax.vmap(tridiagonal_eigh)(tri._replace(basis=jnp.zeros((num_probes, 0), dtype)))
  return Quadrature(theta, s[:, 0, :] ** 2)


def quadrature_trace(quad: Quadrature, dim: int,
                     fn: Callable[[jax.Array], jax.Array] = lambda t: t) -> Float[Array, ""]:
  r""":math:`\mathrm{tr}\,g(H) \approx d\,\frac1P\sum_{p,j} w_{pj}\, g(\theta_{pj})` from an SLQ result.

  Example:
    >>> tr = quadrature_trace(q, d)                         # tr H
    >>> fro = quadrature_trace(q, d, lambda t: t ** 2)      # |H|_F^2
  """
  return dim * jnp.mean(jnp.sum(quad.weights * fn(quad.nodes), axis=1))


def spectral_density(quad: Quadrature, grid: Float[Array, " g"], *, sigma: float) -> Float[Array, " g"]:
  r"""Gaussian-smoothed spectral density on ``grid`` from an SLQ result.

  .. math:: \rho_\sigma(t) = \frac1P\sum_{p,j} w_{pj}\,
     \frac{1}{\sqrt{2\pi}\sigma} e^{-(t - \theta_{pj})^2/(2\sigma^2)},

  a probability density (integrates to 1 when the grid covers the spectrum by a few ``sigma``).

  Args:
    quad: a :class:`Quadrature`.
    grid: ``(g,)`` points.
    sigma: smoothing width (> 0).

  Returns:
    ``(g,)`` density values.

  Example:
    >>> dens = spectral_density(q, jnp.linspace(-1, 10, 500), sigma=0.05)

  Reference: Ghorbani et al. 2019 (arXiv:1901.10159), eq. (5).
  """
  if not sigma > 0:
    raise ValueError(f"sigma must be > 0, got {sigma}")
  z = (grid[:, None, None] - quad.nodes[None, :, :]) / sigma
  kern = jnp.exp(-0.5 * z * z) / (jnp.sqrt(2 * jnp.pi) * sigma)
  return jnp.mean(jnp.sum(quad.weights[None, :, :] * kern, axis=2), axis=1)
