r"""Claim: the exact mean-square threshold :math:`\eta^*(B) = 2/\lambda_{\max}(\mathcal{C}^+\mathcal{D})` of
linearized SGD at an interpolating minimum, and its limits.

Ma & Ying 2021 (arXiv:2106.07589), Mulayoff & Michaeli 2023 (arXiv:2306.07850), as used by Wu & Su
2023 (arXiv:2305.17490). On random interpolation problems given by per-example gradients
:math:`g_i` (the fact sheet's quadratic :math:`n = 12`, :math:`d = 20` with unequal
:math:`\|g_i\|`, plus :math:`n > d`, :math:`n \ll d`, and vector outputs), computed by the operator form
(:func:`jaxopt_lab.stability.linear_stability.threshold`, Lanczos on range(H), no
:math:`d^2\times d^2` matrix):

- :math:`\eta^*` is non-decreasing in :math:`B` (uniform batches without replacement);
- at :math:`B = n` it equals GD's :math:`2/\lambda_{\max}(H)`;
- for orthogonal equal-norm gradients it equals :math:`2/\mathrm{tr}\,H` at :math:`B = 1`;
- the second-moment recursion :math:`S_{t+1} = \mathcal{Q}(S_t)` decays below :math:`\eta^*` and grows
  above it: its growth rate (slope of :math:`\log\mathrm{tr}\,S_t` over the second half of the run),
  interpolated over :math:`\eta/\eta^* \in \{0.9, 0.95, 0.99, 1.01, 1.05, 1.1\}`, changes sign at
  :math:`\eta^*`.

Bands: the identities hold to rounding (1e-8 relative; the Lanczos value matched a dense
``eigh`` to 1e-13 in the tests); the recursion's zero crossing within 1% of :math:`\eta^*` (the
linear interpolation of the growth rate between 0.99 and 1.01 is exact to second order).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab.stability import linear_stability as ls
from theory_checks import stability_common as common
from theory_checks.registry import Measurement, register

PRESETS = {
    "quick": dict(problems=((12, 1, 20), (30, 1, 10), (6, 3, 8)), rec_steps=2000,
                  orth_n=(2, 4, 8, 16)),
    "full": dict(problems=((12, 1, 20), (30, 1, 10), (8, 1, 60), (6, 3, 8), (40, 1, 200),
                           (20, 2, 30)), rec_steps=6000, orth_n=(2, 4, 8, 16, 32, 64)),
}
RATIOS = (0.9, 0.95, 0.99, 1.01, 1.05, 1.1)


def factors(n: int, k: int, d: int, seed: int) -> jax.Array:
  """Per-example Jacobians ``(n, k, d)`` with unequal norms (scaled by 0.5 .. 2 across examples)."""
  g = jax.random.normal(jax.random.key(common.DATA_SEED + seed), (n, k, d), jnp.float64)
  return g * jnp.linspace(0.5, 2.0, n)[:, None, None] / np.sqrt(d)


def batch_sizes(n: int) -> list[int]:
  return sorted({1, 2, 3, 4, n // 2, n - 1, n} - {0})


@functools.lru_cache(maxsize=2)
def _measure(preset: str) -> dict:
  cfg = PRESETS[preset]
  rows, mono, gd_ratio, crossings = {}, [], [], []
  fig = Figure(figsize=(4.5, 3.2), tight_layout=True)
  ax = fig.subplots()
  for seed, (n, k, d) in enumerate(cfg["problems"]):
    f = factors(n, k, d, seed)
    bs = batch_sizes(n)
    etas = np.array([float(ls.threshold(f, b)) for b in bs])
    lam_max = float(jnp.max(ls.range_coordinates(f).lam))
    mono.extend(etas[1:] / etas[:-1])
    gd_ratio.append(etas[-1] * lam_max / 2)
    label = f"n={n} k={k} d={d}"
    # Recursion at B = 1 and at a middle batch size.
    rates = {}
    for b in (1, bs[len(bs) // 2]):
      es = etas[bs.index(b)]
      half = cfg["rec_steps"] // 2
      slope = []
      for r in RATIOS:
        lt = np.asarray(ls.second_moment_log_trace(f, r * es, b, num_steps=cfg["rec_steps"]))
        slope.append((lt[-1] - lt[half]) / (cfg["rec_steps"] - half))
      slope = np.array(slope)
      rates[f"B={b}"] = common.rounded(slope, 3)
      if slope[0] < 0 < slope[-1]:
        i = np.nonzero(np.diff(np.sign(slope)) > 0)[0][0]
        x0, x1, y0, y1 = RATIOS[i], RATIOS[i + 1], slope[i], slope[i + 1]
        crossings.append(x0 - y0 * (x1 - x0) / (y1 - y0))
      else:
        crossings.append(np.nan)
    rows[label] = {"B": bs, "eta_star": common.rounded(etas, 6),
                   "two_over_lambda_max": common.rounded(2 / lam_max, 6),
                   "growth_rate_per_step_at_eta_over_eta_star": dict(rates, ratios=list(RATIOS))}
    if preset == "full":
      rows[label]["necessary_bound_B1"] = common.rounded(ls.necessary_bound(f, 1), 6)
      rows[label]["wu_ma_e_B1"] = common.rounded(ls.wu_ma_e(f, 1).eta_bound, 6)
    ax.semilogy(bs, etas, "o-", label=label)
  ax.set_xlabel("batch size B")
  ax.set_ylabel("eta*(B)")
  ax.legend(fontsize=7)
  ax.set_title("exact linear-stability threshold vs batch size", fontsize=9)
  orth = []
  for n in cfg["orth_n"]:
    d = n + 3
    q = jnp.linalg.qr(jax.random.normal(jax.random.key(common.DATA_SEED + n), (d, n),
                                        jnp.float64))[0].T * 1.7  # n orthogonal rows, norm 1.7
    tr = float(jnp.sum(q * q)) / n
    orth.append(float(ls.threshold(q, 1)) * tr / 2)
  rows["orthogonal_equal_norm"] = {"n": list(cfg["orth_n"]), "eta_star_tr_over_2":
                                   common.rounded(orth, 10)}
  return dict(mono=np.array(mono), gd=np.array(gd_ratio), orth=np.array(orth),
              crossings=np.array(crossings), rows=rows, fig=fig)


@register(
    id="stability.exact_monotone_in_batch", paper=common.EXACT,
    claim="eta*(B) is non-decreasing in B (uniform batches, 3-6 problems, 5-7 batch sizes each); "
          "smallest ratio eta*(B') / eta*(B) of consecutive batch sizes",
    predicted=">= 1", band=(1.0 - 1e-9, 1e9))
def monotone(preset: str, seed: int) -> Measurement:
  m = _measure(preset)
  return Measurement(value=float(np.min(m["mono"])), details=m["rows"], figure=m["fig"])


@register(
    id="stability.exact_gd_limit", paper=common.EXACT,
    claim="at B = n the exact threshold is GD's: eta*(n) lambda_max(H) / 2 (worst over problems)",
    predicted="1", band=(1 - 1e-8, 1 + 1e-8))
def gd_limit(preset: str, seed: int) -> Measurement:
  m = _measure(preset)
  return Measurement(value=common.worst(m["gd"], 1.0), details=m["rows"])


@register(
    id="stability.exact_orthogonal_trace", paper=common.PAPER,
    claim="orthogonal equal-norm gradients, B = 1: eta* = 2 / tr(H) (the trace bound is tight); "
          "eta* tr(H) / 2 worst over n = 2..16 (quick) / 2..64 (full)",
    predicted="1", band=(1 - 1e-8, 1 + 1e-8))
def orthogonal(preset: str, seed: int) -> Measurement:
  m = _measure(preset)
  return Measurement(value=common.worst(m["orth"], 1.0), details=m["rows"])


@register(
    id="stability.exact_recursion_threshold", paper=common.EXACT,
    claim="the second-moment recursion decays below eta* and grows above it: the zero crossing of "
          "its growth rate, over eta / eta* in [0.9, 1.1], in units of eta* (worst over problems and "
          "B = 1, B = mid)",
    predicted="1", band=(0.99, 1.01))
def recursion(preset: str, seed: int) -> Measurement:
  m = _measure(preset)
  return Measurement(value=common.worst(m["crossings"], 1.0), details=m["rows"])
