r"""The unconstrained features model (UFM), its perturbation model (eq. 2) and their closed forms.

K classes, n samples per class, columns class by class: :math:`H \in \mathbb{R}^{d \times Kn}`,
:math:`Y = I_K \otimes \mathbf 1_n^\top`, :math:`W \in \mathbb{R}^{K \times d}` (Tirer, Huang &
Niles-Weed 2023, arXiv:2210.16658):

.. math::
  f(W, H) = \frac{1}{2Kn}\|WH - Y\|_F^2 + \frac{\lambda_W}{2K}\|W\|_F^2
          + \frac{\lambda_H}{2Kn}\|H\|_F^2 \qquad \text{(eq. 1)}

  f_\beta(W, H; H_0) = f(W, H) + \frac{\beta}{2Kn}\|H - H_0\|_F^2 \qquad \text{(eq. 2)}

The loss functions here are pure and traceable (hyperparameters may be traced and vmapped); the class
count ``num_classes`` is static and ``n = N / K`` is read from the shape of ``H``. Input checks live in
the public solvers and flows.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy as jsp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from jaxopt_lab.neural_collapse import validation


class UFMParams(NamedTuple):
  """The UFM's variables: classifier ``W`` (K, d), features ``H`` (d, Kn), bias ``b`` (K,)."""

  W: Float[Array, "K d"]
  H: Float[Array, "d N"]
  b: Float[Array, " K"]


def targets(num_classes: int, n: int, dtype=None) -> Float[Array, "K N"]:
  r""":math:`Y = I_K \otimes \mathbf 1_n^\top`, one-hot targets of class-by-class columns."""
  return jnp.repeat(jnp.eye(num_classes, dtype=dtype or jnp.result_type(float)), n, axis=1)


def _n(H: jax.Array, num_classes: int) -> int:
  return H.shape[1] // num_classes


@functools.partial(jax.jit, static_argnames=("num_classes", "bias"))
def mse_loss(params: UFMParams, *, num_classes: int, lambda_W: ArrayLike, lambda_H: ArrayLike,
             bias: bool = False) -> jax.Array:
  r"""Eq. 1, the regularized MSE UFM, optionally with an unregularized bias :math:`b`.

  .. math:: \frac{1}{2Kn}\|WH + b\mathbf 1^\top - Y\|_F^2 + \frac{\lambda_W}{2K}\|W\|_F^2
            + \frac{\lambda_H}{2Kn}\|H\|_F^2

  Args:
    params: :class:`UFMParams`; ``params.b`` is ignored unless ``bias``.
    num_classes: K (static).
    lambda_W, lambda_H: regularization (traceable).
    bias: whether the unregularized bias enters (static).

  Example:
    >>> mse_loss(UFMParams(W, H, jnp.zeros(K)), num_classes=K, lambda_W=0.1, lambda_H=0.1)

  Reference: arXiv:2210.16658 eq. 1; Tirer & Bruna 2022 (arXiv:2202.08087).
  """
  W, H, b = params
  k, n = num_classes, _n(H, num_classes)
  out = W @ H
  if bias:
    out = out + b[:, None]
  resid = out - targets(k, n, H.dtype)
  return (jnp.sum(resid**2) / (2 * k * n) + lambda_W * jnp.sum(W**2) / (2 * k)
          + lambda_H * jnp.sum(H**2) / (2 * k * n))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def perturbed_loss(params: UFMParams, H0: Float[Array, "d N"], *, num_classes: int,
                   lambda_W: ArrayLike, lambda_H: ArrayLike, beta: ArrayLike) -> jax.Array:
  r"""Eq. 2: the UFM (no bias) plus a proximity term keeping :math:`H` near the given :math:`H_0`.

  .. math:: f(W, H) + \frac{\beta}{2Kn}\|H - H_0\|_F^2

  Large :math:`\beta` means little capacity between :math:`H_0` and :math:`H`.

  Example:
    >>> perturbed_loss(UFMParams(W, H, b), H0, num_classes=4, lambda_W=1.4, lambda_H=0.1, beta=10.)

  Reference: arXiv:2210.16658 eq. 2.
  """
  k, n = num_classes, _n(params.H, num_classes)
  return (mse_loss(params, num_classes=k, lambda_W=lambda_W, lambda_H=lambda_H)
          + beta * jnp.sum((params.H - H0) ** 2) / (2 * k * n))


@functools.partial(jax.jit, static_argnames=("num_classes",))
def ce_loss(params: UFMParams, *, num_classes: int, lambda_W: ArrayLike, lambda_H: ArrayLike,
            lambda_b: ArrayLike) -> jax.Array:
  r"""The cross-entropy UFM in Zhu et al.'s normalization (class-by-class columns).

  .. math:: \frac1N \sum_{i} \mathrm{CE}(W h_i + b, y_i) + \frac{\lambda_W}{2}\|W\|_F^2
            + \frac{\lambda_H}{2}\|H\|_F^2 + \frac{\lambda_b}{2}\|b\|^2

  Example:
    >>> ce_loss(UFMParams(W, H, b), num_classes=4, lambda_W=5e-3, lambda_H=5e-3, lambda_b=5e-3)

  Reference: Zhu et al. 2021 (arXiv:2105.02375), eq. 6.
  """
  W, H, b = params
  k, n = num_classes, _n(H, num_classes)
  logits = W @ H + b[:, None]
  ce = jnp.mean(jax.nn.logsumexp(logits, axis=0) - jnp.sum(logits * targets(k, n, H.dtype), axis=0))
  return ce + lambda_W / 2 * jnp.sum(W**2) + lambda_H / 2 * jnp.sum(H**2) + lambda_b / 2 * jnp.sum(b**2)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def optimal_classifier(H: Float[Array, "d N"], *, num_classes: int, lambda_W: ArrayLike
                       ) -> Float[Array, "K d"]:
  r"""The classifier minimizing eq. 1 for fixed :math:`H` (the central path):

  .. math:: W^*(H) = Y H^\top (H H^\top + n\lambda_W I_d)^{-1}

  (from :math:`\nabla_W f = \frac{1}{Kn}[(WH - Y)H^\top + n\lambda_W W] = 0`). Needs
  :math:`\lambda_W > 0`; solved by a Cholesky factorization of the :math:`d \times d` system.

  Example:
    >>> W = optimal_classifier(H, num_classes=4, lambda_W=2**0.5)   # (K, d)

  Reference: arXiv:2210.16658 Section 3.
  """
  k, n = num_classes, _n(H, num_classes)
  d = H.shape[0]
  gram = H @ H.T + n * lambda_W * jnp.eye(d, dtype=H.dtype)
  rhs = H @ targets(k, n, H.dtype).T  # (d, K) = H Y^T
  return jsp.linalg.cho_solve(jsp.linalg.cho_factor(gram), rhs).T


@functools.partial(jax.jit, static_argnames=("num_classes",))
def reduced_loss(H: Float[Array, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                 lambda_H: ArrayLike) -> jax.Array:
  r""":math:`\mathcal L(H) = f(W^*(H), H)`, eq. 1 minimized over :math:`W`.

  Example:
    >>> g = jax.grad(reduced_loss)(H, num_classes=4, lambda_W=1.4, lambda_H=0.1)

  Reference: arXiv:2210.16658 Section 3.
  """
  W = optimal_classifier(H, num_classes=num_classes, lambda_W=lambda_W)
  return mse_loss(UFMParams(W, H, jnp.zeros(num_classes, H.dtype)), num_classes=num_classes,
                  lambda_W=lambda_W, lambda_H=lambda_H)


@functools.partial(jax.jit, static_argnames=("num_classes",))
def central_path_field(H: Float[Array, "d N"], *, num_classes: int, lambda_W: ArrayLike,
                       lambda_H: ArrayLike) -> Float[Array, "d N"]:
  r"""The central-path velocity :math:`-[W^{*\top}(W^* H - Y) + \lambda_H H]`, :math:`W^* = W^*(H)`.

  By the envelope theorem this is :math:`-Kn\,\nabla\mathcal L(H)`: the flow of
  :func:`jaxopt_lab.neural_collapse.flows.central_path_flow` is gradient flow on the reduced loss of
  eq. 1 with time measured in units of :math:`Kn` (``t = tau / (Kn)`` for
  :math:`dH/d\tau = -\nabla \mathcal L`). With this clock the minimizer of eq. 2 is one implicit
  Euler step of size :math:`1/\beta`: :math:`H = H_0 + \tfrac1\beta\,\mathrm{field}(H)`.

  Example:
    >>> v = central_path_field(H, num_classes=4, lambda_W=1.4, lambda_H=0.1)   # (d, N), = -Kn dL/dH

  Reference: arXiv:2210.16658 Section 3 (Theorem 3.1).
  """
  k, n = num_classes, _n(H, num_classes)
  W = optimal_classifier(H, num_classes=k, lambda_W=lambda_W)
  return -(W.T @ (W @ H - targets(k, n, H.dtype)) + lambda_H * H)


class MSEClosedForm(NamedTuple):
  r"""Theorem 2.1's minimizer of eq. 1 (and its bias variant).

  Attributes:
    c: :math:`\sqrt{\lambda_H\lambda_W}`.
    rho: :math:`(1-c)\sqrt{\lambda_W/\lambda_H}` (0 when c >= 1): :math:`\bar H^\top\bar H = \rho I_K`
      without bias, :math:`\rho(I - \mathbf 1\mathbf 1^\top/K)` with the bias.
    f_star: the minimum value.
    w_hbar: the diagonal of :math:`W\bar H` without bias, :math:`1 - c` (0 when trivial).
    b_star: the bias, 1/K (with bias; 0 without).
    w_norm_sq: :math:`\|W\|_F^2 = (\lambda_H/\lambda_W)\,\mathrm{tr}(\bar H^\top \bar H)`.
    h_norm_sq_per_column: :math:`\|h_{k,i}\|^2` (rho without bias, rho (K-1)/K with it).
    trivial: whether c >= 1, where the minimizer is W = H = 0.
  """

  c: jax.Array
  rho: jax.Array
  f_star: jax.Array
  w_hbar: jax.Array
  b_star: jax.Array
  w_norm_sq: jax.Array
  h_norm_sq_per_column: jax.Array
  trivial: jax.Array


def mse_closed_form(num_classes: int, lambda_W: ArrayLike, lambda_H: ArrayLike,
                    bias: bool = False) -> MSEClosedForm:
  r"""Closed form of eq. 1's minimizers (Theorem 2.1) and of the unregularized-bias variant.

  .. math:: c = \sqrt{\lambda_H\lambda_W}, \quad \rho = (1-c)\sqrt{\lambda_W/\lambda_H}, \quad
            W\bar H = (1-c) I_K, \quad f^* = c - c^2/2

  and with the bias :math:`b^* = \mathbf 1/K`, :math:`\bar h_G = 0`,
  :math:`\bar H^\top \bar H = \rho(I - \mathbf 1\mathbf 1^\top/K)`, :math:`f^* = \frac{K-1}{K}(c - c^2/2)`.
  For :math:`c \ge 1` the minimizer is :math:`W = H = 0` and :math:`f^* = 1/2` (no bias) or
  :math:`(K-1)/(2K)` (bias). Needs :math:`\lambda_W, \lambda_H > 0` and :math:`d \ge K`; a concrete
  non-positive or non-finite :math:`\lambda` or :math:`K < 2` raises ``ValueError``.

  Example:
    >>> mse_closed_form(4, 2**0.5, 0.1).f_star   # c = sqrt(0.1 sqrt 2) = 0.3760603 -> 0.3053496312

  Reference: arXiv:2210.16658 Theorem 2.1; Tirer & Bruna 2022 (arXiv:2202.08087).
  """
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2 (one class has no collapse geometry), got "
                     f"{num_classes!r}")
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H, strict=True)
  return _mse_closed_form(int(num_classes), lambda_W, lambda_H, bias=bool(bias))


@functools.partial(jax.jit, static_argnames=("num_classes", "bias"))
def _mse_closed_form(num_classes: int, lambda_W: ArrayLike, lambda_H: ArrayLike,
                     bias: bool) -> MSEClosedForm:
  k = num_classes
  lw, lh = jnp.asarray(lambda_W, float), jnp.asarray(lambda_H, float)
  c = jnp.sqrt(lw * lh)
  trivial = c >= 1
  cc = jnp.minimum(c, 1.0)
  rho = (1 - cc) * jnp.sqrt(lw / lh)
  scale = (k - 1) / k if bias else 1.0
  f_star = scale * (cc - cc**2 / 2)
  w_hbar = jnp.zeros_like(c) if bias else 1 - cc
  h_col = rho * scale
  return MSEClosedForm(c=c, rho=rho, f_star=f_star, w_hbar=w_hbar,
                       b_star=jnp.full_like(c, 1.0 / k if bias else 0.0),
                       w_norm_sq=(lh / lw) * k * h_col, h_norm_sq_per_column=h_col, trivial=trivial)


class CEClosedForm(NamedTuple):
  r"""The cross-entropy UFM's minimizer (Zhu et al. 2021, Theorem 3.1).

  Attributes:
    p: :math:`\|w_k\|\|h_{k,i}\|` (0 when trivial).
    w_norm_sq: :math:`\|w_k\|^2 = p\sqrt{\lambda_H n/\lambda_W}`.
    h_norm_sq: :math:`\|h_{k,i}\|^2 = p\sqrt{\lambda_W/(\lambda_H n)}`.
    f_star: the minimum value.
    trivial: whether :math:`\sqrt{n\lambda_W\lambda_H} \ge 1/K` (then W = H = 0, b = 0, f* = ln K).
  """

  p: jax.Array
  w_norm_sq: jax.Array
  h_norm_sq: jax.Array
  f_star: jax.Array
  trivial: jax.Array


@functools.partial(jax.jit, static_argnames=("num_classes", "n"))
def ce_closed_form(num_classes: int, n: int, lambda_W: ArrayLike, lambda_H: ArrayLike) -> CEClosedForm:
  r"""Closed form of the CE UFM minimizer in Zhu et al.'s normalization (see :func:`ce_loss`).

  .. math:: \gamma = (K-1)\sqrt{n\lambda_W\lambda_H}, \quad
            p = \tfrac{K-1}{K}\ln\frac{(K-1)(1-\gamma)}{\gamma}, \quad
            f^* = \ln(1 + (K-1)e^{-pK/(K-1)}) + pK\sqrt{n\lambda_W\lambda_H},

  non-trivial iff :math:`\sqrt{n\lambda_W\lambda_H} < 1/K`; the bias is 0 and the class means and
  classifier rows form a simplex ETF with :math:`w_k \propto h_{k,i}`.

  Example:
    >>> ce_closed_form(4, 5, 5e-3, 5e-3).f_star   # 0.1836919957...

  Reference: Zhu et al. 2021 (arXiv:2105.02375), Theorem 3.1.
  """
  k = num_classes
  lw, lh = jnp.asarray(lambda_W, float), jnp.asarray(lambda_H, float)
  s = jnp.sqrt(n * lw * lh)
  trivial = s * k >= 1
  gamma = jnp.where(trivial, 0.5, (k - 1) * s)  # placeholder keeps the log finite when trivial
  p = jnp.where(trivial, 0.0, (k - 1) / k * jnp.log((k - 1) * (1 - gamma) / gamma))
  f_star = jnp.log1p((k - 1) * jnp.exp(-p * k / (k - 1))) + p * k * s
  return CEClosedForm(p=p, w_norm_sq=p * jnp.sqrt(lh * n / lw), h_norm_sq=p * jnp.sqrt(lw / (lh * n)),
                      f_star=f_star, trivial=trivial)


def collapsed_minimizer(key: jax.Array, *, num_classes: int, n: int, d: int, lambda_W: float,
                        lambda_H: float) -> UFMParams:
  r"""A minimizer of eq. 1 built from Theorem 2.1 with a random orthonormal frame :math:`R`:

  .. math:: H^* = \sqrt\rho\, R \otimes \mathbf 1_n^\top, \quad
            W^* = \sqrt{\lambda_H/\lambda_W}\sqrt\rho\, R^\top, \quad R^\top R = I_K, \ R \in
            \mathbb{R}^{d\times K}

  By Corollary 2.2, :math:`(W^*, H^*)` is also the unique minimizer of eq. 2 with :math:`H_0 = H^*`.

  Raises:
    ValueError: if d < K (no K orthonormal columns) or a regularization is not positive.

  Example:
    >>> star = collapsed_minimizer(jax.random.key(0), num_classes=4, n=10, d=10, lambda_W=1.4,
    ...                            lambda_H=0.1)   # star.W (K, d), star.H (d, Kn)

  Reference: arXiv:2210.16658 Theorem 2.1, Corollary 2.2.
  """
  validation.check_dims_for_theory(d, num_classes, "collapsed_minimizer")
  validation.check_nonnegative("lambda_W", lambda_W, strict=True)
  validation.check_nonnegative("lambda_H", lambda_H, strict=True)
  return _collapsed_minimizer(key, lambda_W, lambda_H, num_classes=num_classes, n=n, d=d)


@functools.partial(jax.jit, static_argnames=("num_classes", "n", "d"))
def _collapsed_minimizer(key, lambda_W, lambda_H, *, num_classes, n, d):
  q, r = jnp.linalg.qr(jax.random.normal(key, (d, num_classes)))
  R = q * jnp.sign(jnp.diag(r))[None, :]
  cf = mse_closed_form(num_classes, lambda_W, lambda_H)
  H = jnp.sqrt(cf.rho) * jnp.repeat(R, n, axis=1)
  W = jnp.sqrt(lambda_H / lambda_W) * jnp.sqrt(cf.rho) * R.T
  return UFMParams(W, H, jnp.zeros(num_classes, H.dtype))


@functools.partial(jax.jit, static_argnames=("num_classes", "n", "d"))
def gaussian_class_features(key: jax.Array, *, num_classes: int, n: int, d: int,
                            mean_scale: ArrayLike = 1.0, noise: ArrayLike = 1.0
                            ) -> Float[Array, "d N"]:
  r"""Synthetic :math:`H_0`: Gaussian class means plus Gaussian within-class noise, class by class.

  .. math:: h_{k,i} = \text{mean\_scale}\cdot m_k + \text{noise}\cdot z_{k,i}, \qquad
            m_k, z_{k,i} \sim \mathcal N(0, I_d)

  (the fact sheet's calibration uses ``mean_scale = noise = 1``, K = 4, n = d = 10).

  Example:
    >>> H0 = gaussian_class_features(jax.random.key(0), num_classes=4, n=10, d=10)   # (10, 40)
  """
  k_means, k_noise = jax.random.split(key)
  means = jax.random.normal(k_means, (d, num_classes))
  z = jax.random.normal(k_noise, (d, num_classes * n))
  return mean_scale * jnp.repeat(means, n, axis=1) + noise * z
