"""The algorithm protocol every experiment of the lab is written in.

An algorithm is a pair of pure functions

    init(key, problem, **hp) -> State
    step(state, problem, **hp) -> (State, metrics)

where ``problem`` is a pytree shared by every run of a sweep (a sensing operator, a data set), ``State``
is a pytree whose shapes and dtypes never change from step to step, ``metrics`` is a dict of scalars, and
``hp`` are *traced* hyperparameters (learning rate, init scale, ...): plain numbers that the engine may
vmap over. Static hyperparameters (ranks, widths, counts, choices of function) are bound beforehand
with ``functools.partial`` and swept in Python, one compile per shape.

Each function declares the traced hyperparameters it reads as keyword-only arguments; the engine routes
to each only the ones it names, and rejects names that neither declares (a misspelt override fails
before compiling).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

PyTree = Any
Metrics = dict[str, jax.Array]


class Algorithm(NamedTuple):
  """An ``init``/``step`` pair and the names of the traced hyperparameters they take.

  Attributes:
    name: a short identifier used in logs and result tables.
    init: ``init(key, problem, **hp) -> State``.
    step: ``step(state, problem, **hp) -> (State, metrics)``; metrics is a dict of scalar arrays
      describing the state *after* the update (so the last record of a run describes the final state).
  """

  name: str
  init: Callable[..., PyTree]
  step: Callable[..., tuple[PyTree, Metrics]]

  @property
  def hyperparams(self) -> tuple[str, ...]:
    """Traced hyperparameter names read by ``init`` or ``step`` (keyword-only arguments)."""
    return tuple(sorted(set(_keyword_only(self.init)) | set(_keyword_only(self.step))))

  def call_init(self, key: jax.Array, problem: PyTree, hp: Mapping[str, Any]) -> PyTree:
    """``init`` with the hyperparameters it declares taken from ``hp``."""
    return self.init(key, problem, **_select(self.init, hp))

  def call_step(self, state: PyTree, problem: PyTree, hp: Mapping[str, Any]) -> tuple[PyTree, Metrics]:
    """``step`` with the hyperparameters it declares taken from ``hp``."""
    return self.step(state, problem, **_select(self.step, hp))

  def validate_hyperparams(self, hp: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming unknown or missing traced hyperparameters."""
    known = set(self.hyperparams)
    unknown = sorted(set(hp) - known)
    if unknown:
      raise ValueError(
          f"{self.name}: unknown hyperparameter(s) {unknown}; this algorithm takes {sorted(known)}")
    missing = sorted(
        name for fn in (self.init, self.step) for name, p in _keyword_only(fn).items()
        if p.default is inspect.Parameter.empty and name not in hp)
    if missing:
      raise ValueError(f"{self.name}: missing hyperparameter(s) {missing}")


def _unwrap(fn: Callable[..., Any]) -> Callable[..., Any]:
  while hasattr(fn, "__wrapped__"):
    fn = fn.__wrapped__
  return fn


def _keyword_only(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
  sig = inspect.signature(fn)  # functools.partial keywords appear as keyword-only with defaults
  bound = getattr(fn, "keywords", {}) or {}
  return {n: p for n, p in sig.parameters.items()
          if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in bound}


def _select(fn: Callable[..., Any], hp: Mapping[str, Any]) -> dict[str, Any]:
  names = _keyword_only(fn)
  return {k: v for k, v in hp.items() if k in names}
