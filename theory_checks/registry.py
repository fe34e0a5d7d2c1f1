"""The registry of theory checks that ``python -m launch.report`` runs.

A theory check measures one number (a fitted rate, a slope, a limit, a ratio) over several scales and
compares it with a paper's prediction inside a stated band. The check function only *measures*; the
registry decides pass or fail from the band, so no check can declare itself passed.

    @register(
        id="matrix_sensing.symmetric_overparam_slope",
        paper="Xiong, Ding & Du 2024 (arXiv:2310.01769)",
        claim="symmetric over-parameterized GD is sublinear: |E_t|^2 ~ t^-2",
        predicted="-2", band=(-2.1, -1.9))
    def check(preset: str, seed: int) -> Measurement:
      key = registry.check_key(seed, "problem")
      ...
      return Measurement(value=slope, details={"per_alpha": [...]}, figure=fig)

``preset`` is ``"quick"`` (CPU, seconds; what CI and the default report run) or ``"full"`` (the fact
sheet's sizes). ``seed`` is the seed offset (0 by default; ``python -m launch.report --seeds=K`` runs
0..K-1): every random draw of a check (problem, data, initialization, run keys) derives from it
through :func:`check_key` / :func:`check_seed`, so offsets give independent instances of the same
claim and no module holds a seed constant of its own. Checks run in float64: the report enables
``jax_enable_x64`` before running any.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

PRESETS = ("quick", "full")


@dataclasses.dataclass(frozen=True)
class Measurement:
  """What a check measured.

  Attributes:
    value: the measured number compared with the band.
    details: further measured numbers worth reporting (JSON-serialisable: floats, ints, strings, lists).
    figure: an optional matplotlib Figure the report saves next to report.md.
  """

  value: float
  details: dict[str, Any] = dataclasses.field(default_factory=dict)
  figure: Any = None


@dataclasses.dataclass(frozen=True)
class Check:
  """A registered claim: where it comes from, what theory predicts, and the band it must land in."""

  id: str
  paper: str
  claim: str
  predicted: str
  band: tuple[float, float]
  fn: Callable[[str, int], Measurement]

  def __post_init__(self):
    lo, hi = self.band
    if not lo <= hi:
      raise ValueError(f"check {self.id}: empty band {self.band}")


@dataclasses.dataclass(frozen=True)
class Result:
  """A check's outcome in a report."""

  check: Check
  preset: str
  measured: float
  passed: bool
  seconds: float
  details: dict[str, Any]
  figure: Any = None
  error: str | None = None
  seed: int = 0

  def row(self) -> dict[str, Any]:
    """A JSON-serialisable summary (the figure is written separately)."""
    return {
        "id": self.check.id, "paper": self.check.paper, "claim": self.check.claim,
        "predicted": self.check.predicted, "band": list(self.check.band), "preset": self.preset,
        "seed": self.seed, "measured": self.measured, "passed": self.passed,
        "seconds": round(self.seconds, 3), "details": self.details, "error": self.error,
    }


def strict_max(values: Any) -> float:
  """``max(values)``, or NaN (a failed check) if there are none or any is non-finite."""
  return _strict(values, max)


def strict_min(values: Any) -> float:
  """``min(values)``, or NaN (a failed check) if there are none or any is non-finite."""
  return _strict(values, min)


def _strict(values: Any, reduce: Callable[[list[float]], float]) -> float:
  flat = [float(v) for v in np.ravel(np.asarray(values, dtype=np.float64))]
  if not flat or not all(math.isfinite(v) for v in flat):
    return math.nan
  return reduce(flat)


def check_seed(seed: int, role: str) -> int:
  """A non-negative 31-bit integer seed for one ``role`` ("problem", "data", "init", ...) of a check
  run at seed offset ``seed``: distinct roles and offsets give unrelated streams (CRC32 of the role
  mixed with the offset by NumPy's SeedSequence)."""
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed: expected a non-negative integer offset, got {seed!r}")
  ss = np.random.SeedSequence([int(seed), zlib.crc32(role.encode())])
  return int(ss.generate_state(1, np.uint32)[0] >> 1)


def check_key(seed: int, role: str):
  """A typed ``jax.random.key`` for one ``role`` of a check at seed offset ``seed``
  (:func:`check_seed`)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.random.key(check_seed(seed, role))


_REGISTRY: dict[str, Check] = {}


def register(*, id: str, paper: str, claim: str, predicted: str,  # pylint: disable=redefined-builtin
             band: tuple[float, float]
             ) -> Callable[[Callable[[str, int], Measurement]], Callable[[str, int], Measurement]]:
  """Decorator adding a check function to the registry under ``id`` (unique)."""

  def deco(fn: Callable[[str, int], Measurement]) -> Callable[[str, int], Measurement]:
    if id in _REGISTRY:
      raise ValueError(f"theory check {id!r} is registered twice")
    if "seed" not in inspect.signature(fn).parameters:
      raise TypeError(f"theory check {id!r}: its function must take (preset, seed): every random "
                      "draw derives from the seed offset")
    _REGISTRY[id] = Check(id, paper, claim, predicted, (float(band[0]), float(band[1])), fn)
    return fn

  return deco


def all_checks() -> list[Check]:
  """Every registered check, in registration order (import :mod:`theory_checks` first)."""
  return list(_REGISTRY.values())


def get(check_id: str) -> Check:
  """The check registered as ``check_id``; ``KeyError`` listing the known ids otherwise."""
  try:
    return _REGISTRY[check_id]
  except KeyError:
    raise KeyError(f"unknown theory check {check_id!r}; known: {sorted(_REGISTRY)}") from None


def run_check(check: Check, preset: str = "quick", seed: int = 0) -> Result:
  """Runs one check at seed offset ``seed``; pass iff the measured value is finite and inside the
  band.

  An exception inside the check is reported as a failed result carrying the error message, so one
  broken check never hides the others.
  """
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r}; choose one of {PRESETS}")
  check_seed(seed, "validate")
  t0 = time.perf_counter()
  try:
    m = check.fn(preset, seed)
  except Exception as e:  # pylint: disable=broad-except
    return Result(check, preset, math.nan, False, time.perf_counter() - t0, {}, None,
                  f"{type(e).__name__}: {e}", seed)
  value = float(m.value)
  lo, hi = check.band
  passed = math.isfinite(value) and lo <= value <= hi
  return Result(check, preset, value, passed, time.perf_counter() - t0, dict(m.details), m.figure,
                None, seed)
