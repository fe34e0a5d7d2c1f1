"""Checkpoints of a sweep's batched state: the only module of the lab that imports orbax.

A checkpoint holds the engine's batched :class:`~jaxopt_lab.engine.run.RunState` (leading batch axis),
the metrics recorded so far, and the index of the next chunk. PRNG keys are stored as their raw key
data and re-wrapped on restore, so a restored state is bit-for-bit the saved one. Next to the
checkpoints, ``sweep.json`` describes the sweep that wrote them; resuming a different sweep into the
same directory is refused instead of silently mixing results.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

PyTree = Any
_META = "sweep.json"


def _is_key(x: Any) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_host(tree: PyTree) -> PyTree:
  """Copies a pytree to host NumPy arrays, keys as raw key data, gathering across hosts if needed."""
  def one(x):
    if _is_key(x):
      x = jax.random.key_data(x)
    if jax.process_count() > 1 and isinstance(x, jax.Array) and not x.is_fully_addressable:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)
  return jax.tree.map(one, tree)


def key_impls(tree: PyTree) -> list[Any]:
  """The PRNG implementation of every leaf of ``tree`` that is a key (None for other leaves)."""
  return [jax.random.key_impl(x) if _is_key(x) else None for x in jax.tree.leaves(tree)]


def rewrap_keys(tree: PyTree, impls: list[Any]) -> PyTree:
  """Inverse of the key part of :func:`to_host`: raw key data back to typed keys where ``impls`` says."""
  leaves, treedef = jax.tree.flatten(tree)
  if len(leaves) != len(impls):
    raise ValueError(f"tree has {len(leaves)} leaves but {len(impls)} key markers")
  return treedef.unflatten([x if impl is None else jax.random.wrap_key_data(x, impl=impl)
                            for x, impl in zip(leaves, impls)])


@contextlib.contextmanager
def _quiet_orbax():
  """Orbax logs every save step at INFO through absl; keep the sweep's own progress lines readable."""
  level = logging.get_verbosity()
  logging.set_verbosity(min(level, logging.WARNING))  # absl: lower verbosity = quieter
  try:
    yield
  finally:
    logging.set_verbosity(level)


class SweepCheckpointer:
  """Saves and restores a sweep's host-side snapshot with orbax's CheckpointManager.

  Args:
    directory: where checkpoints live (created if missing; must be writable).
    meta: a JSON-serialisable description of the sweep; a directory that already holds checkpoints
      of a sweep with a different description raises ``ValueError`` on construction.
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory: str, meta: dict[str, Any], max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    try:
      os.makedirs(self.directory, exist_ok=True)
    except OSError as e:
      raise ValueError(f"checkpoint directory {self.directory} cannot be created: {e}") from None
    if not os.access(self.directory, os.W_OK):
      raise ValueError(f"checkpoint directory {self.directory} is not writable")
    meta = json.loads(json.dumps(meta))  # normalise tuples to lists for the comparison
    meta_path = os.path.join(self.directory, _META)
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        old = json.load(f)
      if old != meta:
        diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        raise ValueError(
            f"{self.directory} holds checkpoints of a different sweep (differs in {diff}); "
            "use a new directory or delete the old one")
    elif jax.process_index() == 0:
      with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    with _quiet_orbax():
      self._manager = ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    """Index of the last completed chunk saved, or None."""
    return self._manager.latest_step()

  def save(self, chunk: int, snapshot: PyTree) -> None:
    """Saves ``snapshot`` (a pytree of host arrays) as chunk ``chunk`` and waits until it is on disk."""
    with _quiet_orbax():
      self._manager.save(chunk, args=ocp.args.StandardSave(snapshot))
      self._manager.wait_until_finished()

  def restore(self, chunk: int, template: PyTree) -> PyTree:
    """Restores chunk ``chunk`` into host arrays shaped like ``template``."""
    abstract = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), template)
    with _quiet_orbax():
      return self._manager.restore(chunk, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    with _quiet_orbax():
      self._manager.close()
