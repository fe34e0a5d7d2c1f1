r"""Finite fully connected networks whose infinite-width kernels are those of :mod:`.analytic`.

NTK parametrization (:math:`W^l_{ij}, b^l_i \sim N(0, 1)`, the scalings written out in ``apply``):

.. math::
    h^1 = \tfrac{\sigma_w}{\sqrt{n_0}} W^1 x + \sigma_b b^1, \qquad
    h^{l+1} = \tfrac{\sigma_w}{\sqrt{n_l}} W^{l+1} \phi(h^l) + \sigma_b b^{l+1}, \qquad f = h^L.

Standard parametrization: :math:`W^l_{ij} \sim N(0, \sigma_w^2 / n_{l-1})`,
:math:`b^l_i \sim N(0, \sigma_b^2)`, :math:`h^{l+1} = W^{l+1} \phi(h^l) + b^{l+1}` (the biases are
trained even when :math:`\sigma_b = 0`). Both have the NNGP :math:`\Sigma^L` at initialization; as
the hidden widths grow, the empirical NTK tends to :math:`\Theta^L` (NTK parametrization) or to the
width-dependent standard-parametrization NTK of :func:`jaxopt_lab.ntk.analytic.mlp_kernels` with
``hidden_widths`` (its ratio to the empirical one tends to 1).

Training: :func:`gd_mse` is a :class:`jaxopt_lab.engine.Algorithm` for full-batch gradient descent
on :math:`\mathcal{L} = \frac{1}{2n}\sum_{i,k} (f_k(x_i) - y_{ik})^2` with traced learning rate
``lr``, and :func:`train_mse` runs it with :func:`jaxopt_lab.engine.advance`, recording the outputs
on evaluation inputs.

Reference: Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Section 2; Lee et al. 2019
(arXiv:1902.06720), Section 2 and Appendix for the standard parametrization.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxopt_lab import engine
from jaxopt_lab.engine.run import check_schedule
from jaxopt_lab.ntk.analytic import Activation, activation_fn

Params = tuple[dict[str, jax.Array], ...]


@dataclasses.dataclass(frozen=True)
class MLP:
  r"""A fully connected network: layer widths, activation, scales and parametrization.

  Hashable (a static argument of ``jax.jit``). ``init(key) -> params`` and ``apply(params, x)`` act
  on plain pytrees: ``params`` is a tuple of ``{"w": (n_{l-1}, n_l), "b": (n_l,)}``, one per layer.

  Attributes:
    widths: ``(n_0, n_1, ..., n_L)``: input dimension, hidden widths, output dimension.
    activation: a name of :data:`jaxopt_lab.ntk.analytic.ACTIVATIONS` or an elementwise callable.
    sigma_w: weight scale.
    sigma_b: bias scale.
    parametrization: ``"ntk"`` or ``"standard"``.

  Example:
    >>> net = MLP((2, 512, 512, 1), "relu", sigma_w=1.0, sigma_b=0.1)
    >>> params = net.init(jax.random.key(0))
    >>> net.apply(params, jnp.ones((5, 2))).shape
    (5, 1)

  Reference: Jacot et al. 2018, arXiv:1806.07572, Section 2.
  """

  widths: tuple[int, ...]
  activation: Activation = "relu"
  sigma_w: float = 1.0
  sigma_b: float = 0.0
  parametrization: str = "ntk"

  def __post_init__(self):
    widths = tuple(int(n) for n in self.widths)
    if len(widths) < 2 or any(n < 1 for n in widths):
      raise ValueError(f"widths: expected (n_0, ..., n_L) with L >= 1 positive entries, got "
                       f"{self.widths}")
    object.__setattr__(self, "widths", widths)
    activation_fn(self.activation)
    for name in ("sigma_w", "sigma_b"):
      v = float(getattr(self, name))
      if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: must be finite and >= 0, got {v}")
      object.__setattr__(self, name, v)
    if self.parametrization not in ("ntk", "standard"):
      raise ValueError(f"parametrization: expected 'ntk' or 'standard', got "
                       f"{self.parametrization!r}")

  @property
  def depth(self) -> int:
    """Number of dense layers :math:`L`."""
    return len(self.widths) - 1

  def kernel_kwargs(self) -> dict[str, Any]:
    """Keyword arguments of :func:`jaxopt_lab.ntk.analytic.mlp_kernels` for this network's limit."""
    return dict(depth=self.depth, activation=self.activation, sigma_w=self.sigma_w,
                sigma_b=self.sigma_b, parametrization=self.parametrization,
                hidden_widths=self.widths[1:-1])

  def init(self, key: jax.Array, dtype: Any = None) -> Params:
    """Parameters: ``N(0, 1)`` entries (NTK) or ``N(0, sigma_w^2/fan_in)``, ``N(0, sigma_b^2)``
    (standard). One normal draw is carved into the layers (one RNG kernel to compile, not 2L)."""
    dtype = dtype or jnp.result_type(float)
    shapes = [s for n_in, n_out in zip(self.widths[:-1], self.widths[1:])
              for s in ((n_in, n_out), (n_out,))]
    sizes = [math.prod(s) for s in shapes]
    z = jax.random.normal(key, (sum(sizes),), dtype)
    leaves = [c.reshape(s) for c, s in zip(jnp.split(z, np.cumsum(sizes)[:-1]), shapes)]
    params = []
    for l, n_in in enumerate(self.widths[:-1]):
      w, b = leaves[2 * l], leaves[2 * l + 1]
      if self.parametrization == "standard":
        w = w * (self.sigma_w / math.sqrt(n_in))
        b = b * self.sigma_b
      params.append({"w": w, "b": b})
    return tuple(params)

  def layer_scales(self) -> tuple[tuple[float, float], ...]:
    """Per layer, the factors ``(s_w, s_b)`` of ``h = s_w a W + s_b b`` applied in ``apply``."""
    if self.parametrization == "standard":
      return tuple((1.0, 1.0) for _ in range(self.depth))
    return tuple((self.sigma_w / math.sqrt(n_in), self.sigma_b) for n_in in self.widths[:-1])

  def preactivations(self, params: Params, x: Float[Array, "n d"]) -> list[jax.Array]:
    """The pre-activations :math:`h^1, \\dots, h^L` (the last one is the output)."""
    phi = activation_fn(self.activation)
    a, hs = x, []
    for l, (layer, (s_w, s_b)) in enumerate(zip(params, self.layer_scales())):
      if l:
        a = phi(hs[-1])
      h = s_w * (a @ layer["w"]) + s_b * layer["b"][None, :]
      hs.append(h)
    return hs

  def apply(self, params: Params, x: Float[Array, "n d"]) -> Float[Array, "n o"]:
    r"""The network's outputs :math:`f(x) = h^L(x)`, shape ``(n, n_L)``."""
    return self.preactivations(params, x)[-1]


# ----------------------------------------------------------------------------------------------
# Training with the engine.


class MSEProblem(NamedTuple):
  """Training data: inputs ``x`` (n, d) and targets ``y`` (n, n_L)."""

  x: jax.Array
  y: jax.Array


class GDState(NamedTuple):
  """Parameters with the loss and gradient at them (so each step costs one forward and backward)."""

  params: Params
  loss: jax.Array
  grads: Params


def mse_loss(net: MLP, params: Params, x: Float[Array, "n d"], y: Float[Array, "n o"]) -> jax.Array:
  r""":math:`\mathcal{L} = \frac{1}{2n} \sum_{i,k} (f_k(x_i) - y_{ik})^2` (loss averaged over
  points)."""
  r = net.apply(params, x) - y
  return 0.5 * jnp.sum(r * r) / x.shape[0]


def gd_mse(net: MLP) -> engine.Algorithm:
  r"""Full-batch gradient descent on :func:`mse_loss` as an engine Algorithm (traced hp ``lr``).

  .. math:: \theta_{k+1} = \theta_k - \eta\, \nabla_\theta \mathcal{L}(\theta_k)

  ``init(key, problem)`` draws ``net.init(key)`` (in the dtype of ``problem.x``); ``step`` reports
  the loss after the update.

  Example:
    >>> state, m = engine.run(gd_mse(net), jax.random.key(0), MSEProblem(x, y), {"lr": 1.0},
    ...                       num_steps=200)

  Reference: Jacot et al. 2018 (arXiv:1806.07572), Section 5 (the paper trains with GD, rate 1.0).
  """
  value_and_grad = jax.value_and_grad(functools.partial(mse_loss, net))

  def init(key, problem: MSEProblem) -> GDState:
    params = net.init(key, problem.x.dtype)
    return GDState(params, *value_and_grad(params, problem.x, problem.y))

  def step(state: GDState, problem: MSEProblem, *, lr) -> tuple[GDState, dict[str, jax.Array]]:
    params = jax.tree.map(lambda p, g: p - lr * g, state.params, state.grads)
    loss, grads = value_and_grad(params, problem.x, problem.y)
    return GDState(params, loss, grads), {"loss": loss}

  return engine.Algorithm(f"mlp_gd_mse_{net.parametrization}", init, step)


class TrainTrace(NamedTuple):
  """A GD run: initial and final parameters, and records at steps 0, k, 2k, ..., num_steps."""

  params_init: Params
  params_final: Params
  step: jax.Array  # (R + 1,) int32
  loss: jax.Array  # (R + 1,)
  f_eval: jax.Array  # (R + 1, n_eval, n_L)


@functools.partial(jax.jit, static_argnames=("net", "num_steps", "record_every"))
def train_mse(net: MLP, key: jax.Array, x: Float[Array, "n d"], y: Float[Array, "n o"],
              x_eval: Float[Array, "m d"], *, lr: float | jax.Array, num_steps: int,
              record_every: int = 1) -> TrainTrace:
  r"""Trains ``net`` from ``net.init(key)`` by :func:`gd_mse`, recording :math:`f_t` on ``x_eval``.

  Runs :func:`jaxopt_lab.engine.advance` one record at a time inside a ``lax.scan``, so it is one
  compiled program per shape: vmap it over keys (seeds) and learning rates.

  Args:
    net: the network (static).
    key: a typed PRNG key for the initialization.
    x, y: training inputs and targets (``y`` of shape ``(n, n_L)``).
    x_eval: inputs on which to record the outputs (e.g. the training inputs and test points).
    lr: learning rate :math:`\eta` (traced).
    num_steps: GD steps, a multiple of ``record_every``.
    record_every: steps between records.

  Returns:
    :class:`TrainTrace` with records at steps ``0, record_every, ..., num_steps``.

  Example:
    >>> trace = jax.vmap(lambda k: train_mse(net, k, x, y, x_test, lr=1.0, num_steps=200,
    ...                                      record_every=20))(jax.random.split(key, 10))

  Reference: Jacot et al. 2018 (arXiv:1806.07572), Section 5.
  """
  check_schedule(num_steps, record_every)
  algorithm = gd_mse(net)
  problem = MSEProblem(x, y)
  hp = {"lr": lr}
  state = engine.start(algorithm, key, problem, hp)

  def record(s, _):
    s, _ = engine.advance(algorithm, s, problem, hp, num_records=1, record_every=record_every)
    return s, (s.step, s.inner.loss, net.apply(s.inner.params, x_eval))

  final, (steps, losses, fs) = jax.lax.scan(record, state, None, length=num_steps // record_every)
  cat = lambda first, rest: jnp.concatenate([first[None], rest])
  return TrainTrace(state.inner.params, final.inner.params, cat(state.step, steps),
                    cat(state.inner.loss, losses), cat(net.apply(state.inner.params, x_eval), fs))


# ----------------------------------------------------------------------------------------------
# Inputs of the paper's experiments.


def circle_inputs(num: int,
                  dtype: Any = None) -> tuple[Float[Array, " num"], Float[Array, "num 2"]]:
  r"""``num`` equispaced points :math:`x = (\cos\gamma, \sin\gamma)` of the unit circle,
  :math:`\gamma \in [-\pi, \pi)`; returns ``(gamma, x)`` (Jacot et al. 2018, Figs. 1 and 2)."""
  gamma = jnp.linspace(-jnp.pi, jnp.pi, num, endpoint=False, dtype=dtype or jnp.result_type(float))
  return gamma, jnp.stack([jnp.cos(gamma), jnp.sin(gamma)], axis=1)


def sphere_inputs(key: jax.Array, num: int, dim: int, dtype: Any = None) -> Float[Array, "num dim"]:
  r"""``num`` iid uniform points of the unit sphere :math:`S^{dim-1}` (normalized Gaussians)."""
  z = jax.random.normal(key, (num, dim), dtype or jnp.result_type(float))
  return z / jnp.linalg.norm(z, axis=1, keepdims=True)
