r"""Shared helpers of the matrix sensing checks (Xiong, Ding & Du 2024, arXiv:2310.01769).

Registers no check. Runs go through :func:`jaxopt_lab.engine.sweep.sweep` (seeds x a grid of traced
hyperparameters, the problem shared un-batched); rates are fitted on the host with
:mod:`jaxopt_lab.fitting` on windows that stop above the float64 round-off floor of
:math:`|\cdot|_F^2` (about 1e-29 for these sizes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab import fitting
from jaxopt_lab.engine.algorithm import Algorithm
from jaxopt_lab.engine.sweep import SweepResult, sweep
from jaxopt_lab.matrix_sensing import SensingProblem, make_problem, sensing_op
from theory_checks import registry

PAPER = "Xiong, Ding & Du 2024 (arXiv:2310.01769)"
ETA = 0.1
# Squared errors below this are within ~1e7 of the float64 floor: fits stop here.
FLOOR = 1e-22


def problem(*, seed: int, n: int, rank: int, m: int | None = None, kappa: float = 1.0,
            symmetric: bool = True) -> SensingProblem:
  """A float64 problem drawn from the check's seed offset ``seed`` (role "problem"): the truth and
  operator every run of one check instance shares; another offset draws another instance."""
  return make_problem(registry.check_key(seed, "problem"), n1=n, rank=rank, num_measurements=m,
                      kappa=kappa, symmetric=symmetric, dtype=jnp.float64)


def run_seeds(seed: int, count: int) -> np.ndarray:
  """The ``count`` run seeds (init keys) of a check at seed offset ``seed``: consecutive integers
  from the offset's "run" stream, so two offsets share no run key (up to a 2^-31 coincidence)."""
  base = registry.check_seed(seed, "run") % (2**31 - 2**16)
  return base + np.arange(count)


def run_sweep(algorithm: Algorithm, prob: SensingProblem, *, seed: int, seeds: int,
              hp: Mapping[str, Any], num_steps: int, record_every: int) -> SweepResult:
  """``sweep`` over the ``seeds`` run seeds of offset ``seed`` (:func:`run_seeds`) and the grid in
  ``hp``, silently."""
  return sweep(algorithm, prob, seeds=run_seeds(seed, seeds), hp=dict(hp), num_steps=num_steps,
               record_every=record_every, on_chunk=None)


def window_fit(t: np.ndarray, err: np.ndarray, *, t_min: float = 0.0, t_max: float = np.inf,
               err_max: float = np.inf, floor: float = FLOOR, late: float = 1.0) -> fitting.LineFit:
  """Log-linear fit of ``err`` vs ``t`` on ``t_min <= t <= t_max``, ``floor <= err <= err_max``.

  ``late < 1`` keeps only the last ``late`` fraction (in time) of that window: the asymptotic rate,
  once faster modes are gone. Returns a fit of NaNs when fewer than 3 records remain (a check then
  fails).
  """
  t = np.asarray(t, np.float64)
  err = np.asarray(err, np.float64)
  sel = (t >= t_min) & (t <= t_max) & (err >= floor) & (err <= err_max) & np.isfinite(err)
  if sel.sum() >= 3 and late < 1.0:
    lo, hi = t[sel].min(), t[sel].max()
    sel &= t >= hi - late * (hi - lo)
  if sel.sum() < 3:
    return fitting.LineFit(np.nan, np.nan, np.nan)
  return fitting.loglinear_rate(t[sel], err[sel])


def horizon(alphas: Sequence[float], record_every: int, factor: float = 40.0) -> int:
  """``factor / (ETA alpha_min^2)`` steps rounded up to a multiple of ``record_every``.

  The plateau of small-init GD lasts about ``1 / (ETA alpha^2)`` steps; 40 of them put the window
  ``[T/2, T]`` deep in the asymptotic regime (the fact sheet's horizon).
  """
  steps = factor / (ETA * float(np.min(alphas)) ** 2)
  return int(np.ceil(steps / record_every)) * record_every


def loglog_fit(t: np.ndarray, err: np.ndarray, *, t_min: float,
               t_max: float = np.inf) -> fitting.LineFit:
  """Fit of log ``err`` vs log ``t`` on ``t_min <= t <= t_max``."""
  t = np.asarray(t, np.float64)
  sel = (t >= t_min) & (t <= t_max)
  return fitting.loglog_slope(t[sel], np.asarray(err, np.float64)[sel])


def worst(values: Sequence[float], target: float) -> float:
  """The value farthest from ``target`` (NaN if any is NaN): a check passes only if all do."""
  v = np.asarray(values, np.float64)
  if v.size == 0 or np.any(~np.isfinite(v)):
    return float("nan")
  return float(v[np.argmax(np.abs(v - target))])


def rounded(x: Any, digits: int = 5) -> Any:
  """``x`` as JSON-friendly floats with ``digits`` significant digits (nested lists kept)."""
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    return float(f"{float(arr):.{digits}g}")
  return [rounded(a, digits) for a in arr]


def error_figure(title: str, curves: Sequence[tuple[str, np.ndarray, np.ndarray]], *,
                 loglog: bool = False) -> Figure:
  """A small figure of squared error vs step, log scale (``loglog`` for power laws)."""
  fig = Figure(figsize=(4.5, 3.2), tight_layout=True)
  ax = fig.subplots()
  for label, t, err in curves:
    t = np.asarray(t, np.float64)
    err = np.maximum(np.asarray(err, np.float64), 1e-32)
    (ax.loglog if loglog else ax.semilogy)(t, err, label=label, lw=1.2)
  ax.set_xlabel("step t")
  ax.set_ylabel(r"$|M_t - M^*|_F^2$")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  return fig


def psd_target_problem(*, seed: int, n: int, rank: int, m: int | None) -> SensingProblem:
  r"""A PSD truth :math:`U\mathrm{diag}(\sigma)U^\top` under an *unsymmetrized* Gaussian operator.

  The symmetrized operator of ``make_problem(symmetric=True)`` cannot see the antisymmetric part of
  :math:`FG^\top`, so an asymmetric fit of a PSD target needs the general operator (in MF both are
  the identity).
  """
  prob = problem(seed=seed, n=n, rank=rank, m=m, symmetric=False)
  m_psd = (prob.u * prob.sigma[None, :]) @ prob.u.T
  y = None if m is None else sensing_op(prob, m_psd)
  return prob._replace(m_star=m_psd, v=prob.u, y=y)
