"""Checkpoints of a sweep's batched state: the only module of the lab that imports orbax.

A checkpoint holds the engine's batched :class:`~jaxopt_lab.engine.run.RunState` (leading batch axis),
the metrics recorded so far, and the index of the next chunk. PRNG keys are stored as their raw key
data and re-wrapped on restore, so a restored state is bit-for-bit the saved one. Next to the
checkpoints, ``sweep.json`` describes the sweep that wrote them, including a fingerprint of the
problem's arrays, the algorithm's static settings and the library's code; resuming anything different
into the same directory is refused, naming what differs, instead of silently mixing results. A
checkpoint that cannot be read falls back to the previous one kept, with a warning.

Every file here is written to a temporary name and moved into place (:func:`atomic_write`), so a kill
at any moment leaves either the old file or the new one, never a truncated one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import types
from collections.abc import Iterator
from typing import IO, Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

PyTree = Any
_META = "sweep.json"
_LOCK = ".lock"
_RESTART_HINT = "pass restart=True to sweep (--restart on the launcher) to start over"


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
  """Opens a temporary file next to ``path``; on success fsyncs it and moves it onto ``path``.

  A kill at any moment leaves ``path`` either as it was or complete, never partly written. On an
  exception the temporary file is removed and ``path`` is left untouched.

  Example:
    >>> with atomic_write("/tmp/w/summary.csv", newline="") as f:
    ...   f.write("a,b\\n")
  """
  directory, name = os.path.split(os.path.abspath(path))
  tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
  try:
    with open(tmp, mode, **kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise


def remove_stale_temporaries(directory: str) -> None:
  """Deletes temporary files :func:`atomic_write` left behind in ``directory`` when a writer was killed."""
  with contextlib.suppress(OSError):
    for name in os.listdir(directory):
      if name.startswith(".") and ".tmp-" in name:
        with contextlib.suppress(OSError):
          os.remove(os.path.join(directory, name))


def read_json(path: str, what: str = "file") -> Any:
  """``json.load`` of ``path``; a truncated or malformed file raises a ``ValueError`` naming it."""
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno}, column "
                     f"{e.colno}); it was truncated or edited") from None
  except OSError as e:
    raise ValueError(f"{what} {path} cannot be read: {e.strerror}") from None


class DirectoryLock:
  """An exclusive ``fcntl`` lock on ``directory/.lock`` holding the owner's pid.

  A second holder (another process, or another lock in this one) fails at once with
  ``ValueError("<what> D is in use by process P")`` instead of waiting. The lock is released when
  :meth:`release` is called or the process dies, so a killed run never leaves a stale lock.
  """

  def __init__(self, directory: str, what: str = "directory"):
    self.path = os.path.join(directory, _LOCK)
    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      owner = os.read(self._fd, 64).decode(errors="replace").strip() or "unknown"
      os.close(self._fd)
      self._fd = None
      raise ValueError(f"{what} {directory} is in use by process {owner}") from None
    os.ftruncate(self._fd, 0)
    os.pwrite(self._fd, str(os.getpid()).encode(), 0)

  def release(self) -> None:
    """Releases the lock (idempotent)."""
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> DirectoryLock:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.release()


# --------------------------------------------------------------------------------------------------
# Fingerprints: what a checkpoint belongs to.


def tree_digest(tree: PyTree) -> str:
  """SHA-256 of a pytree's structure and of every leaf's dtype, shape and bytes (keys as key data)."""
  h = hashlib.sha256()
  leaves, treedef = jax.tree.flatten(to_host(tree))
  h.update(str(treedef).encode())
  for x in leaves:
    x = np.ascontiguousarray(x)
    h.update(f"{x.dtype.str}{x.shape}".encode())
    h.update(x.tobytes())
  return h.hexdigest()


def describe(obj: Any, _depth: int = 0) -> Any:
  """A JSON-serialisable description of an algorithm's static settings, stable across processes.

  Functions are described by their qualified name, bound ``functools.partial`` arguments, defaults and
  the values their closures capture (so ``central_path_algorithm(dt=0.1)`` and ``(dt=0.2)`` differ);
  arrays by their dtype, shape and a hash of their bytes; named tuples and dataclasses by their
  fields. A function's code is identified by its name (library code is covered by
  :func:`code_fingerprint`).
  """
  if _depth > 12:
    return "..."
  d = functools.partial(describe, _depth=_depth + 1)
  if obj is None or isinstance(obj, (bool, int, str)):
    return obj
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else repr(obj)
  if isinstance(obj, (np.ndarray, jax.Array, np.generic)):
    x = np.asarray(obj) if not _is_key(obj) else np.asarray(jax.random.key_data(obj))
    if x.size <= 8 and x.dtype.kind in "biuf":
      return {"array": x.tolist() if x.dtype.kind != "f" else [repr(float(v)) for v in x.ravel()],
              "dtype": x.dtype.str, "shape": list(x.shape)}
    return {"array_sha256": tree_digest(x), "dtype": x.dtype.str, "shape": list(x.shape)}
  if isinstance(obj, functools.partial):
    return {"partial": d(obj.func), "args": [d(a) for a in obj.args],
            "keywords": {k: d(v) for k, v in sorted(obj.keywords.items())}}
  if isinstance(obj, tuple) and hasattr(obj, "_fields"):
    return {"type": _qualname(type(obj)), "fields": {f: d(getattr(obj, f)) for f in obj._fields}}
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return {"type": _qualname(type(obj)),
            "fields": {f.name: d(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
  if isinstance(obj, (tuple, list)):
    return [d(x) for x in obj]
  if isinstance(obj, dict):
    return {str(k): d(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
  if isinstance(obj, types.FunctionType):
    out: dict[str, Any] = {"function": _qualname(obj)}
    if obj.__defaults__:
      out["defaults"] = [d(x) for x in obj.__defaults__]
    if obj.__kwdefaults__:
      out["kwdefaults"] = d(obj.__kwdefaults__)
    if obj.__closure__:
      cells = []
      for name, cell in zip(obj.__code__.co_freevars, obj.__closure__):
        try:
          cells.append([name, d(cell.cell_contents)])
        except ValueError:  # an empty cell (a name bound later)
          cells.append([name, None])
      out["closure"] = cells
    return out
  if hasattr(obj, "__wrapped__"):  # jax.jit, functools.wraps
    return {"wrapped": d(obj.__wrapped__)}
  if isinstance(obj, (type, types.BuiltinFunctionType, types.ModuleType)) or callable(obj):
    return {"callable": _qualname(obj)}
  try:
    return {"dtype": np.dtype(obj).str}
  except TypeError:
    pass
  text = repr(obj)
  return {"object": _qualname(type(obj)), "repr": text if " at 0x" not in text else None}


def _qualname(obj: Any) -> str:
  return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


@functools.cache
def code_fingerprint() -> dict[str, str | None]:
  """The library's version, a SHA-256 of its source files, and the git revision when known.

  Resuming compares the version and the source hash (any edit of the library's code changes the
  dynamics it may compute); the git revision is recorded for the record only, so a commit that
  touches nothing under ``jaxopt_lab/`` does not invalidate a checkpoint.
  """
  import jaxopt_lab  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.abspath(jaxopt_lab.__file__))
  h = hashlib.sha256()
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      if name.endswith(".py"):
        path = os.path.join(dirpath, name)
        h.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as f:
          h.update(f.read())
  revision = None
  with contextlib.suppress(OSError, subprocess.SubprocessError):
    out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                         timeout=10, check=False)
    revision = out.stdout.strip() or None if out.returncode == 0 else None
  return {"version": jaxopt_lab.__version__, "source_sha256": h.hexdigest(), "git_revision": revision}


# --------------------------------------------------------------------------------------------------
# Host copies and PRNG keys.


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


# Description keys compared on resume but not reported by their full value.
_COMPARED_CODE = ("version", "source_sha256")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """Names of the description entries that differ, one level into dicts (``code.source_sha256``)."""
  out = []
  for k in sorted(set(old) | set(new)):
    a, b = old.get(k), new.get(k)
    if a == b:
      continue
    if isinstance(a, dict) and isinstance(b, dict) and k != "meta":
      out += [f"{k}.{s}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
    else:
      out.append(k)
  return out


class CheckpointMismatch(ValueError):
  """Raised when a checkpoint directory holds checkpoints of a different sweep.

  Attributes:
    differs: the names of the description entries that differ (``problem``, ``algorithm.init``, ...).
  """

  def __init__(self, directory: str, differs: list[str]):
    self.differs = differs
    super().__init__(f"{directory} holds checkpoints of a different sweep (differs in {differs}); "
                     f"{_RESTART_HINT}, or use a new directory")


class SweepCheckpointer:
  """Saves and restores a sweep's host-side snapshot with orbax's CheckpointManager.

  Args:
    directory: where checkpoints live (created if missing; must be writable).
    meta: a JSON-serialisable description of the sweep (with its fingerprint); a directory that already
      holds checkpoints of a sweep with a different description raises :class:`CheckpointMismatch` on
      construction. A ``"code"`` entry is compared on ``version`` and ``source_sha256`` only.
    max_to_keep: how many recent checkpoints to keep (a corrupted latest one falls back to the next).
    restart: delete any checkpoints already in ``directory`` and start over.
  """

  def __init__(self, directory: str, meta: dict[str, Any], max_to_keep: int = 2,
               restart: bool = False):
    self.directory = os.path.abspath(directory)
    try:
      os.makedirs(self.directory, exist_ok=True)
    except OSError as e:
      raise ValueError(f"checkpoint directory {self.directory} cannot be created: {e.strerror}") from None
    if not os.access(self.directory, os.W_OK):
      raise ValueError(f"checkpoint directory {self.directory} is not writable")
    self._lock = None
    if jax.process_index() == 0:  # hosts of one job share the directory; the first one holds it
      self._lock = DirectoryLock(self.directory, "checkpoint directory")
    try:
      self._open(meta, max_to_keep, restart)
    except BaseException:
      self.close()
      raise

  def _open(self, meta: dict[str, Any], max_to_keep: int, restart: bool) -> None:
    meta = json.loads(json.dumps(meta))  # normalise tuples to lists for the comparison
    meta_path = os.path.join(self.directory, _META)
    if jax.process_index() == 0:
      remove_stale_temporaries(self.directory)
      if restart:
        for name in os.listdir(self.directory):
          if name != _LOCK:
            path = os.path.join(self.directory, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    has_checkpoints = any(n.isdigit() for n in os.listdir(self.directory))
    if os.path.exists(meta_path):
      old = read_json(meta_path, "checkpoint description")
      if not isinstance(old, dict):
        raise ValueError(f"checkpoint description {meta_path} is not a JSON object; {_RESTART_HINT}")
      comparable = lambda m: {**m, "code": {k: (m.get("code") or {}).get(k) for k in _COMPARED_CODE}}
      differs = _differences(comparable(old), comparable(meta))
      if differs:
        raise CheckpointMismatch(self.directory, differs)
    elif has_checkpoints:
      raise ValueError(f"{self.directory} holds checkpoints but no {_META} saying what they belong to; "
                       f"{_RESTART_HINT}")
    elif jax.process_index() == 0:
      with atomic_write(meta_path) as f:
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

  def restore_latest(self, template: PyTree) -> tuple[int, PyTree] | None:
    """The newest readable checkpoint as ``(chunk, snapshot)``, or None if there is none.

    A checkpoint that fails to restore (truncated, corrupted, wrong shapes) is logged as a warning,
    deleted, and the previous one kept is tried; if checkpoints exist but none can be read, a
    ``ValueError`` says so.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    for chunk in steps:
      try:
        return chunk, self.restore(chunk, template)
      except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore raise many kinds
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        logging.warning("checkpoint %d in %s is unreadable (%s: %s); falling back to the previous one",
                        chunk, self.directory, type(e).__name__, first)
        if jax.process_index() == 0:
          with _quiet_orbax(), contextlib.suppress(Exception):
            self._manager.delete(chunk)
    if steps:
      raise ValueError(f"no checkpoint in {self.directory} can be read (tried chunks {steps}); "
                       f"{_RESTART_HINT}")
    return None

  def close(self) -> None:
    """Closes the manager and releases the directory lock."""
    if getattr(self, "_manager", None) is not None:
      with _quiet_orbax():
        self._manager.close()
      self._manager = None
    if self._lock is not None:
      self._lock.release()
      self._lock = None
