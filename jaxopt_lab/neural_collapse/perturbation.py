r"""The perturbation operator F of Theorem 4.1: how eq. 2's minimizer moves when :math:`H_0` moves.

At a minimizer :math:`(W, H)` of eq. 2 the gradient vanishes; differentiating that identity in
:math:`H_0` (implicit function theorem), with :math:`\partial^2 f_\beta/\partial H\partial H_0 =
-\frac{\beta}{Kn} I`,

.. math:: \delta H = F\,\delta H_0, \qquad F = \frac{\beta}{Kn}\left[\left(\nabla^2_{(W,H)}
          f_\beta\right)^{-1}\right]_{HH}.

Eliminating :math:`W` (Schur complement; :math:`W = W^*(H)` at the minimizer) gives the equivalent
:math:`F = (I + \frac{Kn}{\beta}\nabla^2\mathcal L(H))^{-1}` with :math:`\mathcal L` the reduced loss,
and the large-:math:`\beta` approximation used for Theorem 4.2,

.. math:: F \approx I - \frac{Kn}{\beta}\nabla^2 \mathcal L(H_0) + O(\beta^{-2}).

Operators act on :math:`\mathrm{vec}(H)` in row-major order (entry ``(i, j)`` of the ``(d, N)`` matrix
at ``i * N + j``); :func:`class_blocks` cuts them into the :math:`K \times K` class blocks
:math:`F_{kk'}` (each ``(d n, d n)``: class-k' columns in, class-k columns out).

Reference: Tirer, Huang & Niles-Weed 2023 (arXiv:2210.16658), Section 4, Theorems 4.1 and 4.2.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from jaxopt_lab.neural_collapse import models, solvers, validation


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _operators_from_hessian(W, H, lambda_W, lambda_H, betas, *, num_classes):
  """F for each beta in ``betas`` (1-D) at one point (W, H): one Hessian, one solve per beta."""
  k, n = num_classes, H.shape[1] // num_classes
  flat, unravel = ravel_pytree((W, H))

  def f(x):  # eq. 1; eq. 2's proximity term adds exactly (beta / Kn) I to the HH block
    w, h = unravel(x)
    return models.mse_loss(models.UFMParams(w, h, jnp.zeros(k, h.dtype)), num_classes=k,
                           lambda_W=lambda_W, lambda_H=lambda_H)

  hess = jax.hessian(f)(flat)
  hess = (hess + hess.T) / 2
  m = W.size
  is_h = (jnp.arange(flat.size) >= m).astype(flat.dtype)
  rhs = jnp.eye(flat.size, dtype=flat.dtype)[:, m:]

  def one(beta):
    full = hess + jnp.diag(is_h * beta / (k * n))
    return beta / (k * n) * jnp.linalg.solve(full, rhs)[m:]

  return jax.vmap(one)(betas)


def _check(H0, num_classes, lambda_W, lambda_H, beta):
  H0 = jnp.asarray(H0)
  validation.check_columns(H0, num_classes, "H0")
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H)
  validation.check_nonnegative("beta", beta, strict=True)
  return H0


def perturbation_operator(H0: Float[ArrayLike, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                          lambda_H: ArrayLike, beta: ArrayLike,
                          minimizer: models.UFMParams | None = None, num_iters: int = 300
                          ) -> Float[Array, "*B dN dN"]:
  r"""Theorem 4.1's :math:`F = \frac{\beta}{Kn}[(\nabla^2 f_\beta)^{-1}]_{HH}` from the exact Hessian.

  The Hessian of eq. 2 in :math:`(W, H)` is ``jax.hessian`` of eq. 1 plus the proximity term's exact
  Hessian :math:`\frac{\beta}{Kn} I` on the HH block (:math:`H_0` enters only through the
  minimizer), taken at eq. 2's minimizer: found by
  :func:`~jaxopt_lab.neural_collapse.solvers.solve_perturbed` unless ``minimizer`` is given (e.g. the
  collapsed :math:`(W^*, H^*)` when :math:`H_0 = H^*`, Corollary 2.2).

  Args:
    H0: the given features (d, Kn), class by class.
    num_classes: K.
    lambda_W, lambda_H: hyperparameters of eq. 2.
    beta: a scalar, or a 1-D array of betas (then the result has a leading beta axis; with a given
      ``minimizer`` one Hessian serves every beta).
    minimizer: eq. 2's minimizer if known (its ``b`` is ignored); shared by all betas.
    num_iters: L-BFGS iterations when the minimizer is solved for.

  Returns:
    F as a ``(d N, d N)`` matrix on row-major :math:`\mathrm{vec}(H)` (``(B, d N, d N)`` for B betas).

  Raises:
    ValueError: for bad shapes, non-finite H0 or invalid hyperparameters.

  Example:
    >>> star = collapsed_minimizer(key, num_classes=4, n=10, d=10, lambda_W=2**0.5, lambda_H=0.1)
    >>> F = perturbation_operator(star.H, num_classes=4, lambda_W=2**0.5, lambda_H=0.1, beta=100.,
    ...                           minimizer=star)

  Reference: arXiv:2210.16658 Theorem 4.1.
  """
  betas = jnp.asarray(beta, dtype=jnp.result_type(float))
  if betas.ndim > 1:
    raise ValueError(f"beta must be a scalar or a 1-D array, got shape {betas.shape}")
  H0 = _check(H0, num_classes, lambda_W, lambda_H, betas)
  if minimizer is None:
    if betas.ndim == 1:
      return jnp.stack([perturbation_operator(H0, num_classes=num_classes, lambda_W=lambda_W,
                                              lambda_H=lambda_H, beta=b, num_iters=num_iters)
                        for b in betas])
    minimizer = solvers.solve_perturbed(H0, num_classes=num_classes, lambda_W=lambda_W,
                                        lambda_H=lambda_H, beta=betas, num_iters=num_iters).params
  W, H = jnp.asarray(minimizer.W), jnp.asarray(minimizer.H)
  if W.shape != (num_classes, H0.shape[0]) or H.shape != H0.shape:
    raise ValueError(f"minimizer shapes W {W.shape}, H {H.shape} do not match K={num_classes}, "
                     f"H0 {H0.shape}")
  F = _operators_from_hessian(W, H, *validation.as_float(lambda_W, lambda_H), jnp.atleast_1d(betas),
                              num_classes=num_classes)
  return F if betas.ndim else F[0]


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _reduced_hessian(H, lambda_W, lambda_H, *, num_classes):
  size = H.size
  fn = lambda x: models.reduced_loss(x.reshape(H.shape), num_classes=num_classes, lambda_W=lambda_W,
                                     lambda_H=lambda_H)
  hess = jax.hessian(fn)(H.reshape(size))
  return (hess + hess.T) / 2


def reduced_hessian(H: Float[ArrayLike, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                    lambda_H: ArrayLike) -> Float[Array, "dN dN"]:
  r""":math:`\nabla^2\mathcal L(H)`, the Hessian of the reduced loss :math:`f(W^*(H), H)` (row-major).

  Equals the Schur complement :math:`\nabla^2_{HH}f - \nabla^2_{HW}f(\nabla^2_{WW}f)^{-1}
  \nabla^2_{WH}f` at :math:`W = W^*(H)`.

  Reference: arXiv:2210.16658 Section 4.
  """
  H = _check(H, num_classes, lambda_W, lambda_H, 1.0)
  return _reduced_hessian(H, *validation.as_float(lambda_W, lambda_H), num_classes=num_classes)


def large_beta_operator(H0: Float[ArrayLike, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                        lambda_H: ArrayLike, beta: ArrayLike) -> Float[Array, "dN dN"]:
  r"""The large-:math:`\beta` approximation :math:`F \approx I - \frac{Kn}{\beta}\nabla^2\mathcal L(H_0)`.

  Its error against :func:`perturbation_operator` is :math:`O(\beta^{-2})` (the minimizer moves by
  :math:`O(1/\beta)` and the Neumann series of :math:`(I + \frac{Kn}\beta\nabla^2\mathcal L)^{-1}` is
  truncated after the linear term). At a collapsed :math:`H_0` Theorem 4.2 reads its singular values.

  Reference: arXiv:2210.16658 Theorems 4.1-4.2.
  """
  H0 = _check(H0, num_classes, lambda_W, lambda_H, beta)
  return _large_beta(H0, *validation.as_float(lambda_W, lambda_H, beta), num_classes=num_classes)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def _large_beta(H0, lambda_W, lambda_H, beta, *, num_classes):
  k, n = num_classes, H0.shape[1] // num_classes
  hess = _reduced_hessian(H0, lambda_W, lambda_H, num_classes=num_classes)
  return jnp.eye(H0.size, dtype=H0.dtype) - (k * n / beta) * hess


def _check_blocks(F: jax.Array, num_classes: int, d: int) -> None:
  size = F.shape[-1]
  if F.ndim < 2 or F.shape[-2] != size or size % d or (size // d) % num_classes:
    raise ValueError(f"F of shape {F.shape} is not square over a (d={d}, N=K n) matrix with "
                     f"K={num_classes}")


@functools.partial(jax.jit, static_argnames=("num_classes", "d"))
def _class_blocks(F, *, num_classes, d):
  k, batch = num_classes, F.shape[:-2]
  n = F.shape[-1] // d // k
  T = F.reshape(*batch, d, k, n, d, k, n)             # (i, class, col | i', class', col')
  nb = len(batch)
  T = jnp.moveaxis(T, (nb + 1, nb + 4), (nb, nb + 1))  # (class, class', i, col, i', col')
  return T.reshape(*batch, k, k, d * n, d * n)


@functools.partial(jax.jit, static_argnames=("num_classes", "d"))
def _block_singular_values(F, *, num_classes, d):
  return jnp.linalg.svd(_class_blocks(F, num_classes=num_classes, d=d), compute_uv=False)


def class_blocks(F: Float[ArrayLike, "*B dN dN"], *, num_classes: int, d: int
                 ) -> Float[Array, "*B K K dn dn"]:
  r"""The class blocks :math:`F_{kk'}` of an operator on row-major :math:`\mathrm{vec}(H)`.

  ``out[..., k, k']`` maps the class-:math:`k'` columns of :math:`\delta H_0` to the class-:math:`k`
  columns of :math:`\delta H` (each block vectorized row-major over its ``(d, n)`` sub-matrix).
  Leading axes of ``F`` (betas, hyperparameters) are kept.

  Raises:
    ValueError: if F is not square over a ``(d, K n)`` matrix.
  """
  F = jnp.asarray(F)
  _check_blocks(F, num_classes, d)
  return _class_blocks(F, num_classes=num_classes, d=d)


def block_singular_values(F: Float[ArrayLike, "*B dN dN"], *, num_classes: int, d: int
                          ) -> Float[Array, "*B K K dn"]:
  r"""Singular values (descending) of every class block :math:`F_{kk'}` of :func:`class_blocks`.

  Example:
    >>> sv = block_singular_values(F, num_classes=4, d=10)
    >>> sv[0, 0, -1]    # sigma_min(F_00); sv[0, 1, :2] shows the cross block is rank one
  """
  F = jnp.asarray(F)
  _check_blocks(F, num_classes, d)
  return _block_singular_values(F, num_classes=num_classes, d=d)


class Theorem42(NamedTuple):
  r"""Theorem 4.2's singular values of F at a collapsed :math:`H_0`, to first order in :math:`1/\beta`.

  Attributes:
    sigma_max_diag: :math:`\sigma_{\max}(F_{kk}) = 1`.
    sigma_min_diag: :math:`\sigma_{\min}(F_{kk}) = 1 - \sqrt{\lambda_H/\lambda_W}/\beta`.
    sigma_max_cross: :math:`\sigma_{\max}(F_{kk'}) = 2\lambda_H(1 - \sqrt{\lambda_H\lambda_W})/\beta`,
      the only non-zero singular value of the rank-one cross block.
    num_unit_diag: :math:`d - K` singular values of each :math:`F_{kk}` equal to 1 exactly.
  """

  sigma_max_diag: jax.Array
  sigma_min_diag: jax.Array
  sigma_max_cross: jax.Array
  num_unit_diag: int


def theorem42_prediction(*, num_classes: int, d: int, lambda_W: ArrayLike, lambda_H: ArrayLike,
                         beta: ArrayLike) -> Theorem42:
  r"""Theorem 4.2's predicted singular values of the class blocks of F (collapsed :math:`H_0`).

  .. math:: \sigma_{\min}(F_{kk}) = 1 - \frac{1}{\beta}\sqrt{\frac{\lambda_H}{\lambda_W}}, \quad
            \sigma_{\max}(F_{kk}) = 1, \quad
            \sigma_{\max}(F_{kk'}) = \frac{2\lambda_H(1 - \sqrt{\lambda_H\lambda_W})}{\beta}

  valid for :math:`\lambda_H\lambda_W < 1`, :math:`d \ge K`,
  :math:`\beta \gg \max(1, \lambda_H)`, and (for the minimum) :math:`\lambda_H\lambda_W < 1` so that
  :math:`\sqrt{\lambda_H/\lambda_W} > \lambda_H`.

  Raises:
    ValueError: if d < K or the regime is trivial (:math:`\lambda_H\lambda_W \ge 1`).

  Reference: arXiv:2210.16658 Theorem 4.2.
  """
  validation.check_dims_for_theory(d, num_classes, "Theorem 4.2")
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H, strict=True)
  validation.check_nonnegative("beta", beta, strict=True)
  if validation.is_concrete(lambda_W) and validation.is_concrete(lambda_H):
    if float(lambda_W) * float(lambda_H) >= 1:
      raise ValueError(f"lambda_H * lambda_W = {float(lambda_W) * float(lambda_H):.4g} >= 1: the "
                       "minimizer is zero (Theorem 2.1) and Theorem 4.2 does not apply")
  lw, lh = jnp.asarray(lambda_W, float), jnp.asarray(lambda_H, float)
  c = jnp.sqrt(lw * lh)
  return Theorem42(sigma_max_diag=jnp.ones_like(c), sigma_min_diag=1 - jnp.sqrt(lh / lw) / beta,
                   sigma_max_cross=2 * lh * (1 - c) / beta, num_unit_diag=d - num_classes)
