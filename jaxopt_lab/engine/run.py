"""A run: ``lax.scan`` over an algorithm's steps, recording metrics every ``record_every`` steps.

The engine wraps the algorithm's state in :class:`RunState`, which adds the global step counter and the
step at which the run first became non-finite (-1 while finite). Both are int32 scalars, so the carry
of the scan never changes shape or dtype. A run is cut into chunks by :func:`advance`; chaining chunks
gives bit-for-bit the same state as one long scan, which is what lets a killed sweep resume exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxopt_lab.engine.algorithm import Algorithm, Metrics, PyTree


class RunState(NamedTuple):
  """The algorithm's state plus the engine's bookkeeping.

  Attributes:
    inner: the algorithm's own state.
    step: int32, the number of steps taken so far.
    diverged_at: int32, the first step after which some floating leaf of ``inner`` was non-finite,
      or -1 if the run is finite so far.
  """

  inner: PyTree
  step: jax.Array
  diverged_at: jax.Array


def all_finite(tree: PyTree) -> jax.Array:
  """True iff every inexact leaf of ``tree`` holds only finite numbers."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def start(algorithm: Algorithm, key: jax.Array, problem: PyTree, hp: Mapping[str, Any]) -> RunState:
  """Initial :class:`RunState` of one run: ``algorithm.init`` plus zeroed counters."""
  inner = algorithm.call_init(key, problem, hp)
  finite = all_finite(inner)
  return RunState(inner, jnp.zeros((), jnp.int32), jnp.where(finite, -1, 0).astype(jnp.int32))


def advance(algorithm: Algorithm, state: RunState, problem: PyTree, hp: Mapping[str, Any], *,
            num_records: int, record_every: int) -> tuple[RunState, Metrics]:
  """Takes ``num_records * record_every`` steps; returns the new state and the recorded metrics.

  Metrics are recorded after every ``record_every``-th step, so the returned dict maps each metric name
  to an array of shape ``(num_records,)``, plus ``"step"``: the step count at each record.

  Args:
    algorithm: the :class:`Algorithm` to run.
    state: the current :class:`RunState`.
    problem: the problem pytree (closed over, not copied per run).
    hp: traced hyperparameters, scalars.
    num_records: how many records this call produces (static).
    record_every: steps between records (static).
  """

  def one_step(s: RunState) -> tuple[RunState, Metrics]:
    inner, metrics = algorithm.call_step(s.inner, problem, hp)
    step = s.step + 1
    finite = all_finite(inner)
    diverged_at = jnp.where((s.diverged_at < 0) & ~finite, step, s.diverged_at)
    return RunState(inner, step, diverged_at.astype(jnp.int32)), metrics

  def one_record(s: RunState, _):
    # The first record_every - 1 steps drop their metrics, so XLA removes the work that only feeds
    # them (a loss evaluation is often as costly as the step); the last step is recorded.
    if record_every > 1:
      s, _ = jax.lax.scan(lambda c, _: (one_step(c)[0], None), s, None, length=record_every - 1)
    s, metrics = one_step(s)
    return s, {**metrics, "step": s.step}

  return jax.lax.scan(one_record, state, None, length=num_records)


def run(algorithm: Algorithm, key: jax.Array, problem: PyTree, hp: Mapping[str, Any], *,
        num_steps: int, record_every: int = 1) -> tuple[RunState, Metrics]:
  """One whole run as a single scan: ``init`` then ``num_steps`` steps.

  A pure function of ``key`` and ``hp``: jit it, vmap it over keys and hyperparameters, or use
  :func:`jaxopt_lab.engine.sweep.sweep` to do both with chunking, checkpoints and sharding.

  Args:
    algorithm: the :class:`Algorithm`.
    key: a typed PRNG key (``jax.random.key(seed)``).
    problem: the problem pytree.
    hp: traced hyperparameters (scalars).
    num_steps: total number of steps; must be a multiple of ``record_every``.
    record_every: steps between metric records.

  Returns:
    The final :class:`RunState` and metrics of shape ``(num_steps // record_every,)`` each.

  Example:
    >>> state, metrics = jax.jit(functools.partial(run, alg, num_steps=100, record_every=10))(
    ...     jax.random.key(0), problem, {"lr": 0.1})
  """
  check_schedule(num_steps, record_every)
  state = start(algorithm, key, problem, hp)
  return advance(algorithm, state, problem, hp, num_records=num_steps // record_every,
                 record_every=record_every)


def check_schedule(num_steps: int, record_every: int, chunk_steps: int | None = None) -> None:
  """Raises ``ValueError`` unless the step counts are positive and nest evenly."""
  if record_every < 1 or num_steps < 1:
    raise ValueError(f"num_steps ({num_steps}) and record_every ({record_every}) must be >= 1")
  if num_steps % record_every:
    raise ValueError(f"num_steps ({num_steps}) must be a multiple of record_every ({record_every})")
  if chunk_steps is not None and (chunk_steps < 1 or chunk_steps % record_every):
    raise ValueError(
        f"chunk_steps ({chunk_steps}) must be a positive multiple of record_every ({record_every})")
