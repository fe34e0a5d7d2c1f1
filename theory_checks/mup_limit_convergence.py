r"""Claim 4: finite muP networks converge to the exact infinite-width limit at rate :math:`n^{-1/2}`.

Yang & Hu 2021 (arXiv:2011.14522), Section 6: a 1-hidden-layer muP network trained by SGD tends to the
limit computed by the P/Q recursion (linear activation) or the Gaussian expectation of the particle
recursion (tanh), with :math:`O(n^{-1/2})` fluctuations (the fact sheet measured -0.51 over
:math:`n = 2^6..2^{16}`, :math:`\sqrt{n}\,\mathrm{RMS} \approx 0.29` stable).

Measured: :math:`d = d_o = 1`, three training points, minibatch SGD (batch 2, 10 steps,
:math:`\eta = 1/4`, squared loss; short of convergence, since every width shares a linear
model's minimizer), two evaluation inputs; the RMS over seeds and evaluation inputs of
:math:`f_n - f_\infty` after the last step, and its width exponent. Linear: finite networks sampled from
the limit (:func:`jaxopt_lab.mup.limits.linear_finite`, exactly the width-n network). Tanh: width-n
particle networks (:func:`~jaxopt_lab.mup.limits.finite_network`) vs the 2-D trapezoid limit.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab import fitting
from jaxopt_lab.mup import limits
from theory_checks import mup_common as common
from theory_checks import registry
from theory_checks.registry import Measurement, register

PRESETS = {
    "quick": dict(widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=256),
    "full": dict(widths=tuple(2 ** k for k in range(6, 17)), seeds=400),
}
X = np.array([[1.0], [-0.5], [0.3]])
Y = np.array([[1.0], [0.5], [-0.4]])
X_EVAL = np.array([[0.7], [-1.0]])
LR, STEPS, BATCH = 0.25, 10, 2  # short of convergence: a linear net's minimizer is width-free


def batches(seed: int = 0) -> jax.Array:
  return limits.sgd_batches(registry.check_key(seed, "batches"), 3, STEPS, BATCH)


@functools.lru_cache(maxsize=16)
def _measure(preset_name: str, activation: str, seed: int) -> dict:
  cfg = PRESETS[preset_name]
  b = batches(seed)
  max_w = max(cfg["widths"])
  if activation == "identity":
    f_inf = limits.linear_limit(X, Y, b, X_EVAL, lr=LR).f[-1]
    finite = lambda key, n: limits.linear_finite(key, n, X, Y, b, X_EVAL, lr=LR).f[-1]
  else:
    f_inf = limits.nonlinear_limit(X, Y, b, X_EVAL, lr=LR, activation=activation, h=0.05).f[-1]
    finite = lambda key, n: limits.finite_network(key, n, X, Y, b, X_EVAL, lr=LR,
                                                  activation=activation, max_width=max_w).f[-1]
  keys = jax.random.split(registry.check_key(seed, f"init/{activation}"), cfg["seeds"])
  widths = jnp.asarray(cfg["widths"], jnp.float64)
  # Widths traced (Bartlett Gram matrices; padded particles): one compile, seeds mapped in batches.
  per_width = jax.jit(lambda n: jax.lax.map(lambda k: finite(k, n), keys, batch_size=64))
  rms = np.array([float(jnp.sqrt(jnp.mean(jnp.square(per_width(n) - f_inf[None])))) for n in widths])
  fit = fitting.loglog_slope(cfg["widths"], rms)
  return dict(widths=np.array(cfg["widths"]), rms=rms, slope=fit.slope, r2=fit.r2,
              f_inf=np.asarray(f_inf).ravel())


def _result(m: dict, title: str) -> Measurement:
  fig = Figure(figsize=(4.5, 3.2), tight_layout=True)
  ax = fig.subplots()
  ax.loglog(m["widths"], m["rms"], "o-", label=f"RMS |f_n - f_inf| (p={m['slope']:+.3f})")
  ax.loglog(m["widths"], m["rms"][0] * np.sqrt(m["widths"][0] / m["widths"]), "k:", label="n^-1/2")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("width n")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  details = {"widths": m["widths"].tolist(), "rms": common.rounded(m["rms"]),
             "sqrt(n) * rms": common.rounded(m["rms"] * np.sqrt(m["widths"])),
             "r2": common.rounded(m["r2"]), "f_inf": common.rounded(m["f_inf"], 10)}
  return Measurement(value=float(m["slope"]), details=details, figure=fig)


@register(
    id="mup.limit_convergence_linear", paper=common.PAPER,
    claim="linear 1-hidden-layer muP nets under minibatch SGD -> the exact P/Q limit; width exponent "
          "of the RMS error",
    predicted="-0.5", band=(-0.6, -0.4))
def linear(preset_name: str, seed: int) -> Measurement:
  return _result(_measure(preset_name, "identity", seed), "linear: finite widths -> limit")


@register(
    id="mup.limit_convergence_tanh", paper=common.PAPER,
    claim="tanh 1-hidden-layer muP nets under minibatch SGD -> the exact limit (2-D trapezoid "
          "quadrature); width exponent of the RMS error",
    predicted="-0.5", band=(-0.6, -0.4))
def tanh(preset_name: str, seed: int) -> Measurement:
  return _result(_measure(preset_name, "tanh", seed), "tanh: finite widths -> limit")
