r"""Exact infinite-width muP limits of 1-hidden-layer networks trained by SGD (TP4, Section 6).

A width-:math:`n` muP network in particle form (muP with ``base_width = 1`` and :math:`d = 1`, up to
the input scaling :math:`1/\sqrt{d}`) is

.. math:: f(\xi) = \frac1n \sum_{a=1}^n v_a\, \phi(\langle u_a, \xi\rangle), \qquad
    u_a \sim N(0, I_d),\; v_a \sim N(0, I_{d_o}),

and SGD on a batch :math:`(\xi_i, y_i)_{i \le B}` with :math:`\chi_i = \frac1B \partial_f \ell(f(\xi_i), y_i)` is

.. math::
    u_a \leftarrow u_a - \eta \sum_i \phi'(\langle u_a, \xi_i\rangle) \langle \chi_i, v_a\rangle \xi_i,
    \qquad v_a \leftarrow v_a - \eta \sum_i \chi_i\, \phi(\langle u_a, \xi_i\rangle).

Every particle is a deterministic function of its initial Gaussian, so the infinite-width limit
replaces :math:`\frac1n\sum_a` by an expectation over :math:`Z \sim N(0, I)`.

* Linear :math:`\phi`: :math:`u_t = P_t Z`, :math:`v_t = Q_t Z` with :math:`Z \in \mathbb{R}^{d + d_o}`,
  :math:`f_t(\xi) = Q_t P_t^\top \xi`,
  :math:`P \leftarrow P - \eta X^\top \chi Q`, :math:`Q \leftarrow Q - \eta \chi^\top X P`,
  :math:`P_0 = [I_d\; 0]`, :math:`Q_0 = [0\; I_{d_o}]` (:func:`linear_limit`; memory constant in the
  number of steps). A finite network of width :math:`n` whose particles are
  :math:`(P_0\omega_a, Q_0\omega_a)` stays :math:`(P_t\omega_a, Q_t\omega_a)` and computes
  :math:`f_n = Q_t (\Omega^\top\Omega / n) P_t^\top \xi`: the same recursion with the Gram matrix
  :math:`G = \Omega^\top\Omega/n` in place of :math:`I` (:func:`linear_finite`), which is how TP4's code
  samples finite networks from the limit.
* Nonlinear :math:`\phi` (tanh, ReLU, GeLU): :math:`u_t - u_0` lies in the span of the inputs, so only
  the projection of :math:`u_0` on that span (dimension :math:`r`, the rank of the distinct inputs)
  matters: the limit is a Gaussian integral in dimension :math:`D = r + d_o`, computed by a tensor
  trapezoid rule on :math:`[-R, R]^D` with step :math:`h` (:func:`nonlinear_limit`). The trapezoid rule is
  spectrally accurate for these smooth Gaussian-weighted integrands (1e-12 at :math:`h = 0.02` for
  :math:`D = 2`), where Gauss-Hermite stalls near 1e-4 on nested tanh. When :math:`(2R/h + 1)^D` exceeds
  ``max_nodes``, a Monte Carlo estimate over independent replicas of sampled particles is returned
  with its standard error.
* Kernel regime (:func:`kernel_limit`): the NTK / NNGP limits of the same network trained by the same
  SGD, :math:`f_{t+1} = f_t - \eta K \chi_t` from :math:`f_0 = 0`, with :math:`K` the NTK
  :math:`E[\phi\phi'] + \langle\xi,\xi'\rangle E[\phi'\phi']` or the NNGP kernel (readout-only training)
  from :mod:`jaxopt_lab.ntk.analytic`.

Data are given as a training set ``x`` (N, d), ``y`` and a ``batches`` array (T, B) of indices into it
(step :math:`t` uses ``x[batches[t]]``); ``x_eval`` (m, d) are the inputs where :math:`f_t` is recorded.

Reference: Yang & Hu, "Feature Learning in Infinite-Width Neural Networks", arXiv:2011.14522,
Section 6 and Appendix (the linear limit and its finite-width sampling).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from jaxopt_lab.mup.parametrization import activation_fn

LOSSES = ("mse", "xent")


class LimitResult(NamedTuple):
  """Outputs on the evaluation inputs along training.

  Attributes:
    steps: ``(R + 1,)`` int steps of the records (0 is initialization).
    f: ``(R + 1, m, d_o)`` outputs :math:`f_t(\\xi)` at the evaluation inputs.
    stderr: same shape: Monte Carlo standard error (zeros for exact computations).
    method: ``"exact"`` (linear recursion), ``"quadrature"``, ``"monte_carlo"``, ``"ntk"``, ``"nngp"``.
    dim: the dimension of the Gaussian integral (0 when not applicable).
  """

  steps: np.ndarray
  f: jax.Array
  stderr: jax.Array
  method: str
  dim: int


def _check_data(x, y, batches, x_eval, loss, record_every) -> None:
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
  if jnp.ndim(x) != 2 or jnp.ndim(x_eval) != 2 or jnp.shape(x)[1] != jnp.shape(x_eval)[1]:
    raise ValueError(f"x (N, d) and x_eval (m, d) must be 2-D with one d; got {jnp.shape(x)} and "
                     f"{jnp.shape(x_eval)}")
  if jnp.ndim(batches) != 2 or jnp.shape(batches)[0] < 1 or jnp.shape(batches)[1] < 1:
    raise ValueError(f"batches must be (T, B) indices with T, B >= 1, got shape {jnp.shape(batches)}")
  if loss == "mse" and (jnp.ndim(y) != 2 or jnp.shape(y)[0] != jnp.shape(x)[0]):
    raise ValueError(f"mse targets y must be (N, d_o), got {jnp.shape(y)}")
  if loss == "xent" and (jnp.ndim(y) != 1 or jnp.shape(y)[0] != jnp.shape(x)[0]):
    raise ValueError(f"xent labels y must be (N,) ints, got {jnp.shape(y)}")
  if not isinstance(record_every, int) or record_every < 1 or jnp.shape(batches)[0] % record_every:
    raise ValueError(f"record_every ({record_every}) must be an int >= 1 dividing the number of "
                     f"steps ({jnp.shape(batches)[0]})")


def _chi(f: jax.Array, y: jax.Array, loss: str) -> jax.Array:
  """:math:`\\chi_i = \\frac1B \\partial_f \\ell(f_i, y_i)`, shape (B, d_o)."""
  if loss == "mse":
    return (f - y) / f.shape[0]
  return (jax.nn.softmax(f, axis=-1) - jax.nn.one_hot(y, f.shape[-1], dtype=f.dtype)) / f.shape[0]


def _scan_records(step_fn, carry, batches, record_every, observe):
  """Runs ``step_fn(carry, idx)`` over ``batches``, observing ``observe(carry)`` every ``record_every``."""
  num = batches.shape[0] // record_every
  grouped = batches.reshape(num, record_every, batches.shape[1])

  def record(c, group):
    c, _ = jax.lax.scan(lambda c, idx: (step_fn(c, idx), None), c, group)
    return c, observe(c)

  final, recs = jax.lax.scan(record, carry, grouped)
  first = observe(carry)
  return final, jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, recs)


def _steps(batches, record_every) -> np.ndarray:
  return np.arange(0, batches.shape[0] + 1, record_every)


# --------------------------------------------------------------------------------------------------
# Linear activation: the P/Q recursion.


@functools.partial(jax.jit, static_argnames=("loss", "record_every", "d_out"))
def _linear_run(gram, x, y, batches, x_eval, lr, *, loss, record_every, d_out):
  d = x.shape[1]
  D = d + d_out
  dtype = x.dtype
  eye = jnp.eye(D, dtype=dtype)
  P, Q = eye[:d], eye[d:]

  def f_of(P, Q, xs):
    return xs @ P @ gram @ Q.T  # rows: f(xi) = Q G P^T xi

  def step(c, idx):
    P, Q = c
    xb = x[idx]
    chi = _chi(f_of(P, Q, xb), y[idx], loss)
    return P - lr * xb.T @ chi @ Q, Q - lr * chi.T @ xb @ P

  _, f = _scan_records(step, (P, Q), batches, record_every, lambda c: f_of(*c, x_eval))
  return f


def _d_out(y, loss, num_classes):
  if loss == "mse":
    return int(jnp.shape(y)[1])
  if num_classes is None:
    raise ValueError("xent needs num_classes (the output dimension d_o)")
  return int(num_classes)


def linear_limit(x: Float[ArrayLike, "N d"], y: ArrayLike, batches: Int[ArrayLike, "T B"],
                 x_eval: Float[ArrayLike, "m d"], *, lr: float | ArrayLike, loss: str = "mse",
                 num_classes: int | None = None, record_every: int = 1) -> LimitResult:
  r"""Exact infinite-width muP limit of a linear 1-hidden-layer network under SGD (P/Q recursion).

  .. math:: P_{t+1} = P_t - \eta X_t^\top \chi_t Q_t, \quad Q_{t+1} = Q_t - \eta \chi_t^\top X_t P_t,
      \quad f_t(\xi) = Q_t P_t^\top \xi.

  Memory is :math:`O((d + d_o)^2)` whatever the number of steps (one ``lax.scan``).

  Args:
    x: training inputs (N, d).
    y: targets (N, d_o) for ``"mse"``, int labels (N,) for ``"xent"``.
    batches: (T, B) indices into ``x``: the batch of each step.
    x_eval: inputs where :math:`f_t` is recorded.
    lr: :math:`\eta` (traced: vmap over it freely).
    loss: ``"mse"`` (:math:`\frac1{2B}\sum|f - y|^2`) or ``"xent"`` (mean softmax cross-entropy).
    num_classes: :math:`d_o` for ``"xent"``.
    record_every: steps between records.

  Returns:
    :class:`LimitResult` with ``method="exact"``.

  Example:
    >>> res = linear_limit(x, y, jnp.arange(4)[None].repeat(100, 0), x_test, lr=0.5)

  Reference: arXiv:2011.14522, Section 6.1 ("the linear case").
  """
  _check_data(x, y, batches, x_eval, loss, record_every)
  x = jnp.asarray(x)
  d_out = _d_out(y, loss, num_classes)
  gram = jnp.eye(x.shape[1] + d_out, dtype=x.dtype)
  f = _linear_run(gram, x, jnp.asarray(y), jnp.asarray(batches), jnp.asarray(x_eval, x.dtype),
                  jnp.asarray(lr, x.dtype), loss=loss, record_every=record_every, d_out=d_out)
  return LimitResult(_steps(batches, record_every), f, jnp.zeros_like(f), "exact", 0)


def sample_gram(key: jax.Array, width: int | ArrayLike, dim: int, dtype: Any = None, *,
                method: str = "bartlett") -> Float[Array, "dim dim"]:
  r""":math:`G = \Omega^\top\Omega / n` for :math:`\Omega \in \mathbb{R}^{n \times D}` standard Gaussian.

  ``method="omega"`` draws :math:`\Omega` (``width`` static); ``"bartlett"`` draws the Wishart matrix
  :math:`\Omega^\top\Omega = LL^\top` directly by Bartlett's decomposition
  (:math:`L_{ii}^2 \sim \chi^2_{n - i + 1}`, :math:`L_{ij} \sim N(0, 1)` below the diagonal): the same
  distribution in :math:`O(D^2)` work, with ``width`` traced (vmap over widths; any width).
  """
  dtype = dtype or jnp.result_type(float)
  if method == "omega":
    if not isinstance(width, int) or width < 1:
      raise ValueError(f"width must be an int >= 1, got {width!r}")
    omega = jax.random.normal(key, (width, dim), dtype)
    return omega.T @ omega / width
  if method != "bartlett":
    raise ValueError(f"unknown method {method!r}; choose 'bartlett' or 'omega'")
  if isinstance(width, (int, float)) and width < dim:
    raise ValueError(f"Bartlett sampling needs width >= dim ({dim}), got {width}")
  n = jnp.asarray(width, dtype)
  k_diag, k_off = jax.random.split(key)
  dof = n - jnp.arange(dim, dtype=dtype)  # chi^2 with n - i degrees of freedom, i = 0..D-1
  diag = jnp.sqrt(2.0 * jax.random.gamma(k_diag, dof / 2.0, dtype=dtype))
  low = jnp.tril(jax.random.normal(k_off, (dim, dim), dtype), -1)
  L = low + jnp.diag(diag)
  return L @ L.T / n


def linear_finite(key: jax.Array, width: int, x: Float[ArrayLike, "N d"], y: ArrayLike,
                  batches: Int[ArrayLike, "T B"], x_eval: Float[ArrayLike, "m d"], *,
                  lr: float | ArrayLike, loss: str = "mse", num_classes: int | None = None,
                  record_every: int = 1, gram_method: str = "bartlett") -> LimitResult:
  r"""A width-``width`` linear muP network sampled from the limit: :math:`f_n = Q_t G P_t^\top \xi`.

  Exactly the network with particles :math:`(u_a, v_a) = (P_0\omega_a, Q_0\omega_a)` trained by SGD
  (:math:`G = \Omega^\top\Omega/n`, :func:`sample_gram` with ``gram_method``: ``"bartlett"`` lets
  ``width`` be traced, ``"omega"`` draws the particles themselves); :math:`G \to I` recovers
  :func:`linear_limit`.

  Reference: arXiv:2011.14522, Section 6.1 and its code (finite widths sampled from the limit).
  """
  _check_data(x, y, batches, x_eval, loss, record_every)
  x = jnp.asarray(x)
  d_out = _d_out(y, loss, num_classes)
  gram = sample_gram(key, width, x.shape[1] + d_out, x.dtype, method=gram_method)
  f = _linear_run(gram, x, jnp.asarray(y), jnp.asarray(batches), jnp.asarray(x_eval, x.dtype),
                  jnp.asarray(lr, x.dtype), loss=loss, record_every=record_every, d_out=d_out)
  return LimitResult(_steps(batches, record_every), f, jnp.zeros_like(f), "exact", 0)


# --------------------------------------------------------------------------------------------------
# Nonlinear activation: particles under an expectation.


def _dphi(phi):
  return lambda z: jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]


def _particles_run(u, v, w, x, y, batches, x_eval, lr, *, activation, loss, record_every):
  """Mean-field SGD of particles (u (N, p), v (N, d_o)) with weights w (N,); records f on x_eval."""
  phi = activation_fn(activation)
  dphi = _dphi(phi)

  def f_of(u, v, xs):
    return jnp.einsum("a,ao,ai->io", w, v, phi(u @ xs.T))

  def step(c, idx):
    u, v = c
    xb = x[idx]
    pre = u @ xb.T  # (N, B)
    chi = _chi(jnp.einsum("a,ao,ai->io", w, v, phi(pre)), y[idx], loss)  # (B, d_o)
    vchi = v @ chi.T  # (N, B): <chi_i, v_a>
    du = (dphi(pre) * vchi) @ xb  # (N, p)
    dv = phi(pre) @ chi  # (N, d_o)
    return u - lr * du, v - lr * dv

  _, f = _scan_records(step, (u, v), batches, record_every, lambda c: f_of(*c, x_eval))
  return f


_particles_jit = jax.jit(_particles_run, static_argnames=("activation", "loss", "record_every"))


def trapezoid_nodes(dim: int, h: float, radius: float, dtype: Any = None):
  r"""Tensor trapezoid rule for :math:`E_{Z \sim N(0, I_{dim})}[g(Z)]` on :math:`[-R, R]^{dim}`.

  Returns nodes ``(K**dim, dim)`` and weights ``(K**dim,)``, :math:`K = 2R/h + 1`, weights
  :math:`\prod_j h\,\varphi(z_j)` (the truncated tails weigh :math:`< 10^{-18}` at :math:`R = 9`).
  """
  if dim < 1 or h <= 0 or radius <= 0:
    raise ValueError(f"need dim >= 1, h > 0, radius > 0; got {dim}, {h}, {radius}")
  dtype = dtype or jnp.result_type(float)
  k = int(round(2 * radius / h))
  z = jnp.linspace(-radius, radius, k + 1, dtype=dtype)
  w1 = h * jnp.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
  grids = jnp.meshgrid(*([z] * dim), indexing="ij")
  wgrids = jnp.meshgrid(*([w1] * dim), indexing="ij")
  nodes = jnp.stack([g.reshape(-1) for g in grids], axis=1)
  weights = functools.reduce(lambda a, b: a * b, [g.reshape(-1) for g in wgrids])
  return nodes, weights


def _span_basis(x: np.ndarray, x_eval: np.ndarray, tol: float = 1e-10) -> np.ndarray:
  """Orthonormal basis (d, r) of the span of all inputs (training and evaluation)."""
  allx = np.concatenate([np.asarray(x, np.float64), np.asarray(x_eval, np.float64)])
  _, s, vt = np.linalg.svd(allx, full_matrices=False)
  r = int(np.sum(s > tol * max(s.max(), 1e-300)))
  return vt[:max(r, 1)].T


def nonlinear_limit(x: Float[ArrayLike, "N d"], y: ArrayLike, batches: Int[ArrayLike, "T B"],
                    x_eval: Float[ArrayLike, "m d"], *, lr: float | ArrayLike,
                    activation: str = "tanh", loss: str = "mse", num_classes: int | None = None,
                    record_every: int = 1, h: float = 0.05, radius: float = 9.0,
                    max_nodes: int = 2_000_000, key: jax.Array | None = None,
                    mc_particles: int = 65_536, mc_replicas: int = 16,
                    method: str = "auto") -> LimitResult:
  r"""Infinite-width muP limit of a 1-hidden-layer network with a nonlinear activation under SGD.

  .. math:: f_t(\xi) = \mathbb{E}_{Z \sim N(0, I_D)}\big[v_t(Z)\, \phi(\langle u_t(Z), \xi\rangle)\big],

  where :math:`(u_t, v_t)(Z)` follow the particle SGD of the module docstring in the :math:`r`-dim
  span of the inputs, :math:`D = r + d_o`. Computed by the tensor trapezoid rule (step ``h`` on
  :math:`[-R, R]^D`) when it has at most ``max_nodes`` nodes, else by Monte Carlo: ``mc_replicas``
  independent sets of ``mc_particles`` particles, returning their mean and standard error (the
  :math:`O(1/\text{mc\_particles})` bias of a finite particle system is not in the error bar; keep
  ``mc_replicas`` much smaller than ``mc_particles``).

  Args:
    x, y, batches, x_eval, lr, loss, num_classes, record_every: as :func:`linear_limit`.
    activation: ``"tanh"``, ``"gelu"``, ``"relu"`` (the trapezoid rule converges only like
      :math:`h^2` for ReLU's kink; use a smaller ``h``) or ``"identity"``.
    h, radius, max_nodes: the trapezoid rule.
    key: PRNG key for Monte Carlo (required when it is used).
    mc_particles, mc_replicas: Monte Carlo sizes.
    method: ``"auto"``, ``"quadrature"`` or ``"monte_carlo"``.

  Returns:
    :class:`LimitResult` (``method`` says which was used, ``dim`` is :math:`D`).

  Example:
    >>> res = nonlinear_limit(x, y, batches, x_test, lr=1.0, activation="tanh")  # d = d_o = 1: D = 2

  Reference: arXiv:2011.14522, Section 6 (the 1-hidden-layer muP limit as a Gaussian expectation).
  """
  _check_data(x, y, batches, x_eval, loss, record_every)
  if method not in ("auto", "quadrature", "monte_carlo"):
    raise ValueError(f"unknown method {method!r}; choose 'auto', 'quadrature' or 'monte_carlo'")
  activation_fn(activation)
  x = jnp.asarray(x)
  dtype = x.dtype
  d_out = _d_out(y, loss, num_classes)
  basis = jnp.asarray(_span_basis(np.asarray(x), np.asarray(x_eval)), dtype)  # (d, r)
  r = basis.shape[1]
  dim = r + d_out
  xr, xer = x @ basis, jnp.asarray(x_eval, dtype) @ basis
  num_nodes = (int(round(2 * radius / h)) + 1) ** dim
  use_quad = method == "quadrature" or (method == "auto" and num_nodes <= max_nodes)
  args = (jnp.asarray(y), jnp.asarray(batches), xer, jnp.asarray(lr, dtype))
  kw = dict(activation=activation, loss=loss, record_every=record_every)
  steps = _steps(batches, record_every)
  if use_quad:
    nodes, weights = trapezoid_nodes(dim, h, radius, dtype)
    f = _particles_jit(nodes[:, :r], nodes[:, r:], weights, xr, *args, **kw)
    return LimitResult(steps, f, jnp.zeros_like(f), "quadrature", dim)
  if key is None:
    raise ValueError(f"the trapezoid rule needs {num_nodes} > max_nodes = {max_nodes} nodes in "
                     f"dimension {dim}: pass a key for the Monte Carlo estimate")
  z = jax.random.normal(key, (mc_replicas, mc_particles, dim), dtype)
  w = jnp.full((mc_particles,), 1.0 / mc_particles, dtype)
  fs = jax.jit(jax.vmap(lambda zz: _particles_run(zz[:, :r], zz[:, r:], w, xr, *args, **kw)))(z)
  stderr = jnp.std(fs, axis=0, ddof=1) / math.sqrt(mc_replicas)
  return LimitResult(steps, jnp.mean(fs, axis=0), stderr, "monte_carlo", dim)


def finite_network(key: jax.Array, width: int, x: Float[ArrayLike, "N d"], y: ArrayLike,
                   batches: Int[ArrayLike, "T B"], x_eval: Float[ArrayLike, "m d"], *,
                   lr: float | ArrayLike, activation: str = "tanh", loss: str = "mse",
                   num_classes: int | None = None, record_every: int = 1,
                   max_width: int | None = None) -> LimitResult:
  r"""A width-``width`` muP network in particle form trained by the same SGD (the finite-width object).

  .. math:: f_n(\xi) = \frac1n \sum_a v_a \phi(\langle u_a, \xi\rangle), \quad u_a \sim N(0, I_d),\;
      v_a \sim N(0, I_{d_o}),

  trained by SGD with learning rate :math:`\eta n` on :math:`(u_a, v_a)`, i.e. the particle update of the
  module docstring. Equal to :class:`jaxopt_lab.mup.parametrization.MLP` with ``preset("mup", 1)``,
  ``base_width = 1`` and inputs :math:`\sqrt{d}\,\xi`. Vmap it over keys for seeds. With
  ``max_width`` (static) the particles are drawn ``(max_width, d + d_o)`` and only the first ``width``
  count (weights :math:`1/n`, others 0), so ``width`` may be traced: one compile for every width.

  Reference: arXiv:2011.14522, Section 6.
  """
  _check_data(x, y, batches, x_eval, loss, record_every)
  if max_width is None and (not isinstance(width, int) or width < 1):
    raise ValueError(f"width must be an int >= 1, got {width!r}")
  if max_width is not None and (not isinstance(max_width, int) or max_width < 1):
    raise ValueError(f"max_width must be an int >= 1, got {max_width!r}")
  activation_fn(activation)
  x = jnp.asarray(x)
  dtype = x.dtype
  d_out = _d_out(y, loss, num_classes)
  size = width if max_width is None else max_width
  z = jax.random.normal(key, (size, x.shape[1] + d_out), dtype)
  n = jnp.asarray(width, dtype)
  w = jnp.where(jnp.arange(size) < n, 1.0 / n, 0.0).astype(dtype)
  f = _particles_jit(z[:, :x.shape[1]], z[:, x.shape[1]:], w, x, jnp.asarray(y), jnp.asarray(batches),
                     jnp.asarray(x_eval, dtype), jnp.asarray(lr, dtype), activation=activation,
                     loss=loss, record_every=record_every)
  return LimitResult(_steps(batches, record_every), f, jnp.zeros_like(f), "exact", 0)


# --------------------------------------------------------------------------------------------------
# Kernel-regime limits of the same network.


@functools.partial(jax.jit, static_argnames=("loss", "record_every", "d_out", "n_train"))
def _kernel_run(k_all, y, batches, lr, *, loss, record_every, d_out, n_train):
  f0 = jnp.zeros((k_all.shape[0], d_out), k_all.dtype)

  def step(f, idx):
    chi = _chi(f[idx], y[idx], loss)  # (B, d_o)
    return f - lr * k_all[:, idx] @ chi

  _, fs = _scan_records(step, f0, batches, record_every, lambda f: f[n_train:])
  return fs


def kernel_limit(x: Float[ArrayLike, "N d"], y: ArrayLike, batches: Int[ArrayLike, "T B"],
                 x_eval: Float[ArrayLike, "m d"], *, lr: float | ArrayLike,
                 activation: str = "tanh", kernel: str = "ntk", loss: str = "mse",
                 num_classes: int | None = None, record_every: int = 1) -> LimitResult:
  r"""The kernel-regime limit of the same 1-hidden-layer network under the same SGD.

  .. math:: f_{t+1}(\xi) = f_t(\xi) - \eta \sum_i K(\xi, \xi_i)\, \chi_{t,i}, \qquad f_0 = 0,

  with :math:`K` the NTK :math:`E[\phi(\langle u,\xi\rangle)\phi(\langle u,\xi'\rangle)] +
  \langle \xi, \xi'\rangle E[\phi'\phi']` (all layers trained in NTP) or the NNGP kernel (the first
  term; readout-only training). :math:`f_0 = 0` is the mean over initializations (the NTP network's
  :math:`f_0` is a centred Gaussian process). The kernel acts on the N training and m evaluation inputs:
  memory :math:`O((N + m)^2)`, constant in the number of steps. Kernels from
  :func:`jaxopt_lab.ntk.analytic.mlp_kernels` (depth 2, :math:`\sigma_w = 1`, :math:`\sigma_b = 0`,
  NTK parametrization, inputs scaled by :math:`\sqrt d` to undo its :math:`1/\sqrt{d}`).

  Reference: arXiv:2011.14522, Section 6 (kernel baselines); Jacot et al. 2018, arXiv:1806.07572.
  """
  from jaxopt_lab.ntk.analytic import mlp_kernels  # pylint: disable=g-import-not-at-top

  _check_data(x, y, batches, x_eval, loss, record_every)
  if kernel not in ("ntk", "nngp"):
    raise ValueError(f"unknown kernel {kernel!r}; choose 'ntk' or 'nngp'")
  activation_fn(activation)
  x = jnp.asarray(x)
  d_out = _d_out(y, loss, num_classes)
  allx = jnp.concatenate([x, jnp.asarray(x_eval, x.dtype)]) * math.sqrt(x.shape[1])
  ks = mlp_kernels(allx, depth=2, activation=activation, sigma_w=1.0, sigma_b=0.0,
                   parametrization="ntk", quadrature_order=64)
  k_all = ks.ntk if kernel == "ntk" else ks.nngp
  f = _kernel_run(k_all, jnp.asarray(y), jnp.asarray(batches), jnp.asarray(lr, x.dtype), loss=loss,
                  record_every=record_every, d_out=d_out, n_train=x.shape[0])
  return LimitResult(_steps(batches, record_every), f, jnp.zeros_like(f), kernel, 0)


def full_batches(num_train: int, num_steps: int) -> np.ndarray:
  """``(num_steps, num_train)`` indices: full-batch gradient descent."""
  return np.tile(np.arange(num_train), (num_steps, 1))


def sgd_batches(key: jax.Array, num_train: int, num_steps: int, batch_size: int) -> jax.Array:
  """``(num_steps, batch_size)`` indices: each step's batch drawn without replacement by ``fold_in``."""
  return jax.vmap(lambda t: jax.random.permutation(jax.random.fold_in(key, t), num_train)[:batch_size])(
      jnp.arange(num_steps))


__all__ = ["LimitResult", "finite_network", "full_batches", "kernel_limit", "linear_finite",
           "linear_limit", "nonlinear_limit", "sample_gram", "sgd_batches", "trapezoid_nodes"]
