r"""The models and data of Wu & Su 2023 (arXiv:2305.17490), and their norm identities.

A :class:`Model` is ``init(key, dtype) -> params`` and ``apply(params, x) -> outputs`` on plain
pytrees, plus ``norms(params)`` (the norms a stability bound controls). Outputs are ``(n,)`` for
scalar models and ``(n, k)`` for vector ones; the training loss is always the mean squared error
:math:`L = \frac1n\sum_i \tfrac12\|f(x_i) - y_i\|^2`.

- :func:`diagonal_net`: :math:`f(x) = \langle u \odot v, x\rangle`; with
  :math:`s^2 = \mathbb{E}x_k^2`, :math:`\mathrm{tr}\,G = s^2(\|u\|^2 + \|v\|^2) \ge 2 s^2\|u\odot v\|_1`.
- :func:`relu_net`: :math:`f(x) = \sum_j a_j\,\mathrm{relu}(w_j\cdot x)`; for :math:`x` uniform on the
  sphere of radius :math:`\sqrt d`, :math:`\mathrm{tr}\,G = \tfrac12\sum_j(\|w_j\|^2 + d a_j^2)
  \ge \sqrt d\sum_j |a_j|\|w_j\|` (the path norm).
- :func:`tanh_mlp` with :func:`digits_data` (scikit-learn's digits): the edge-of-stability model.

The data functions return a :class:`Dataset` (train and test arrays), all in one dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

PyTree = Any


class Model(NamedTuple):
  """A model on plain pytrees (static: bind it with ``functools.partial``; it is hashable).

  Attributes:
    name: short identifier.
    init: ``init(key, dtype) -> params``.
    apply: ``apply(params, x) -> (n,)`` or ``(n, k)`` outputs for ``(n, ...)`` inputs.
    norms: ``norms(params) -> dict`` of scalar norms worth recording (may be empty).
  """

  name: str
  init: Callable[[jax.Array, Any], PyTree]
  apply: Callable[[PyTree, jax.Array], jax.Array]
  norms: Callable[[PyTree], dict[str, jax.Array]]


class Dataset(NamedTuple):
  """Training inputs/targets and (optionally) a test set; a pytree of arrays (the problem of a run).

  Attributes:
    x: ``(n, ...)`` training inputs.
    y: ``(n,)`` or ``(n, k)`` training targets.
    x_test: ``(n_test, ...)`` test inputs, or None.
    y_test: test targets, or None.
  """

  x: jax.Array
  y: jax.Array
  x_test: jax.Array | None = None
  y_test: jax.Array | None = None


def mse(outputs: jax.Array, targets: jax.Array) -> Float[Array, ""]:
  r"""Mean squared error :math:`\frac1n\sum_i \tfrac12\|f_i - y_i\|^2` (outputs and targets one shape)."""
  if outputs.shape != targets.shape:
    raise ValueError(f"outputs {outputs.shape} and targets {targets.shape} must have one shape")
  r = (outputs - targets).reshape(outputs.shape[0], -1)
  return 0.5 * jnp.mean(jnp.sum(r * r, axis=1))


# --------------------------------------------------------------------------------------------------
# Diagonal linear network.


def diagonal_apply(params: PyTree, x: Float[Array, "n d"]) -> Float[Array, " n"]:
  r""":math:`f(x) = \langle u \odot v, x\rangle` for ``params = {"u": (d,), "v": (d,)}``."""
  return x @ (params["u"] * params["v"])


def diagonal_norms(params: PyTree) -> dict[str, jax.Array]:
  r"""``l1`` :math:`\|u\odot v\|_1`, ``sq_norm`` :math:`\|u\|^2 + \|v\|^2` and ``balance``
  :math:`\|u^2 - v^2\|_1` (each :math:`u_k^2 - v_k^2` is conserved by gradient flow)."""
  u, v = params["u"], params["v"]
  return {"l1": jnp.sum(jnp.abs(u * v)), "sq_norm": jnp.sum(u * u) + jnp.sum(v * v),
          "balance": jnp.sum(jnp.abs(u * u - v * v))}


def diagonal_net(d: int, *, init_scale: float = 1.0) -> Model:
  r"""Diagonal linear network :math:`f(x) = \langle u \odot v, x\rangle`, :math:`u, v \in \mathbb{R}^d`.

  Init: :math:`u_k, v_k \sim N(0, \text{init\_scale}^2)` independently.

  Args:
    d: input dimension.
    init_scale: standard deviation of the init.

  Returns:
    A :class:`Model` whose norms are those of :func:`diagonal_norms`.

  Example:
    >>> model = diagonal_net(200)
    >>> params = model.init(jax.random.key(0), jnp.float64)

  Reference: Wu & Su 2023 (arXiv:2305.17490), the diagonal linear network of the sparse-recovery
  application; Woodworth et al. 2020 (arXiv:2002.09277).
  """
  if d < 1:
    raise ValueError(f"d must be >= 1, got {d}")

  def init(key, dtype=jnp.float64):
    ku, kv = jax.random.split(key)
    return {"u": init_scale * jax.random.normal(ku, (d,), dtype),
            "v": init_scale * jax.random.normal(kv, (d,), dtype)}

  return Model(f"diagonal_net_d{d}", init, diagonal_apply, diagonal_norms)


def diagonal_trace(params: PyTree, second_moments: Float[Array, " d"]) -> Float[Array, ""]:
  r"""Population :math:`\mathrm{tr}\,G = \sum_k \mathbb{E}[x_k^2](u_k^2 + v_k^2)` of the diagonal net.

  With an empirical :math:`\mathbb{E}[x_k^2] = \frac1n\sum_i x_{ik}^2` it is the exact Gauss-Newton
  trace on the training set. Lower bound: :math:`\ge 2\min_k \mathbb{E}[x_k^2]\,\|u\odot v\|_1`.

  Example:
    >>> diagonal_trace(params, jnp.mean(x ** 2, axis=0))
  """
  return jnp.sum(second_moments * (params["u"] ** 2 + params["v"] ** 2))


def sparse_regression_data(key: jax.Array, *, d: int, n: int, sparsity: int, n_test: int = 1000,
                           dtype: Any = jnp.float64) -> Dataset:
  r"""Noiseless sparse regression: :math:`x \sim U[-1, 1]^d`, :math:`y = \langle\beta^*, x\rangle`.

  :math:`\beta^*` has ones on its first ``sparsity`` coordinates (so :math:`\|\beta^*\|_1` =
  sparsity) and zeros elsewhere; :math:`s^2 = \mathbb{E}x_k^2 = 1/3`.

  Example:
    >>> data = sparse_regression_data(jax.random.key(1), d=200, n=60, sparsity=3)
  """
  if not 1 <= sparsity <= d:
    raise ValueError(f"sparsity must be in [1, d = {d}], got {sparsity}")
  k_tr, k_te = jax.random.split(key)
  beta = jnp.zeros((d,), dtype).at[:sparsity].set(1.0)
  x = jax.random.uniform(k_tr, (n, d), dtype, -1.0, 1.0)
  xt = jax.random.uniform(k_te, (n_test, d), dtype, -1.0, 1.0)
  return Dataset(x, x @ beta, xt, xt @ beta)


# --------------------------------------------------------------------------------------------------
# Two-layer ReLU network.


def relu_apply(params: PyTree, x: Float[Array, "n d"]) -> Float[Array, " n"]:
  r""":math:`f(x) = \sum_j a_j\,\mathrm{relu}(w_j\cdot x)` for ``params = {"w": (m, d), "a": (m,)}``."""
  return jax.nn.relu(x @ params["w"].T) @ params["a"]


def path_norm(params: PyTree) -> Float[Array, ""]:
  r"""Path norm :math:`\sum_j |a_j|\,\|w_j\|` of the two-layer ReLU network."""
  return jnp.sum(jnp.abs(params["a"]) * jnp.linalg.norm(params["w"], axis=1))


def relu_norms(params: PyTree) -> dict[str, jax.Array]:
  r"""``path_norm``, ``sq_norm`` :math:`\sum_j \|w_j\|^2 + a_j^2` and ``balance``
  :math:`\sum_j |a_j^2 - \|w_j\|^2|` (conserved per neuron by gradient flow)."""
  w, a = params["w"], params["a"]
  wn2 = jnp.sum(w * w, axis=1)
  return {"path_norm": path_norm(params), "sq_norm": jnp.sum(wn2) + jnp.sum(a * a),
          "balance": jnp.sum(jnp.abs(a * a - wn2))}


def relu_net(d: int, width: int, *, w_std: float | None = None,
             a_std: float | None = None) -> Model:
  r"""Two-layer ReLU network :math:`f(x) = \sum_{j=1}^m a_j\,\mathrm{relu}(w_j\cdot x)`, no biases.

  Init: :math:`w_j \sim N(0, \sigma_w^2 I_d)` and :math:`a_j \sim N(0, \sigma_a^2)`, by default
  :math:`\sigma_w = 1/\sqrt d`, :math:`\sigma_a = 1/\sqrt m`. A large init (say
  :math:`\sigma_w = 1`, :math:`\sigma_a = 0.5`) starts where :math:`\mathrm{tr}\,G` is large, so
  the step size decides how far SGD must travel to a stable minimum.

  Args:
    d: input dimension.
    width: number of neurons ``m``.
    w_std: standard deviation of the first-layer weights.
    a_std: standard deviation of the output weights.

  Returns:
    A :class:`Model` whose norms are those of :func:`relu_norms`.

  Example:
    >>> model = relu_net(20, 50)

  Reference: Wu & Su 2023 (arXiv:2305.17490), the two-layer ReLU network and its path norm.
  """
  if d < 1 or width < 1:
    raise ValueError(f"d and width must be >= 1, got {d}, {width}")

  sw = float(1 / np.sqrt(d) if w_std is None else w_std)  # Python floats: no dtype promotion
  sa = float(1 / np.sqrt(width) if a_std is None else a_std)

  def init(key, dtype=jnp.float64):
    kw, ka = jax.random.split(key)
    return {"w": sw * jax.random.normal(kw, (width, d), dtype),
            "a": sa * jax.random.normal(ka, (width,), dtype)}

  return Model(f"relu_net_d{d}_m{width}", init, relu_apply, relu_norms)


def relu_population_trace(params: PyTree) -> Float[Array, ""]:
  r"""Population :math:`\mathrm{tr}\,G = \tfrac12\sum_j(\|w_j\|^2 + d\,a_j^2)` for :math:`x` uniform on
  the sphere of radius :math:`\sqrt d` (:math:`\mathbb{E}xx^\top = I`, each half-space has mass 1/2).

  By AM-GM it is :math:`\ge \sqrt d\cdot` :func:`path_norm`, with equality iff
  :math:`\|w_j\| = \sqrt d |a_j|` for every neuron.

  Example:
    >>> relu_population_trace(params) >= jnp.sqrt(d) * path_norm(params)
  """
  d = params["w"].shape[1]
  return 0.5 * (jnp.sum(params["w"] ** 2) + d * jnp.sum(params["a"] ** 2))


def sphere(key: jax.Array, n: int, d: int, dtype: Any = jnp.float64) -> Float[Array, "n d"]:
  r"""``n`` points uniform on the sphere of radius :math:`\sqrt d` in :math:`\mathbb{R}^d`."""
  z = jax.random.normal(key, (n, d), dtype)
  return z * (float(np.sqrt(d)) / jnp.linalg.norm(z, axis=1, keepdims=True))


def relu_teacher_data(key: jax.Array, *, d: int, n: int, teacher_width: int = 1,
                      n_test: int = 1000, dtype: Any = jnp.float64) -> Dataset:
  r"""Inputs uniform on the sphere of radius :math:`\sqrt d`; targets from a ReLU teacher.

  The teacher has ``teacher_width`` neurons with unit-norm :math:`w^*_j` and :math:`a^*_j = 1`:
  :math:`y = \sum_j \mathrm{relu}(w^*_j\cdot x)`.

  Example:
    >>> data = relu_teacher_data(jax.random.key(2), d=20, n=60)
  """
  k_w, k_tr, k_te = jax.random.split(key, 3)
  w = jax.random.normal(k_w, (teacher_width, d), dtype)
  teacher = {"w": w / jnp.linalg.norm(w, axis=1, keepdims=True),
             "a": jnp.ones((teacher_width,), dtype)}
  x, xt = sphere(k_tr, n, d, dtype), sphere(k_te, n_test, d, dtype)
  return Dataset(x, relu_apply(teacher, x), xt, relu_apply(teacher, xt))


# --------------------------------------------------------------------------------------------------
# tanh MLP on scikit-learn's digits.


def mlp_apply(params: PyTree, x: Float[Array, "n d"]) -> Float[Array, "n k"]:
  r"""A tanh MLP :math:`f = W_L \tanh(\cdots \tanh(W_1 x + b_1)\cdots) + b_L` (list of ``(w, b)``)."""
  h = x
  for w, b in params[:-1]:
    h = jnp.tanh(h @ w + b[None, :])
  w, b = params[-1]
  return h @ w + b[None, :]


def _no_norms(params: PyTree) -> dict[str, jax.Array]:
  del params
  return {}


def tanh_mlp(sizes: Sequence[int]) -> Model:
  r"""A fully connected tanh network with layer sizes ``sizes`` (input first, output last).

  Init: :math:`W_l \sim N(0, 1/\text{fan\_in})`, :math:`b_l = 0` (LeCun normal).

  Example:
    >>> model = tanh_mlp((64, 64, 64, 64, 10))   # the edge-of-stability MLP on digits

  Reference: Cohen et al. 2021 (arXiv:2103.00065), tanh networks trained with MSE.
  """
  sizes = tuple(int(s) for s in sizes)
  if len(sizes) < 2 or min(sizes) < 1:
    raise ValueError(f"sizes must list >= 2 positive layer sizes, got {sizes}")

  def init(key, dtype=jnp.float64):
    keys = jax.random.split(key, len(sizes) - 1)
    return [(jax.random.normal(k, (a, b), dtype) / float(np.sqrt(a)), jnp.zeros((b,), dtype))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])]

  return Model("tanh_mlp_" + "-".join(map(str, sizes)), init, mlp_apply, _no_norms)


def digits_data(*, n_train: int = 1000, n_test: int = 500, seed: int = 0,
                dtype: Any = np.float64) -> Dataset:
  r"""scikit-learn's digits (8x8 images, 1797 examples, shipped with the package), one-hot targets.

  Pixels are scaled to :math:`[0, 1]` and centred by the training mean; the examples are shuffled
  with ``numpy.random.default_rng(seed)`` (host-side data preparation, not library randomness) and
  split into the first ``n_train`` and the next ``n_test``.

  Example:
    >>> data = digits_data(n_train=1000)   # x: (1000, 64), y: (1000, 10)
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  x, labels = load_digits(return_X_y=True)
  if n_train < 1 or n_test < 0 or n_train + n_test > x.shape[0]:
    raise ValueError(f"n_train + n_test must be in [1, {x.shape[0]}], got {n_train} + {n_test}")
  order = np.random.default_rng(seed).permutation(x.shape[0])
  x, labels = x[order] / 16.0, labels[order]
  x = x - x[:n_train].mean(axis=0, keepdims=True)
  y = np.eye(10)[labels]
  tr, te = slice(0, n_train), slice(n_train, n_train + n_test)
  cast = lambda a: jnp.asarray(a, dtype)
  return Dataset(cast(x[tr]), cast(y[tr]), cast(x[te]) if n_test else None,
                 cast(y[te]) if n_test else None)
