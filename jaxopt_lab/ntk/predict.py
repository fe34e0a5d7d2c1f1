r"""Training dynamics of infinite-width (and linearized) networks under MSE, in closed form.

With the loss :math:`\mathcal{L} = \frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2` and learning rate
:math:`\eta`, a network in its kernel regime evolves on the training inputs :math:`X` as

.. math::
    f_t(X) = Y + e^{-\eta \Theta t / n}\,(f_0(X) - Y), \qquad
    f_t(x) = f_0(x) + \Theta(x, X)\, \Theta^{-1} \big(I - e^{-\eta \Theta t / n}\big) (Y - f_0(X))

under gradient flow (``discrete=False``), and with :math:`(I - \eta\Theta/n)^k` in place of the
exponential after :math:`k` steps of gradient descent (``discrete=True``, ``t`` counts steps). With
:math:`\Theta = V \Lambda V^\top`, the residual along :math:`v_i` decays as
:math:`e^{-\eta\lambda_i t/n}`; :func:`mse_dynamics` does the one eigendecomposition and every
prediction reuses it for any array of times, ``t = inf`` included (kernel regression). Eigenvalues
at most ``rcond * max(eigenvalues)`` are treated as zero (pseudo-inverse): those directions do not
move.

Over random initializations :math:`f_0 \sim GP(0, K)` (:math:`K` the NNGP kernel), :math:`f_t` is
Gaussian with mean :math:`\mathcal{T}_t(x) Y` and covariance
:math:`K(x,x') - \mathcal{T}_t(x) K(X,x') - K(x,X)\mathcal{T}_t(x')^\top + \mathcal{T}_t(x) K(X,X)
\mathcal{T}_t(x')^\top`, :math:`\mathcal{T}_t(x) = \Theta(x,X)\Theta^{-1}(I - e^{-\eta\Theta t/n})`
(Lee et al. 2019, eq. 16).

The kernels here are per output (:math:`\Theta \otimes I_O`); :func:`linearized_mse` handles a
finite network's full (n, n, O, O) kernel by flattening the output axis into the point axis.

Reference: Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 5; Lee et al. 2019, "Wide
Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent" (arXiv:1902.06720),
Section 2.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxopt_lab.ntk.empirical import ApplyFn, Method, _resolve, empirical_ntk

HIGHEST = jax.lax.Precision.HIGHEST


class MSEDynamics(NamedTuple):
  r"""One eigendecomposition :math:`\Theta + \text{diag\_reg}\, I = V \Lambda V^\top` and the data.

  Attributes:
    eigenvalues: :math:`\Lambda`, ascending, shape ``(n,)``.
    eigenvectors: :math:`V`, shape ``(n, n)``.
    y_train: targets, shape ``(n, O)``.
    rate: :math:`\eta / n_{points}`.
    cutoff: eigenvalues at most this are treated as zero.
  """

  eigenvalues: jax.Array
  eigenvectors: jax.Array
  y_train: jax.Array
  rate: jax.Array
  cutoff: jax.Array


class Ensemble(NamedTuple):
  """Mean (T, n, O) and covariance (T, n, n) of the outputs over initializations, train and test."""

  mean_train: jax.Array
  cov_train: jax.Array
  mean_test: jax.Array | None
  cov_test: jax.Array | None


def _check_kernel(name: str, k, rows: int | None = None, cols: int | None = None) -> None:
  shape = np.shape(k)
  if len(shape) != 2 or (rows is not None and shape[0] != rows) or (
      cols is not None and shape[1] != cols):
    raise ValueError(f"{name}: expected shape ({rows if rows is not None else 'm'}, "
                     f"{cols if cols is not None else 'n'}), got {shape}")


def _check_outputs(name: str, f, rows: int, outputs: int) -> None:
  if np.shape(f) != (rows, outputs):
    raise ValueError(f"{name}: expected shape {(rows, outputs)}, got {np.shape(f)}")


@functools.partial(jax.jit, static_argnames=("num_points",))
def _mse_dynamics(ntk, y, learning_rate, diag_reg, rcond, *, num_points):
  ntk = (ntk + ntk.T) / 2 + diag_reg * jnp.eye(ntk.shape[0], dtype=ntk.dtype)
  evals, evecs = jnp.linalg.eigh(ntk, symmetrize_input=False)
  cutoff = rcond * jnp.max(jnp.abs(evals))
  return MSEDynamics(evals, evecs, y, jnp.asarray(learning_rate / num_points, ntk.dtype), cutoff)


def mse_dynamics(
    ntk_train_train: Float[ArrayLike, "n n"],
    y_train: Float[ArrayLike, "n o"],
    *,
    learning_rate: float | ArrayLike,
    diag_reg: float = 0.0,
    rcond: float | None = None,
    num_points: int | None = None,
) -> MSEDynamics:
  r"""Eigendecomposes :math:`\Theta(X, X) + \text{diag\_reg}\, I` once for :func:`mse_predict` and
  :func:`mse_ensemble` at any times.

  Args:
    ntk_train_train: the (per-output) NTK on the training inputs, symmetric PSD.
    y_train: targets, shape ``(n, O)``.
    learning_rate: :math:`\eta` (traced).
    diag_reg: ridge added to the kernel's diagonal.
    rcond: relative eigenvalue cutoff (default ``n * eps`` of the dtype).
    num_points: the :math:`n` of the loss :math:`\frac{1}{2n}\sum`; default the kernel's size.

  Returns:
    :class:`MSEDynamics`.

  Example:
    >>> dyn = mse_dynamics(k_train.ntk, y, learning_rate=1.0)
    >>> f_train, f_test = mse_predict(dyn, jnp.array([0., 10., jnp.inf]), f0_train, f0_test, k_test)

  Reference: Lee et al. 2019 (arXiv:1902.06720), eqs. 9-10; Jacot et al. 2018 (arXiv:1806.07572).
  """
  _check_kernel("ntk_train_train", ntk_train_train)
  n = np.shape(ntk_train_train)[0]
  _check_kernel("ntk_train_train", ntk_train_train, n, n)
  if np.ndim(y_train) != 2 or np.shape(y_train)[0] != n:
    raise ValueError(f"y_train: expected shape ({n}, num_outputs), got {np.shape(y_train)}")
  if not isinstance(learning_rate, jax.core.Tracer) and not float(learning_rate) > 0:
    raise ValueError(f"learning_rate: must be > 0, got {learning_rate}")
  if diag_reg < 0:
    raise ValueError(f"diag_reg: must be >= 0, got {diag_reg}")
  ntk = jnp.asarray(ntk_train_train)
  if rcond is None:
    rcond = n * float(jnp.finfo(ntk.dtype).eps)
  return _mse_dynamics(ntk, jnp.asarray(y_train, ntk.dtype), learning_rate, diag_reg, rcond,
                       num_points=int(num_points or n))


def _factors(dyn: MSEDynamics, t, discrete: bool):
  r"""Per time and eigenvalue: decay :math:`d` and gain :math:`g = (1 - d)/\lambda` (0 for null
  modes)."""
  lam = dyn.eigenvalues
  t = jnp.asarray(t, lam.dtype)[:, None]
  a = dyn.rate * lam[None, :]
  if discrete:
    base = 1 - a
    mag = jnp.abs(base)
    odd = jnp.mod(t, 2) == 1
    log_mag = jnp.log(jnp.where(mag > 0, mag, 1))
    power = jnp.where(t == 0, 1.0, jnp.where(mag > 0, jnp.exp(t * log_mag), 0.0))
    decay = jnp.where((base < 0) & odd, -power, power)
    stable = (a >= 0) & (a < 1)
    one_minus = jnp.where(stable, -jnp.expm1(t * jnp.log1p(-jnp.where(stable, a, 0))), 1 - decay)
  else:
    decay = jnp.exp(-a * t)
    one_minus = -jnp.expm1(-a * t)
  live = (lam > dyn.cutoff)[None, :]
  gain = jnp.where(live, one_minus / jnp.where(live, lam[None, :], 1), 0)
  decay = jnp.where(live, decay, 1)
  return decay, gain


def _project(dyn: MSEDynamics, f):
  return jnp.einsum("ni,no->io", dyn.eigenvectors, f, precision=HIGHEST)


def residual_components(dyn: MSEDynamics,
                        f_train: Float[Array, "... n o"]) -> Float[Array, "... n o"]:
  r"""The residual in the kernel's eigenbasis, :math:`V^\top (f(X) - Y)`: component :math:`i` decays
  as :math:`e^{-\eta\lambda_i t/n}` in the kernel regime (ascending eigenvalue order)."""
  f_train = jnp.asarray(f_train)
  y = dyn.y_train.reshape((1,) * (f_train.ndim - 2) + dyn.y_train.shape)
  return jnp.einsum("ni,...no->...io", dyn.eigenvectors, f_train - y, precision=HIGHEST)


@functools.partial(jax.jit, static_argnames=("discrete",))
def _predict(dyn, t, f0_train, f0_test, ntk_test_train, *, discrete):
  decay, gain = _factors(dyn, t, discrete)
  v = dyn.eigenvectors
  r0 = _project(dyn, f0_train - dyn.y_train)  # (n, O)
  f_train = dyn.y_train[None] + jnp.einsum("ni,ti,io->tno", v, decay, r0, precision=HIGHEST)
  if f0_test is None:
    return f_train, None
  a = jnp.matmul(ntk_test_train, v, precision=HIGHEST)  # (m, n)
  f_test = f0_test[None] - jnp.einsum("mi,ti,io->tmo", a, gain, r0, precision=HIGHEST)
  return f_train, f_test


def mse_predict(
    dyn: MSEDynamics,
    t: Float[ArrayLike, " T"],
    fx_train_0: Float[ArrayLike, "n o"],
    fx_test_0: Float[ArrayLike, "m o"] | None = None,
    ntk_test_train: Float[ArrayLike, "m n"] | None = None,
    *,
    discrete: bool = False,
) -> tuple[Float[Array, "T n o"], Float[Array, "T m o"] | None]:
  r"""Outputs of one network trained in its kernel regime from outputs ``fx_*_0`` at times ``t``.

  .. math::
      f_t(X) = Y + V e^{-\eta\Lambda t/n} V^\top (f_0(X) - Y), \qquad
      f_t(x) = f_0(x) + \Theta(x,X) V \Lambda^{-1}(I - e^{-\eta\Lambda t/n}) V^\top (Y - f_0(X)).

  Args:
    dyn: from :func:`mse_dynamics`.
    t: times, shape ``(T,)``: gradient-flow time (in units of steps of rate :math:`\eta`), or the
      number of GD steps when ``discrete``; ``inf`` gives the converged (kernel regression) outputs.
    fx_train_0: outputs on the training inputs at initialization (zeros for the ensemble mean).
    fx_test_0: outputs on test inputs at initialization, or ``None``.
    ntk_test_train: :math:`\Theta(x_{test}, X)`, needed with ``fx_test_0``.
    discrete: gradient descent steps instead of gradient flow.

  Returns:
    ``(f_train, f_test)`` of shapes ``(T, n, O)`` and ``(T, m, O)`` (``None`` without test inputs).

  Example:
    >>> f_train, f_test = mse_predict(dyn, jnp.arange(0., 1000., 10.), f0, f0_test, k_test.ntk)

  Reference: Lee et al. 2019 (arXiv:1902.06720), eqs. 9-11; Jacot et al. 2018 (arXiv:1806.07572).
  """
  n, o = dyn.y_train.shape
  _check_outputs("fx_train_0", fx_train_0, n, o)
  if (fx_test_0 is None) != (ntk_test_train is None):
    raise ValueError("ntk_test_train: give both fx_test_0 and ntk_test_train, or neither")
  if fx_test_0 is not None:
    m = np.shape(fx_test_0)[0]
    _check_outputs("fx_test_0", fx_test_0, m, o)
    _check_kernel("ntk_test_train", ntk_test_train, m, n)
  if np.ndim(t) != 1:
    raise ValueError(f"t: expected a 1-D array of times, got shape {np.shape(t)}")
  return _predict(dyn, t, fx_train_0, fx_test_0, ntk_test_train, discrete=discrete)


@functools.partial(jax.jit, static_argnames=("discrete",))
def _ensemble(dyn, t, nngp_train_train, nngp_test_train, nngp_test_test, ntk_test_train, *,
              discrete):
  decay, gain = _factors(dyn, t, discrete)
  v = dyn.eigenvectors
  vy = _project(dyn, dyn.y_train)
  c = jnp.matmul(v.T, jnp.matmul(nngp_train_train, v, precision=HIGHEST), precision=HIGHEST)
  mean_train = jnp.einsum("ni,ti,io->tno", v, 1 - decay, vy, precision=HIGHEST)
  cov_train = jnp.einsum("ni,ti,ij,tj,mj->tnm", v, decay, c, decay, v, precision=HIGHEST)
  if ntk_test_train is None:
    return Ensemble(mean_train, cov_train, None, None)
  a = jnp.matmul(ntk_test_train, v, precision=HIGHEST)  # (m, n)
  b = jnp.matmul(v.T, nngp_test_train.T, precision=HIGHEST)  # (n, m)
  mean_test = jnp.einsum("mi,ti,io->tmo", a, gain, vy, precision=HIGHEST)
  cross = jnp.einsum("mi,ti,ik->tmk", a, gain, b, precision=HIGHEST)
  quad = jnp.einsum("mi,ti,ij,tj,kj->tmk", a, gain, c, gain, a, precision=HIGHEST)
  cov_test = nngp_test_test[None] - cross - jnp.swapaxes(cross, 1, 2) + quad
  return Ensemble(mean_train, cov_train, mean_test, cov_test)


def mse_ensemble(
    dyn: MSEDynamics,
    t: Float[ArrayLike, " T"],
    nngp_train_train: Float[ArrayLike, "n n"],
    nngp_test_train: Float[ArrayLike, "m n"] | None = None,
    nngp_test_test: Float[ArrayLike, "m m"] | None = None,
    ntk_test_train: Float[ArrayLike, "m n"] | None = None,
    *,
    discrete: bool = False,
) -> Ensemble:
  r"""Mean and covariance over random initializations of infinitely wide networks trained on MSE.

  .. math::
      \mu_t(x) = \mathcal{T}_t(x) Y, \quad
      \Sigma_t(x, x') = K(x,x') - \mathcal{T}_t(x) K(X,x') - K(x,X)\mathcal{T}_t(x')^\top
      + \mathcal{T}_t(x) K(X,X) \mathcal{T}_t(x')^\top,

  :math:`\mathcal{T}_t(x) = \Theta(x,X)\,V\Lambda^{-1}(I - e^{-\eta\Lambda t/n})V^\top`; on the
  training inputs :math:`\mathcal{T}_t = I - e^{-\eta\Theta t/n}`.

  Args:
    dyn: from :func:`mse_dynamics` (with the NTK).
    t: times ``(T,)`` (``inf`` allowed), or GD step counts when ``discrete``.
    nngp_train_train: :math:`K(X, X)`.
    nngp_test_train, nngp_test_test, ntk_test_train: :math:`K(x, X)`, :math:`K(x, x)`,
      :math:`\Theta(x, X)` for test inputs; all three or none.
    discrete: gradient descent steps instead of gradient flow.

  Returns:
    :class:`Ensemble` with means ``(T, n|m, O)`` and covariances ``(T, n|m, n|m)`` (the same for
    every output unit).

  Example:
    >>> ens = mse_ensemble(dyn, jnp.array([jnp.inf]), k_tr.nngp, k_te.nngp, k_tt.nngp, k_te.ntk)
    >>> lo, hi = ens.mean_test[0, :, 0] + jnp.array([[-1.2816], [1.2816]]) * jnp.sqrt(
    ...     jnp.diagonal(ens.cov_test[0]))  # 10% and 90% percentiles

  Reference: Lee et al. 2019 (arXiv:1902.06720), eqs. 14-16.
  """
  n, _ = dyn.y_train.shape
  _check_kernel("nngp_train_train", nngp_train_train, n, n)
  test = (nngp_test_train, nngp_test_test, ntk_test_train)
  if any(k is None for k in test) and not all(k is None for k in test):
    raise ValueError("nngp_test_train: give nngp_test_train, nngp_test_test and ntk_test_train, "
                     "or none of them")
  if ntk_test_train is not None:
    m = np.shape(ntk_test_train)[0]
    _check_kernel("ntk_test_train", ntk_test_train, m, n)
    _check_kernel("nngp_test_train", nngp_test_train, m, n)
    _check_kernel("nngp_test_test", nngp_test_test, m, m)
  if np.ndim(t) != 1:
    raise ValueError(f"t: expected a 1-D array of times, got shape {np.shape(t)}")
  return _ensemble(dyn, t, nngp_train_train, nngp_test_train, nngp_test_test, ntk_test_train,
                   discrete=discrete)


def max_learning_rate(ntk_train_train: Float[ArrayLike, "n n"], *,
                      num_points: int | None = None, diag_reg: float = 0.0) -> float:
  r"""The largest stable learning rate of gradient descent in the kernel regime:
  :math:`\eta^* = 2 n / \lambda_{max}(\Theta + \text{diag\_reg}\, I)`.

  With loss :math:`\frac{1}{2n}\sum\|f - y\|^2`, each GD step multiplies the residual along the
  kernel's top eigenvector by :math:`1 - \eta\lambda_{max}/n`, whose modulus exceeds 1 (the
  predictions grow without bound, oscillating) exactly when :math:`\eta > \eta^*`.

  Example:
    >>> max_learning_rate(mlp_kernels(x, depth=3).ntk)

  Reference: Lee et al. 2019 (arXiv:1902.06720), Section 2.4 (eta_critical = 2 / lambda_max of
  the kernel of the mean loss).
  """
  _check_kernel("ntk_train_train", ntk_train_train)
  k = np.asarray(ntk_train_train, np.float64)
  n = k.shape[0]
  lam = float(np.linalg.eigvalsh((k + k.T) / 2)[-1]) + diag_reg
  return 2.0 * float(num_points or n) / lam if lam > 0 else float("inf")


def gradient_descent_mse_ensemble(
    *,
    x_train: Float[ArrayLike, "n d"] | None = None,
    y_train: Float[ArrayLike, "n o"],
    x_test: Float[ArrayLike, "m d"] | None = None,
    t: Float[ArrayLike, " T"],
    kernel_fn: Any = None,
    ntk_train_train: Float[ArrayLike, "n n"] | None = None,
    nngp_train_train: Float[ArrayLike, "n n"] | None = None,
    ntk_test_train: Float[ArrayLike, "m n"] | None = None,
    nngp_test_train: Float[ArrayLike, "m n"] | None = None,
    nngp_test_test: Float[ArrayLike, "m m"] | None = None,
    learning_rate: float = 1.0,
    discrete: bool = False,
    diag_reg: float = 0.0,
) -> Ensemble:
  r"""Mean and covariance over initializations of an infinitely wide network trained by gradient
  descent (or flow) on MSE, in one call: neural-tangents' ``gradient_descent_mse_ensemble``.

  Either ``kernel_fn(x1, x2) -> Kernels(nngp, ntk)`` (e.g.
  ``functools.partial(mlp_kernels, depth=3, activation="relu")``) with ``x_train`` (and ``x_test``),
  or the kernel matrices by keyword: ``ntk_train_train`` and ``nngp_train_train`` (and, for test
  predictions, ``ntk_test_train``, ``nngp_test_train``, ``nngp_test_test``). The result is
  :func:`mse_ensemble` of :func:`mse_dynamics` (formulas there).

  ``t = inf`` is the converged ensemble: kernel regression with the pseudo-inverse of the NTK.
  Eigenvalues at most ``n * eps`` of the largest (and exactly singular kernels, e.g. the identity
  activation on more than d + 1 points) are null directions: the residual there keeps its value at
  initialization (mean 0, covariance from the NNGP) instead of dividing by zero, so every output is
  finite; ``diag_reg`` regularizes instead.

  Args:
    x_train, y_train, x_test: inputs (rows) and targets ``(n, O)``; inputs only with ``kernel_fn``.
    t: times ``(T,)`` (``inf`` allowed), or GD step counts when ``discrete``.
    kernel_fn: a kernel function, or ``None`` to pass the matrices.
    ntk_train_train, nngp_train_train, ntk_test_train, nngp_test_train, nngp_test_test: kernels.
    learning_rate: :math:`\eta`; for ``discrete`` GD it must be below :func:`max_learning_rate`.
    discrete: gradient descent steps instead of gradient flow.
    diag_reg: ridge added to the NTK's diagonal.

  Returns:
    :class:`Ensemble` (test fields ``None`` without test inputs).

  Raises:
    ValueError: one line naming the argument, before any compute: neither or both of
      ``kernel_fn`` and kernel matrices, missing inputs, and a discrete ``learning_rate`` at or
      above :func:`max_learning_rate` (the predictions would diverge), with that maximum.

  Example:
    >>> kfn = functools.partial(mlp_kernels, depth=3, activation="relu", sigma_b=0.1)
    >>> ens = gradient_descent_mse_ensemble(kernel_fn=kfn, x_train=x, y_train=y, x_test=xt,
    ...                                     t=jnp.array([10.0, jnp.inf]))

  Reference: Lee et al. 2019 (arXiv:1902.06720), eqs. 14-16; Novak et al. 2020 (arXiv:1912.02803).
  """
  matrices = (ntk_train_train, nngp_train_train, ntk_test_train, nngp_test_train, nngp_test_test)
  if kernel_fn is not None:
    if any(k is not None for k in matrices):
      raise ValueError("kernel_fn: give a kernel function or the kernel matrices, not both")
    if x_train is None:
      raise ValueError("x_train: kernel_fn needs the training inputs")
    k_tr = kernel_fn(x_train, None)
    ntk_train_train, nngp_train_train = k_tr.ntk, k_tr.nngp
    if x_test is not None:
      k_te = kernel_fn(x_test, x_train)
      ntk_test_train, nngp_test_train = k_te.ntk, k_te.nngp
      nngp_test_test = kernel_fn(x_test, None).nngp
  else:
    if ntk_train_train is None or nngp_train_train is None:
      raise ValueError("ntk_train_train: give kernel_fn, or ntk_train_train and nngp_train_train")
    if x_train is not None or x_test is not None:
      raise ValueError("x_train: inputs are used only with kernel_fn; pass the kernel matrices")
  if discrete:
    limit = max_learning_rate(ntk_train_train, diag_reg=diag_reg)
    if not float(learning_rate) < limit:
      raise ValueError(f"learning_rate: {float(learning_rate):g} >= {limit:.6g}, the largest "
                       "stable rate 2 n / lambda_max of discrete gradient descent on this kernel: "
                       "the predictions would diverge")
  dyn = mse_dynamics(ntk_train_train, y_train, learning_rate=learning_rate, diag_reg=diag_reg)
  if ntk_test_train is None:
    return mse_ensemble(dyn, t, nngp_train_train, discrete=discrete)
  return mse_ensemble(dyn, t, nngp_train_train, nngp_test_train, nngp_test_test, ntk_test_train,
                      discrete=discrete)


@jax.jit
def _gp(k_train, y, k_test_train, k_test_test, diag_reg):
  k = (k_train + k_train.T) / 2 + diag_reg * jnp.eye(k_train.shape[0], dtype=k_train.dtype)
  chol = jax.scipy.linalg.cho_factor(k, lower=True)
  alpha = jax.scipy.linalg.cho_solve(chol, y)
  w = jax.scipy.linalg.cho_solve(chol, k_test_train.T)  # (n, m)
  return (jnp.matmul(k_test_train, alpha, precision=HIGHEST),
          None if k_test_test is None else
          k_test_test - jnp.matmul(k_test_train, w, precision=HIGHEST))


def gp_inference(
    k_train_train: Float[ArrayLike, "n n"],
    y_train: Float[ArrayLike, "n o"],
    k_test_train: Float[ArrayLike, "m n"],
    k_test_test: Float[ArrayLike, "m m"] | None = None,
    *,
    diag_reg: float = 0.0,
) -> tuple[Float[Array, "m o"], Float[Array, "m m"] | None]:
  r"""Gaussian-process posterior (exact Bayesian inference with the NNGP or any kernel :math:`K`).

  .. math::
      \mu(x) = K(x,X)(K + \sigma^2 I)^{-1} Y, \qquad
      \Sigma(x,x') = K(x,x') - K(x,X)(K + \sigma^2 I)^{-1}K(X,x'),

  :math:`\sigma^2` = ``diag_reg``. With :math:`K = \Theta` the mean is the :math:`t = \infty` limit
  of gradient descent from :math:`f_0 = 0` (NTK regression).

  Returns:
    ``(mean, cov)`` of shapes ``(m, O)`` and ``(m, m)`` (``cov`` is ``None`` without
    ``k_test_test``).

  Example:
    >>> mean, cov = gp_inference(k.nngp, y, k_test.nngp, k_tt.nngp, diag_reg=1e-4)

  Reference: Lee et al. 2018, "Deep Neural Networks as Gaussian Processes" (arXiv:1711.00165),
  eq. 5.
  """
  _check_kernel("k_train_train", k_train_train)
  n = np.shape(k_train_train)[0]
  _check_kernel("k_train_train", k_train_train, n, n)
  if np.ndim(y_train) != 2 or np.shape(y_train)[0] != n:
    raise ValueError(f"y_train: expected shape ({n}, num_outputs), got {np.shape(y_train)}")
  _check_kernel("k_test_train", k_test_train, None, n)
  if k_test_test is not None:
    m = np.shape(k_test_train)[0]
    _check_kernel("k_test_test", k_test_test, m, m)
  if diag_reg < 0:
    raise ValueError(f"diag_reg: must be >= 0, got {diag_reg}")
  return _gp(k_train_train, y_train, k_test_train, k_test_test, diag_reg)


def linearize(apply: ApplyFn, params_0: Any) -> ApplyFn:
  r"""The first-order Taylor model :math:`f^{lin}(\theta, x) = f(\theta_0, x) + J_{\theta_0}(x)
  (\theta - \theta_0)`, as ``apply(params, x)`` (one JVP per call).

  Reference: Lee et al. 2019 (arXiv:1902.06720), eq. 5.
  """
  apply, _ = _resolve(apply)

  def apply_lin(params, x):
    dparams = jax.tree.map(lambda p, p0: p - p0, params, params_0)
    f0, df = jax.jvp(lambda p: apply(p, x), (params_0,), (dparams,))
    return f0 + df

  return apply_lin


def linearized_mse(
    model: Any,
    params_0: Any,
    x_train: Float[Array, "n ..."],
    y_train: Float[ArrayLike, "n o"],
    x_test: Float[Array, "m ..."],
    t: Float[ArrayLike, " T"],
    *,
    learning_rate: float,
    discrete: bool = False,
    method: Method = "auto",
) -> tuple[Float[Array, "T n o"], Float[Array, "T m o"]]:
  r"""Outputs of the linearized finite network :math:`f^{lin}_t` trained on MSE from ``params_0``.

  The empirical NTK :math:`\hat\Theta_0` at initialization (full, with outputs flattened into the
  point axis) replaces :math:`\Theta` in :func:`mse_predict`; with ``discrete=True`` this is exactly
  gradient descent on :func:`linearize`'s model.

  Args:
    model: an MLP or ``apply(params, x)`` (as in :func:`~jaxopt_lab.ntk.empirical.empirical_ntk`).
    params_0: parameters at initialization.
    x_train, y_train, x_test: data (``y_train`` of shape ``(n, O)``).
    t: times ``(T,)`` or GD step counts when ``discrete``.
    learning_rate: :math:`\eta`.
    discrete: gradient descent steps instead of gradient flow.
    method: empirical NTK method.

  Returns:
    ``(f_train, f_test)`` of shapes ``(T, n, O)`` and ``(T, m, O)``.

  Example:
    >>> f_tr, f_te = linearized_mse(net, params0, x, y, x_test, jnp.arange(0, 201, 10),
    ...                             learning_rate=1.0, discrete=True)

  Reference: Lee et al. 2019 (arXiv:1902.06720), eqs. 8-11.
  """
  _resolve(model)
  if np.ndim(y_train) != 2 or np.shape(y_train)[0] != np.shape(x_train)[0]:
    raise ValueError(f"y_train: expected shape ({np.shape(x_train)[0]}, num_outputs), got "
                     f"{np.shape(y_train)}")
  if np.ndim(t) != 1:
    raise ValueError(f"t: expected a 1-D array of times, got shape {np.shape(t)}")
  return _linearized(model, params_0, x_train, y_train, x_test, t, learning_rate,
                     discrete=discrete, method=method)


@functools.partial(jax.jit, static_argnames=("model", "discrete", "method"))
def _linearized(model, params_0, x_train, y_train, x_test, t, learning_rate, *, discrete, method):
  apply, _ = _resolve(model)
  n, m = x_train.shape[0], x_test.shape[0]
  f0_train = apply(params_0, x_train).reshape(n, -1)
  f0_test = apply(params_0, x_test).reshape(m, -1)
  o = f0_train.shape[1]
  k_train = empirical_ntk(model, params_0, x_train, method=method, output="full")
  k_test = empirical_ntk(model, params_0, x_test, x_train, method=method, output="full")
  flat = lambda k: k.transpose(0, 2, 1, 3).reshape(k.shape[0] * o, k.shape[1] * o)
  dyn = mse_dynamics(flat(k_train), jnp.asarray(y_train).reshape(n * o, 1),
                     learning_rate=learning_rate, num_points=n)
  f_train, f_test = mse_predict(dyn, t, f0_train.reshape(n * o, 1), f0_test.reshape(m * o, 1),
                                flat(k_test), discrete=discrete)
  return f_train.reshape(-1, n, o), f_test.reshape(-1, m, o)
