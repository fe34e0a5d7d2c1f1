"""Least-squares fits of rates and exponents, the measurements theory checks compare with papers.

Host-side (NumPy, float64): these act on recorded metric traces after a run, never inside one.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class LineFit(NamedTuple):
  """``y ~ slope * x + intercept`` and its coefficient of determination ``r2``."""

  slope: float
  intercept: float
  r2: float


def fit_line(x: ArrayLike, y: ArrayLike) -> LineFit:
  r"""Ordinary least squares line through ``(x, y)``.

  .. math:: \min_{a,b} \sum_i (y_i - a x_i - b)^2, \qquad R^2 = 1 - SS_{res}/SS_{tot}.

  Raises ``ValueError`` for fewer than 3 points, mismatched shapes or non-finite values.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"fit_line needs two 1-D arrays of one shape, got {x.shape} and {y.shape}")
  if x.size < 3:
    raise ValueError(f"fit_line needs at least 3 points, got {x.size}")
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
    raise ValueError("fit_line got non-finite values")
  slope, intercept = np.polyfit(x, y, 1)
  ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
  ss_tot = float(np.sum((y - y.mean()) ** 2))
  r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
  return LineFit(float(slope), float(intercept), r2)


def loglog_slope(x: ArrayLike, y: ArrayLike) -> LineFit:
  r"""Power-law exponent: the fit of :math:`\log y = p \log x + c`; ``slope`` is ``p``.

  Used for rates in a scale (error vs width, error vs time): :math:`y \propto x^p`.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if np.any(x <= 0) or np.any(y <= 0):
    raise ValueError("loglog_slope needs positive x and y")
  return fit_line(np.log(x), np.log(y))


def loglinear_rate(t: ArrayLike, y: ArrayLike) -> LineFit:
  r"""Linear-convergence rate: the fit of :math:`\log y = -\rho t + c`; ``slope`` is ``-rho``.

  A sequence converging like :math:`y_t \propto e^{-\rho t}` gives ``slope = -rho`` and ``r2`` near 1.
  """
  y = np.asarray(y, np.float64)
  if np.any(y <= 0):
    raise ValueError("loglinear_rate needs positive y")
  return fit_line(np.asarray(t, np.float64), np.log(y))
