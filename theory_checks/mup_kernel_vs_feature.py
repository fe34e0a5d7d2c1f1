r"""Claim 3 (kernel vs feature learning): one SGD step is linear in the learning rate only in NTP.

Yang & Hu 2021 (arXiv:2011.14522), Section 3 and 6: after one SGD step on :math:`(\xi_0, y_0)`, the
normalized function change :math:`g(\eta) = (f_1(\xi) - f_0(\xi)) / (\eta\chi_0)` at a test input is
:math:`-K(\xi, \xi_0)` for every :math:`\eta` in the kernel limit (NTP), but depends on :math:`\eta` in
the muP limit (features move: :math:`g(\eta) + K = O(\eta)`).

Measured on 1-hidden-layer tanh networks (:math:`d = d_o = 1`, :math:`\xi_0 = 1`, :math:`y_0 = 1`,
:math:`\xi = -1/2`, :math:`\eta \in \{1/8, 2\}`): the curvature
:math:`C(n) = \mathrm{mean}_{\text{seeds}}|g(2) - g(1/8)|` over widths, and its width exponent.
NTP: :math:`C \to 0`. For one hidden layer the first-order change of the NTK has mean zero (odd in the
readout weights) and the second- and third-order terms of :math:`f_1` are :math:`O(n^{-1})`, so
:math:`C \sim n^{-1}` (exponent -1). muP: :math:`C` tends to the exact limit's non-zero curvature
:math:`C_\infty` (computed by :func:`jaxopt_lab.mup.limits.nonlinear_limit`): compared at the two
largest widths in units of the seed mean's standard error (its fluctuation is :math:`O(n^{-1/2})`,
shrinking with the seeds; the bias of :math:`\mathbb{E}|g(2) - g(1/8)|` is :math:`O(n^{-1})`). The
fitted width exponent of :math:`C` (about 0) is in the details.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab import fitting
from jaxopt_lab.mup import limits
from jaxopt_lab.mup.parametrization import MLP, Scalings, forward, init_params, preset, shape_only
from theory_checks import mup_common as common
from theory_checks import registry
from theory_checks.registry import Measurement, register

ETAS = (0.125, 2.0)
PRESETS = {
    "quick": dict(widths=(64, 256, 1024, 4096), seeds=512),
    "full": dict(widths=(64, 256, 1024, 4096, 16384, 65536), seeds=2048),
}
X0, Y0, XI = 1.0, 1.0, -0.5


@functools.partial(jax.jit, static_argnames="shape_net")
def _g(scal: Scalings, keys: jax.Array, etas: jax.Array, *, shape_net: MLP) -> jax.Array:
  """(seeds, etas) values of (f_1(xi) - f_0(xi)) / (eta chi_0) after one SGD step on (x0, y0)."""
  x0 = jnp.array([[X0]])
  xi = jnp.array([[XI]])
  f = lambda p, x: forward(p, x, scal, shape_net.activation)[-1][0, 0]

  def one(key, eta):
    p = init_params(key, shape_net.shapes(), scal, bias=False, dtype=jnp.float64)
    chi0 = f(p, x0) - Y0
    grads = jax.grad(lambda q: 0.5 * (f(q, x0) - Y0) ** 2)(p)
    p1 = jax.tree.map(lambda a, g: a - eta * scal.lr_scale * g, p, grads)
    return (f(p1, xi) - f(p, xi)) / (eta * chi0)

  return jax.vmap(lambda k: jax.vmap(lambda e: one(k, e))(etas))(keys)


@functools.lru_cache(maxsize=16)
def _measure(preset_name: str, seed: int) -> dict:
  cfg = PRESETS[preset_name]
  keys = jax.random.split(registry.check_key(seed, "init"), cfg["seeds"])
  etas = jnp.asarray(ETAS, jnp.float64)
  out = {}
  for name in ("ntp", "mup"):
    curv, curv_se, gmean = [], [], []
    for n in cfg["widths"]:
      net = MLP(preset(name, 1), d_in=1, width=n, d_out=1, activation="tanh")
      scal = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), net.scalings())
      g = np.asarray(_g(scal, keys, etas, shape_net=shape_only(net)))  # one compile per width
      curv.append(np.mean(np.abs(g[:, 1] - g[:, 0])))
      curv_se.append(np.std(np.abs(g[:, 1] - g[:, 0]), ddof=1) / np.sqrt(g.shape[0]))
      gmean.append(g.mean(axis=0))
    fit = fitting.loglog_slope(cfg["widths"], curv)
    out[name] = dict(curvature=np.array(curv), curvature_se=np.array(curv_se), g_mean=np.array(gmean),
                     slope=fit.slope, r2=fit.r2)
  # The exact muP limit's g(eta) (2-D trapezoid rule) and the kernel value -K(xi, x0).
  x, y, xe = np.array([[X0]]), np.array([[Y0]]), np.array([[XI]])
  lim = [float(limits.nonlinear_limit(x, y, limits.full_batches(1, 1), xe, lr=eta, h=0.05).f[-1, 0, 0])
         / (eta * -Y0) for eta in ETAS]
  ker = float(limits.kernel_limit(x, y, limits.full_batches(1, 1), xe, lr=1.0).f[-1, 0, 0]) / -Y0
  out["limit_g"] = lim
  out["ntk_g"] = ker
  out["widths"] = np.asarray(cfg["widths"])
  return out


def _details(m: dict) -> dict:
  return {
      "widths": m["widths"].tolist(), "etas": list(ETAS),
      "ntp": {"curvature": common.rounded(m["ntp"]["curvature"]), "slope": common.rounded(m["ntp"]["slope"]),
              "r2": common.rounded(m["ntp"]["r2"]), "g_mean": common.rounded(m["ntp"]["g_mean"])},
      "mup": {"curvature": common.rounded(m["mup"]["curvature"]), "slope": common.rounded(m["mup"]["slope"]),
              "curvature_standard_error": common.rounded(m["mup"]["curvature_se"]),
              "g_mean": common.rounded(m["mup"]["g_mean"])},
      "mup_limit_g": common.rounded(m["limit_g"], 8),
      "mup_limit_curvature": common.rounded(abs(m["limit_g"][1] - m["limit_g"][0]), 8),
      "kernel_g (-K)": common.rounded(m["ntk_g"], 8),
  }


def _figure(m: dict) -> Figure:
  fig = Figure(figsize=(4.5, 3.2), tight_layout=True)
  ax = fig.subplots()
  for name in ("ntp", "mup"):
    ax.loglog(m["widths"], m[name]["curvature"], "o-", label=f"{name} (p={m[name]['slope']:+.2f})")
  ax.axhline(abs(m["limit_g"][1] - m["limit_g"][0]), ls=":", color="k", label="muP limit")
  ax.set_xscale("log", base=2)
  ax.set_xlabel("width")
  ax.set_ylabel("|g(2) - g(1/8)|")
  ax.legend(fontsize=7)
  return fig


@register(
    id="mup.kernel_vs_feature_ntp", paper=common.PAPER,
    claim="NTP: (f_1 - f_0)/(eta chi_0) becomes flat in eta; width exponent of its curvature "
          "(1 hidden layer: O(1/n) corrections)",
    predicted="-1", band=(-1.1, -0.9))
def ntp_flat(preset_name: str, seed: int) -> Measurement:
  m = _measure(preset_name, seed)
  return Measurement(value=float(m["ntp"]["slope"]), details=_details(m), figure=_figure(m))


@register(
    id="mup.kernel_vs_feature_mup", paper=common.PAPER,
    claim="muP: (f_1 - f_0)/(eta chi_0) stays curved in eta, and its curvature |g(2) - g(1/8)| tends "
          "to the exact limit's (nonlinear_limit): the largest |C(n) - C_inf| at the two largest "
          "widths in units of 4 standard errors of the seed mean (statistical: exceeded with "
          "probability ~1e-4)",
    predicted="<= 1", band=(0.0, 1.0))
def mup_curved(preset_name: str, seed: int) -> Measurement:
  m = _measure(preset_name, seed)
  c_inf = abs(m["limit_g"][1] - m["limit_g"][0])
  z = np.abs(m["mup"]["curvature"][-2:] - c_inf) / m["mup"]["curvature_se"][-2:]
  details = _details(m)
  details["mup"]["z_at_two_largest_widths"] = common.rounded(z, 3)
  return Measurement(value=float(np.max(z)) / 4.0, details=details)
