"""Shared settings and helpers of the neural-collapse theory checks (registers no check).

The fact sheet's calibration setting: K = 4 classes, n = 10 samples per class, d = 10,
lambda_W = sqrt(2), H_0 = Gaussian class means + N(0, 1) noise (``gaussian_class_features``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import jax
import numpy as np

PAPER = "Tirer, Huang & Niles-Weed, Perturbation Analysis of Neural Collapse, ICML 2023 (arXiv:2210.16658)"
K, N_PER_CLASS, D = 4, 10, 10
LAMBDA_W = math.sqrt(2.0)


def instance_keys(seed: int, role: str, count: int) -> list:
  """``count`` independent typed keys for one ``role`` ("features", "frame", ...) of a check at seed
  offset ``seed`` (:func:`theory_checks.registry.check_key`, split): every random draw of the
  neural-collapse checks comes from these, so offsets give independent instances."""
  from theory_checks import registry  # pylint: disable=g-import-not-at-top
  return list(jax.random.split(registry.check_key(seed, role), count))


def require_x64() -> None:
  """Raises unless float64 is enabled: the bands (1e-12, 1e-10, 1e-6) are float64 statements."""
  if not jax.config.jax_enable_x64:
    raise RuntimeError("neural-collapse checks need jax_enable_x64 (the report enables it)")


def rounded(x, digits: int = 6):
  """JSON-friendly rounding of a float or an array (significant digits)."""
  arr = np.asarray(x, np.float64)
  fmt = lambda v: float(f"{v:.{digits}g}")
  if arr.ndim == 0:
    return fmt(float(arr))
  return [fmt(float(v)) for v in arr.ravel()]


def worst(values: Iterable[float], target: float) -> float:
  """The value farthest from ``target``; NaN (a failed check) if there are none or any is not finite."""
  v = np.asarray(list(values), np.float64)
  if v.size == 0 or not np.all(np.isfinite(v)):
    return math.nan
  return float(v[np.argmax(np.abs(v - target))])


def figure(title: str, xlabel: str, ylabel: str, curves: Iterable[tuple[str, np.ndarray, np.ndarray]],
           *, logx: bool = False, logy: bool = True, points: bool = False):
  """A small matplotlib Figure (no pyplot state) with one line per curve."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(4.5, 3.2), tight_layout=True)
  ax = fig.subplots()
  for label, x, y in curves:
    ax.plot(np.asarray(x), np.asarray(y), "o-" if points else "-", label=label, lw=1.2, ms=3)
  if logx:
    ax.set_xscale("log")
  if logy:
    ax.set_yscale("log")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  return fig
