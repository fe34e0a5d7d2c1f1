r"""Shared helpers of the muP checks (Yang & Hu 2021, arXiv:2011.14522; TP5, arXiv:2203.03466).

Registers no check. Coordinate checks go through :func:`jaxopt_lab.mup.coord_check.coord_check`, whose
compiled program depends only on the shapes, so the muP, NTP, SP and random-parametrization checks of
one preset share their compilations.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxopt_lab.mup.parametrization import Task
from theory_checks import registry

PAPER = "Yang & Hu 2021 (arXiv:2011.14522)"
PAPER_TP5 = "Yang et al. 2022, Tensor Programs V (arXiv:2203.03466)"

# The fact sheet's coordinate check: 2-hidden-layer tanh MLP, d = 1, SGD steps 1..T, eta = 1, squared
# loss (T = 3 costs no more than T = 1 on the quick preset: the compilations dominate). Four inputs on [-1, 1] with the odd target sin(2x): with a constant target the odd network's
# first-order update cancels between x and -x and the check would measure a fluctuation.
COORD = {
    "quick": dict(widths=(64, 128, 256, 512, 1024), seeds=16, num_steps=3),
    "full": dict(widths=(128, 256, 512, 1024, 2048, 4096), seeds=32, num_steps=3),
}


def seeds(seed: int, role: str, count: int) -> range:
  """``count`` consecutive integer network seeds for ``role`` at check seed offset ``seed``
  (:func:`theory_checks.registry.check_seed`; offsets give unrelated ranges)."""
  base = registry.check_seed(seed, role)
  return range(base, base + count)


def coord_task() -> Task:
  """Four inputs x in {-1, -1/3, 1/3, 1} (d = 1) with targets sin(2x), float64."""
  x = jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float64)[:, None]
  return Task(x, jnp.sin(2.0 * x))


def rounded(x: Any, digits: int = 4) -> Any:
  """``x`` as JSON-friendly floats with ``digits`` significant digits (nested lists kept)."""
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    v = float(arr)
    return v if not np.isfinite(v) else float(f"{v:.{digits}g}")
  return [rounded(a, digits) for a in arr]


def worst(values, target: float) -> float:
  """The value farthest from ``target`` (NaN if any is NaN): a check passes only if all do."""
  v = np.asarray(values, np.float64).ravel()
  if v.size == 0 or np.any(~np.isfinite(v)):
    return float("nan")
  return float(v[np.argmax(np.abs(v - target))])
