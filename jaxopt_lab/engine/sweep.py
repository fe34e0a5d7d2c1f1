"""A sweep: many runs of one algorithm on one problem, vmapped, sharded, chunked and checkpointed.

The runs are the product of a list of seeds and a grid of *traced* hyperparameters. They are flattened
into one batch axis, vmapped in a single compiled program per shape, and the batch axis is sharded over
every device JAX sees (all local devices; all devices of all hosts under ``jax.distributed``). The
problem (a sensing operator, a data set) is passed once, replicated, never copied per run.

Long sweeps advance in chunks of ``chunk_steps`` steps. Between chunks the host logs progress, notes
runs that became non-finite (each keeps its own step of divergence; the rest of the sweep goes on), and
optionally checkpoints the batched state. A sweep started again on the same checkpoint directory resumes
from the last saved chunk and ends bit-for-bit where an uninterrupted sweep ends, because every chunk
is the same compiled program applied to the same bits, and per-step randomness comes from
``jax.random.fold_in(key, step)`` inside the algorithms.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_lab.engine import checkpoint as ckpt
from jaxopt_lab.engine.algorithm import Algorithm, PyTree
from jaxopt_lab.engine.run import RunState, advance, check_schedule, start


class ChunkInfo(NamedTuple):
  """Progress after a chunk, handed to the ``on_chunk`` callback."""

  chunk: int
  num_chunks: int
  step: int
  num_steps: int
  steps_per_second: float
  eta_seconds: float
  num_diverged: int
  num_runs: int


def log_progress(info: ChunkInfo) -> None:
  """Default ``on_chunk``: one absl log line with throughput, ETA and divergences."""
  logging.info("chunk %d/%d  step %d/%d  %.1f steps/s  ETA %.1fs  diverged %d/%d runs",
               info.chunk + 1, info.num_chunks, info.step, info.num_steps, info.steps_per_second,
               info.eta_seconds, info.num_diverged, info.num_runs)


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """A finished sweep, on the host. Leading axes of every per-run array: ``(num_seeds, *grid_shape)``.

  Attributes:
    seeds: the seeds, shape ``(num_seeds,)``.
    grid: ordered mapping hyperparameter name -> its 1-D axis of values (the grid is their product).
    fixed: hyperparameters held at one value for every run.
    steps: the step count of each record, shape ``(num_records,)``.
    metrics: name -> array ``(num_seeds, *grid_shape, num_records)``.
    diverged_at: int array ``(num_seeds, *grid_shape)``: first non-finite step, -1 if finite.
    final_state: the final :class:`RunState`, leaves with leading axes ``(num_seeds, *grid_shape)``
      (PRNG keys as raw key data).
    resumed_from_chunk: the chunk a resumed sweep started from (None if it started fresh).
  """

  seeds: np.ndarray
  grid: dict[str, np.ndarray]
  fixed: dict[str, float]
  steps: np.ndarray
  metrics: dict[str, np.ndarray]
  diverged_at: np.ndarray
  final_state: PyTree
  resumed_from_chunk: int | None = None

  @property
  def grid_shape(self) -> tuple[int, ...]:
    return tuple(len(v) for v in self.grid.values())

  @property
  def diverged(self) -> np.ndarray:
    """Boolean ``(num_seeds, *grid_shape)``: runs that became non-finite."""
    return self.diverged_at >= 0

  def runs(self) -> list[dict[str, Any]]:
    """One dict per run: seed, hyperparameters and divergence step (the rows of a results table)."""
    rows = []
    for idx in np.ndindex(self.diverged_at.shape):
      row = {"seed": int(self.seeds[idx[0]])}
      row.update({name: float(axis[i]) for (name, axis), i in zip(self.grid.items(), idx[1:])})
      row.update(self.fixed)
      row["diverged_at"] = int(self.diverged_at[idx])
      rows.append(row)
    return rows


def _as_grid(hp: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  grid, fixed = {}, {}
  for name, value in hp.items():
    arr = np.asarray(value)
    if arr.ndim == 0:
      fixed[name] = arr.item()
    elif arr.ndim == 1 and arr.size >= 1:
      grid[name] = arr
    else:
      raise ValueError(f"hyperparameter {name!r} must be a scalar or a non-empty 1-D list of values, "
                       f"got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
      raise ValueError(f"hyperparameter {name!r} must be finite numbers, got {value!r}")
  return grid, fixed


SEED_MAX = 2**31 - 1


def check_seeds(seeds: Sequence[int] | np.ndarray) -> np.ndarray:
  """The seeds as a 1-D int64 array; ``ValueError`` unless non-empty, integer, distinct, in range.

  A seed must lie in ``[0, 2**31 - 1]``: there ``jax.random.key(seed)`` is the same key whether or not
  ``jax_enable_x64`` is on. Larger seeds are refused rather than wrapped, since without x64 a seed
  ``2**31 + s`` would silently become another seed's key.
  """
  arr = np.asarray(seeds)
  if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
    raise ValueError(f"seeds must be a non-empty 1-D list of integers, got {seeds!r}")
  bad = arr[(arr < 0) | (arr > SEED_MAX)]
  if bad.size:
    raise ValueError(f"seeds must lie in [0, 2**31 - 1] (the key space of jax.random.key in every "
                     f"precision mode), got {bad[:3].tolist()}")
  if np.unique(arr).size != arr.size:
    raise ValueError(f"seeds must be distinct, got duplicates in {arr.tolist()[:10]}")
  return arr.astype(np.int64)


def check_finite_problem(problem: PyTree) -> None:
  """Raises ``ValueError`` naming the first floating leaf of ``problem`` holding NaN or inf."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(problem)[0]:
    if _is_key_leaf(leaf):
      continue
    x = np.asarray(leaf)
    if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
      name = jax.tree_util.keystr(path) or "problem"
      raise ValueError(f"the problem's data {name} holds {int(np.sum(~np.isfinite(x)))} non-finite "
                       "value(s) (NaN or inf); fix the data before sweeping")


def _is_key_leaf(x: Any) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _float_dtype(problem: PyTree) -> np.dtype:
  """The floating dtype runs compute in: that of the problem's floating leaves, else JAX's default."""
  dtypes = {np.dtype(jnp.result_type(x)) for x in jax.tree.leaves(problem)
            if jnp.issubdtype(jnp.result_type(x), jnp.floating)}
  if len(dtypes) > 1:
    raise ValueError(f"the problem mixes floating dtypes {sorted(map(str, dtypes))}; use one")
  return dtypes.pop() if dtypes else np.dtype(jnp.result_type(float))


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
  """Hyperparameter values as ``dtype`` (floats) or int32 (integers), so no run's state is promoted."""
  return values.astype(dtype if np.issubdtype(values.dtype, np.floating) else np.int32)


def _sharded(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from a host array every process holds in full (works multi-host)."""
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _chunk_plan(num_steps: int, chunk_steps: int) -> list[int]:
  full, rest = divmod(num_steps, chunk_steps)
  return [chunk_steps] * full + ([rest] if rest else [])


def _fn_key(fn: Callable) -> Any:
  """A hashable identity for ``fn`` under which equal ``functools.partial`` rebuilds compare equal."""
  if isinstance(fn, functools.partial):
    return ("partial", _fn_key(fn.func), fn.args, tuple(sorted(fn.keywords.items())))
  return fn


_COMPILED: dict[Any, tuple[Callable, Callable]] = {}
_COMPILED_MAX = 64


def _compiled(algorithm: Algorithm, record_every: int, devices: tuple[jax.Device, ...]):
  """Jitted batched ``init`` and ``advance`` of one algorithm on one device set, built once.

  Cached on the algorithm's name and functions (partials compared by function and bound arguments), so
  calling :func:`sweep` again with an equal algorithm, e.g. ``symmetric_gd(k=3)`` rebuilt in a Python
  loop over configs, reuses the compiled executables for shapes seen before instead of tracing and
  compiling fresh closures every call. Algorithms with unhashable bound arguments are not cached.
  """
  try:
    key = (algorithm.name, _fn_key(algorithm.init), _fn_key(algorithm.step), record_every, devices)
    hash(key)
  except TypeError:
    return _build_compiled(algorithm, record_every, devices)
  if key not in _COMPILED:
    if len(_COMPILED) >= _COMPILED_MAX:
      _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = _build_compiled(algorithm, record_every, devices)
  return _COMPILED[key]


def _build_compiled(algorithm: Algorithm, record_every: int, devices: tuple[jax.Device, ...]):
  mesh = Mesh(np.array(devices), ("runs",))
  batch = NamedSharding(mesh, PartitionSpec("runs"))

  @functools.partial(jax.jit, out_shardings=batch)
  def init_all(seed_batch, problem, hps, fixed_hps):
    return jax.vmap(lambda s, h: start(algorithm, jax.random.key(s), problem, {**fixed_hps, **h}))(
        seed_batch, hps)

  @functools.partial(jax.jit, static_argnames="num_records", donate_argnums=0,
                     out_shardings=(batch, batch))
  def advance_all(state, problem, hps, fixed_hps, num_records):
    return jax.vmap(lambda st, h: advance(algorithm, st, problem, {**fixed_hps, **h},
                                          num_records=num_records, record_every=record_every))(
                                              state, hps)

  return init_all, advance_all


def sweep(algorithm: Algorithm, problem: PyTree, *, seeds: Sequence[int] | np.ndarray,
          hp: Mapping[str, Any], num_steps: int, record_every: int = 1,
          chunk_steps: int | None = None, checkpoint_dir: str | None = None,
          meta: Mapping[str, Any] | None = None, devices: Sequence[jax.Device] | None = None,
          on_chunk: Callable[[ChunkInfo], None] | None = log_progress,
          restart: bool = False) -> SweepResult:
  r"""Runs ``algorithm`` for every seed and every point of the hyperparameter grid.

  Run :math:`(s, g)` is ``run(algorithm, key(seeds[s]), problem, hp[g])``: the same key for every grid
  point of a seed (common random numbers, so differences across the grid are not seed noise).

  Args:
    algorithm: the :class:`~jaxopt_lab.engine.Algorithm`.
    problem: the problem pytree, shared by all runs (replicated on every device, not per run).
    seeds: integer seeds, one root key ``jax.random.key(seed)`` each.
    hp: traced hyperparameters: a scalar is fixed for all runs, a 1-D list is a grid axis. Floats are
      cast to the problem's floating dtype (JAX's default if it has none), integers to int32.
    num_steps: steps per run (a multiple of ``record_every``).
    record_every: steps between metric records.
    chunk_steps: steps per chunk (a multiple of ``record_every``); default: the whole run in one chunk.
    checkpoint_dir: if given, the batched state is saved after every chunk, and an existing
      checkpoint of the same sweep there is resumed from. "The same" is checked by a fingerprint:
      seeds, grid, fixed values and schedule, a SHA-256 of the problem's arrays, the algorithm's name
      and static settings (bound partial arguments, captured closure values), the library's version
      and source hash (git revision recorded). Any difference raises
      :class:`~jaxopt_lab.engine.checkpoint.CheckpointMismatch` naming it; a corrupted latest
      checkpoint falls back to the previous one kept, with a warning. The directory is locked
      (``fcntl``) while the sweep runs: a second sweep on it fails at once.
    meta: extra JSON-serialisable description stored with the checkpoints (e.g. the problem's config);
      resuming with a different one is refused.
    devices: devices to shard the runs over (default: all of ``jax.devices()``).
    on_chunk: callback after each chunk (default: log a progress line); None for silence.
    restart: delete the checkpoints already in ``checkpoint_dir`` and start over.

  Returns:
    A :class:`SweepResult` on the host.

  Example:
    >>> res = sweep(alg, problem, seeds=range(64), hp={"eta": 0.1, "alpha": [0.1, 0.3]},
    ...             num_steps=1000, record_every=10)
    >>> res.metrics["error"].shape
    (64, 2, 100)
  """
  seeds = check_seeds(seeds)
  chunk_steps = num_steps if chunk_steps is None else chunk_steps
  check_schedule(num_steps, record_every, chunk_steps)
  algorithm.validate_hyperparams(hp)
  grid, fixed = _as_grid(hp)
  dtype = _float_dtype(problem)
  check_finite_problem(problem)
  devices = list(jax.devices() if devices is None else devices)
  if not devices or not all(isinstance(d, jax.Device) for d in devices):
    raise ValueError(f"devices must be a non-empty list of jax devices, got {devices!r}")

  # Flatten (seed, *grid) into one batch axis, padded to a multiple of the device count.
  points = list(itertools.product(range(len(seeds)), *(range(len(a)) for a in grid.values())))
  num_runs = len(points)
  padded = math.ceil(num_runs / len(devices)) * len(devices)
  points += [points[-1]] * (padded - num_runs)
  flat_seeds = np.array([seeds[p[0]] for p in points])
  flat_hp = {name: np.array([axis[p[i + 1]] for p in points]) for i, (name, axis) in enumerate(grid.items())}

  mesh = Mesh(np.array(devices), ("runs",))
  batch = NamedSharding(mesh, PartitionSpec("runs"))
  replicated = NamedSharding(mesh, PartitionSpec())
  problem_dev = jax.tree.map(lambda x: _sharded(np.asarray(x), replicated), problem)
  hp_dev = {k: _sharded(_cast(v, dtype), batch) for k, v in flat_hp.items()}
  seeds_dev = _sharded(flat_seeds, batch)

  # Fixed hyperparameters travel as replicated arguments, not constants: new values, no recompile.
  fixed_dev = {k: _sharded(_cast(np.asarray(v), dtype), replicated) for k, v in fixed.items()}

  init_all, advance_all = _compiled(algorithm, record_every, tuple(devices))

  plan = _chunk_plan(num_steps, chunk_steps)
  num_records = num_steps // record_every
  abstract_state = jax.eval_shape(init_all, seeds_dev, problem_dev, hp_dev, fixed_dev)
  abstract_metrics = jax.eval_shape(functools.partial(advance_all, num_records=1), abstract_state,
                                    problem_dev, hp_dev, fixed_dev)[1]
  metrics = {k: np.zeros((padded, num_records), v.dtype) for k, v in abstract_metrics.items()}

  checkpointer = None
  if checkpoint_dir is not None:  # before compiling: a wrong directory fails fast
    description = {
        "algorithm": {"name": algorithm.name, "init": ckpt.describe(algorithm.init),
                      "step": ckpt.describe(algorithm.step)},
        "problem": ckpt.tree_digest(problem), "code": ckpt.code_fingerprint(),
        "seeds": seeds.tolist(), "grid": {k: v.tolist() for k, v in grid.items()}, "fixed": fixed,
        "num_steps": num_steps, "record_every": record_every, "chunk_steps": chunk_steps,
        "meta": dict(meta or {}), "num_devices": len(devices)}
    checkpointer = ckpt.SweepCheckpointer(checkpoint_dir, description, restart=restart)
  try:
    return _run_chunks(init_all, advance_all, checkpointer, plan, seeds, grid, fixed, metrics,
                       seeds_dev, problem_dev, hp_dev, fixed_dev, batch, num_runs, num_steps,
                       record_every, on_chunk, checkpoint_dir)
  finally:
    if checkpointer is not None:
      checkpointer.close()


def _run_chunks(init_all, advance_all, checkpointer, plan, seeds, grid, fixed, metrics, seeds_dev,
                problem_dev, hp_dev, fixed_dev, batch, num_runs, num_steps, record_every, on_chunk,
                checkpoint_dir) -> SweepResult:
  """The compiled part of :func:`sweep`: init (or restore), then the chunks, then the host result."""
  state = init_all(seeds_dev, problem_dev, hp_dev, fixed_dev)
  impls = ckpt.key_impls(state)
  first_chunk, resumed = 0, None
  if checkpointer is not None:
    found = checkpointer.restore_latest({"state": ckpt.to_host(state), "metrics": metrics})
    if found is not None:
      last, snap = found
      state = ckpt.rewrap_keys(jax.tree.map(lambda x: _sharded(np.asarray(x), batch), snap["state"]),
                               impls)
      metrics = {k: np.array(v) for k, v in snap["metrics"].items()}
      first_chunk = resumed = last + 1
      logging.info("resuming sweep from chunk %d/%d in %s", first_chunk, len(plan), checkpoint_dir)

  record = sum(plan[:first_chunk]) // record_every
  t_start, steps_done = time.perf_counter(), 0
  for c in range(first_chunk, len(plan)):
    n_rec = plan[c] // record_every
    state, chunk_metrics = advance_all(state, problem_dev, hp_dev, fixed_dev, n_rec)
    host = ckpt.to_host(chunk_metrics)
    for k, v in host.items():
      metrics[k][:, record:record + n_rec] = v
    record += n_rec
    steps_done += plan[c]
    diverged_at = ckpt.to_host(state.diverged_at)
    if checkpointer is not None:
      checkpointer.save(c, {"state": ckpt.to_host(state), "metrics": metrics})
    if on_chunk is not None:
      elapsed = time.perf_counter() - t_start
      rate = steps_done / elapsed if elapsed > 0 else float("inf")
      remaining = sum(plan[c + 1:])
      on_chunk(ChunkInfo(c, len(plan), sum(plan[:c + 1]), num_steps, rate, remaining / rate,
                         int(np.sum(diverged_at[:num_runs] >= 0)), num_runs))

  shape = (len(seeds), *(len(a) for a in grid.values()))
  unpad = lambda x: np.asarray(x)[:num_runs].reshape(shape + np.shape(x)[1:])
  final = jax.tree.map(unpad, ckpt.to_host(state))
  return SweepResult(
      seeds=seeds, grid=grid, fixed=fixed, steps=metrics.pop("step")[0],
      metrics={k: unpad(v) for k, v in metrics.items()}, diverged_at=final.diverged_at,
      final_state=final, resumed_from_chunk=resumed)


__all__ = ["ChunkInfo", "SweepResult", "check_finite_problem", "check_seeds", "log_progress", "sweep",
           "RunState"]
