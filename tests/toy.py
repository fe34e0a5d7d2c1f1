"""A small stochastic algorithm for engine tests: SGD-like noisy gradient descent on a quadratic.

x <- x - lr * (a * x) + noise * N(0, I) with per-step keys from fold_in(key, t); diverges when
|1 - lr * a_max| > 1. The problem holds the curvatures ``a``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_lab.engine import Algorithm


class ToyState(NamedTuple):
  x: jax.Array
  key: jax.Array
  t: jax.Array


def toy_init(key, problem, *, scale):
  k_init, k_run = jax.random.split(key)
  x = scale * jax.random.normal(k_init, problem.shape, problem.dtype)
  return ToyState(x, k_run, jnp.zeros((), jnp.int32))


def toy_step(state, problem, *, lr, noise=0.01):
  xi = jax.random.normal(jax.random.fold_in(state.key, state.t), state.x.shape, state.x.dtype)
  x = state.x - lr * problem * state.x + noise * xi
  return ToyState(x, state.key, state.t + 1), {"loss": 0.5 * jnp.sum(problem * x**2),
                                                 "x0": x[0]}


TOY = Algorithm("toy_sgd", toy_init, toy_step)
