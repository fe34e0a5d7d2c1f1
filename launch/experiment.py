"""From a config to a finished sweep in a workdir: validation, the sweep, and the results on disk.

Every experiment registers a builder (``launch/experiments/<name>.py``) that unpacks its ConfigDict into
plain keyword arguments for the library, validating every value before anything compiles. This module
holds no math.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxopt_lab.engine import Algorithm
from jaxopt_lab.engine import checkpoint as ckpt
from jaxopt_lab.engine.sweep import SEED_MAX, SweepResult, sweep
from launch import results


class ExperimentSpec(NamedTuple):
  """What a builder returns: everything the engine needs, no ConfigDict inside.

  Attributes:
    algorithm: the algorithm to sweep.
    problem: the shared problem pytree.
    hp: traced hyperparameters, scalars or 1-D grids.
    plot_metrics: metric names to plot against steps.
    log_y: metric names plotted on a log scale (exponential or power-law decay).
    log_x: metric names plotted against a log step axis (power laws in the step).
  """

  algorithm: Algorithm
  problem: Any
  hp: Mapping[str, Any]
  plot_metrics: Sequence[str] = ()
  log_y: Sequence[str] = ()
  log_x: Sequence[str] = ()


_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], ExperimentSpec]] = {}


def register_experiment(name: str):
  """Decorator registering ``build(config) -> ExperimentSpec`` under ``config.experiment == name``."""
  def deco(fn):
    _BUILDERS[name] = fn
    return fn
  return deco


def builder(name: str) -> Callable[[ml_collections.ConfigDict], ExperimentSpec]:
  """The builder of experiment ``name``; a ``ValueError`` naming the known ones otherwise."""
  from launch import experiments  # pylint: disable=g-import-not-at-top,unused-import
  if name not in _BUILDERS:
    raise ValueError(f"unknown experiment {name!r}; known: {sorted(_BUILDERS)}")
  return _BUILDERS[name]


def hp_from_config(hp: ml_collections.ConfigDict) -> dict[str, Any]:
  """Hyperparameters of a config: a 1-tuple or a number is fixed, a longer tuple is a grid axis."""
  out = {}
  for name, value in hp.items():
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not values:
      raise ValueError(f"config.hp.{name} is empty")
    for v in values:
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise ValueError(f"config.hp.{name} must hold finite numbers, got {value!r}")
    out[name] = values[0] if len(values) == 1 else np.asarray(values)
  return out


def require_positive(hp: Mapping[str, Any], names: Sequence[str], allow_zero: Sequence[str] = ()) -> None:
  """Raises ``ValueError`` if any listed hyperparameter is negative (or zero, unless allowed)."""
  for name in names:
    if name not in hp:
      continue
    values = np.atleast_1d(np.asarray(hp[name], float))
    bad = values[values < 0] if name in allow_zero else values[values <= 0]
    if bad.size:
      sign = "non-negative" if name in allow_zero else "positive"
      raise ValueError(f"hyperparameter {name} must be {sign}, got {bad.tolist()}")


# Files a run writes into its workdir (besides checkpoints/ and figures/): removed by ``restart``.
_WORKDIR_FILES = ("config.json", results.STATUS, *results.RESULT_FILES)


def check_sweep(s: ml_collections.ConfigDict) -> None:
  """Validates ``config.sweep`` (seeds and schedule) before anything is built, written or compiled."""
  for name, minimum in (("num_seeds", 1), ("first_seed", 0), ("num_steps", 1), ("record_every", 1),
                        ("chunk_steps", 0)):
    v = s[name]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
      raise ValueError(f"config.sweep.{name} must be >= {minimum} (an integer), got {v!r}")
  last = s.first_seed + s.num_seeds - 1
  if last > SEED_MAX:
    raise ValueError(f"config.sweep seeds {s.first_seed}..{last} must lie in [0, 2**31 - 1] (the key "
                     "space of jax.random.key in every precision mode; larger seeds would wrap onto "
                     "other seeds' keys)")
  if s.num_steps % s.record_every or (s.chunk_steps and s.chunk_steps % s.record_every):
    raise ValueError(f"config.sweep.num_steps ({s.num_steps}) and chunk_steps ({s.chunk_steps}) "
                     f"must be multiples of record_every ({s.record_every})")


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict, restart: bool = False) -> None:
  """Creates ``workdir`` and records the config; refuses a workdir holding another config's results.

  With ``restart`` the files of an earlier run (config, results, figures, checkpoints) are deleted
  first. The caller holds the workdir's lock. ``status.json`` is set to ``running`` before anything
  else is written, so an interrupted rerun never leaves results that look finished.
  """
  path = os.path.join(workdir, "config.json")
  if restart:
    for name in _WORKDIR_FILES:
      with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(workdir, name))
    for name in ("figures", "checkpoints"):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
  ckpt.remove_stale_temporaries(workdir)
  text = config.to_json_best_effort(sort_keys=True, indent=1)
  if os.path.exists(path):
    old = ckpt.read_json(path, "config file")
    if old != json.loads(text):
      raise ValueError(f"workdir {workdir} holds results of a different config (see {path}); "
                       "choose a new --workdir or pass --restart to delete them")
  results.mark_incomplete(workdir)
  if not os.path.exists(path):
    with ckpt.atomic_write(path) as f:
      f.write(text)


def _open_workdir(workdir: str) -> ckpt.DirectoryLock | None:
  """Creates ``workdir``, checks it is writable, and locks it (on the first host)."""
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ValueError(f"workdir {workdir} cannot be created: {e.strerror}") from None
  probe = os.path.join(workdir, f".write_probe.tmp-{os.getpid()}")
  try:
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"workdir {workdir} is not writable: {e.strerror}") from None
  return ckpt.DirectoryLock(workdir, "workdir") if jax.process_index() == 0 else None


def run_config(config: ml_collections.ConfigDict, workdir: str, restart: bool = False) -> SweepResult:
  """Validates ``config``, runs its sweep with checkpoints in ``workdir``, and writes the results.

  Every value (the sweep's seeds and schedule first) is validated before anything is written or
  compiled. The workdir is locked while the run lasts: a second launch on it fails at once with
  ``workdir W is in use by process P``. ``restart`` deletes an earlier run's files and checkpoints.
  """
  check_sweep(config.sweep)
  spec = builder(config.experiment)(config)  # validates every value; nothing compiled yet
  s = config.sweep
  lock = _open_workdir(workdir)
  try:
    if jax.process_index() == 0:
      prepare_workdir(workdir, config, restart=restart)
    logging.info("experiment %s: %s, %d seeds, grid %s", config.experiment, spec.algorithm.name,
                 s.num_seeds, {k: np.shape(v) for k, v in spec.hp.items()})
    res = sweep(spec.algorithm, spec.problem, seeds=np.arange(s.first_seed, s.first_seed + s.num_seeds),
                hp=spec.hp, num_steps=s.num_steps, record_every=s.record_every,
                chunk_steps=s.chunk_steps or None, checkpoint_dir=os.path.join(workdir, "checkpoints"),
                meta={"config": json.loads(config.to_json_best_effort(sort_keys=True))},
                restart=restart)
    if jax.process_index() == 0:  # every host holds the gathered results; one writes them
      results.write_all(res, workdir, plot_metrics=spec.plot_metrics, log_y=spec.log_y,
                        log_x=spec.log_x, experiment=config.experiment)
  finally:
    if lock is not None:
      lock.release()
  n_div = int(res.diverged.sum())
  logging.info("done: %d runs, %d diverged; results in %s", res.diverged.size, n_div, workdir)
  return res


def maybe_initialize_distributed(env: Mapping[str, str] | None = None) -> bool:
  """Joins a multi-host job when the environment describes one; returns whether it did.

  ``JAX_COORDINATOR_ADDRESS`` (with ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``) starts it explicitly;
  a SLURM or Open MPI job with several tasks is detected by ``jax.distributed.initialize`` itself.
  """
  env = os.environ if env is None else env
  if env.get("JAX_COORDINATOR_ADDRESS"):
    kw = {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"]}
    if "JAX_NUM_PROCESSES" in env:
      kw["num_processes"] = int(env["JAX_NUM_PROCESSES"])
    if "JAX_PROCESS_ID" in env:
      kw["process_id"] = int(env["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kw)
    return True
  if int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
    jax.distributed.initialize()
    return True
  return False
