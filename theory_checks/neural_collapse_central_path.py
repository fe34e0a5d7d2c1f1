r"""Claim (Theorem 3.1): along the central-path gradient flow, with :math:`\lambda_W > 0`,
:math:`\lambda_H \ge 0` and :math:`\Sigma_W(H_0) \ne 0`, :math:`\widetilde{NC}_1(H_t)` strictly decreases
(to 0 when :math:`\lambda_H > 0`), :math:`e^{2\lambda_H t}\mathrm{tr}\,\Sigma_W(H_t)` is non-increasing
and :math:`e^{2\lambda_H t}\mathrm{tr}\,\Sigma_B(H_t)` strictly increases.

Measured: :func:`jaxopt_lab.neural_collapse.flows.central_path_flow` (RK4, dt = 1e-3 to t = 20, every
step recorded) from the fact sheet's :math:`H_0` (K = 4, n = d = 10, Gaussian means + N(0,1) noise,
:math:`\lambda_W = \sqrt2`), vmapped over :math:`\lambda_H` (and seeds in the full preset):

- ``thm31_monotone``: the largest per-step violation of the three statements over all steps and runs,
  each step difference divided by the quantity's initial value (increase of :math:`\widetilde{NC}_1`
  and of :math:`e^{2\lambda_H t}\mathrm{tr}\Sigma_W`, decrease of :math:`e^{2\lambda_H t}\mathrm{tr}
  \Sigma_B`); theory: < 0; band: up to 1e-12 of float64 and RK4 round-off (the RK4 local error,
  ~1e-15 at dt = 1e-3, cannot reverse a per-step change of >= 1e-10).
- ``thm31_nc1_rate`` (the rate at which :math:`\widetilde{NC}_1 \to 0`, not a one-time ratio): the
  within-class part obeys :math:`\frac{d}{dt}(HP) = -(W^{*\top}W^* + \lambda_H I)(HP)`, and for
  :math:`d > K` the :math:`d - K` directions outside the rows of :math:`W^*` see only :math:`\lambda_H`,
  while :math:`\mathrm{tr}\,\Sigma_B` converges: :math:`\widetilde{NC}_1(H_t)` decays at the asymptotic
  rate :math:`2\lambda_H`. Measured: the log-linear rate of :math:`\widetilde{NC}_1` on the late window
  :math:`t \in [30, 40]` (:math:`\ge 3/\lambda_H`; RK4, dt = 1e-2, a separate run to t = 40) over
  :math:`\lambda_H \in \{0.1, 0.5\}` (quick) and every instance, worst ratio to :math:`2\lambda_H`;
  band [0.98, 1.02]: the transients still present at the window's start (faster within-class modes,
  the last of :math:`\mathrm{tr}\,\Sigma_B`'s convergence) moved it by < 0.3% on the instances
  measured when the band was set. :math:`\lambda_H = 0` stalls (rate ~ 0, reported).
- ``central_path_nc2_nc3_rate``: NC2 and NC3 along the same flow. The class means' singular values
  obey :math:`\dot s = s\lambda_W/(s^2 + \lambda_W)^2 - \lambda_H s` (the field on a collapsed
  :math:`H = M \otimes 1_n^\top` with :math:`W^* = M^\top(MM^\top + \lambda_W I)^{-1}`), whose fixed
  point is :math:`s^2 = \rho` (Theorem 2.1) with linearization :math:`-4(1 - c)\lambda_H`,
  :math:`c = \sqrt{\lambda_H\lambda_W}`; NC2 of the centred means (ETF distance of their Gram,
  Papyan's equinorm, equiangularity and maximal-angle statistics, whose target :math:`-1/(K-1)`
  needs the right constant) and NC3 (ETF distance of :math:`W^*\dot M`) vanish linearly in the
  singular values' spread, so they decay at :math:`4(1 - c)\lambda_H` (0.2496 at
  :math:`\lambda_H = 0.1`, 0.3182 at 0.5). Measured as above; worst ratio over the five metrics,
  :math:`\lambda_H` and instances; band [0.98, 1.02], set as for NC1 (transients < 0.3% at the
  window start). Without a bias :math:`W^*W^{*\top} \to` a multiple of :math:`I` (not the simplex)
  and Papyan's NC3 (self-duality with centred means) does not vanish: both reported, not banded.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab import fitting
from jaxopt_lab.neural_collapse import flows, metrics, models
from theory_checks import neural_collapse_common as common
from theory_checks.registry import Measurement, register

PRESETS = {
    "quick": dict(seeds=1, lambda_h=(0.0, 0.1)),
    "full": dict(seeds=4, lambda_h=(0.0, 0.01, 0.1, 0.5, 1.0)),
}
DT, T_END = 1e-3, 20.0
LAMBDA_H_CAL = 0.1
# The rate checks: a coarser RK4 (local error ~1e-10 relative at dt = 1e-2) to t = 40, rates on the
# last quarter t in [30, 40] (>= 3/lambda_H for every lambda_H here: past the transients; at
# lambda_H = 0.5 the window [6, 8] was still 8% off for NC1~, [10, 20] 0.2%).
RATE_DT, RATE_T, RATE_EVERY, RATE_WINDOW = 1e-2, 40.0, 10, 0.75
RATE_LAMBDA_H = {"quick": (0.1, 0.5), "full": (0.1, 0.3, 0.5)}
NC23_METRICS = ("nc2_etf_means", "nc2_equinorm_means", "nc2_equiangular_means",
                "nc2_maxangle_means", "nc3_duality_etf")


@functools.lru_cache(maxsize=16)
def _measure(preset: str, seed: int) -> dict:
  common.require_x64()
  cfg = PRESETS[preset]
  k, n, d = common.K, common.N_PER_CLASS, common.D
  num_steps = int(round(T_END / DT))
  lhs = np.asarray(cfg["lambda_h"], np.float64)
  run = jax.vmap(lambda H0, lh: flows.central_path_flow(
      H0, num_classes=k, lambda_W=common.LAMBDA_W, lambda_H=lh, dt=DT, num_steps=num_steps),
      in_axes=(None, 0))
  labels = metrics.class_by_class_labels(k, n)
  violations = {"nc1_tilde_increase": -np.inf, "scaled_tr_sigma_w_increase": -np.inf,
                "scaled_tr_sigma_b_decrease": -np.inf}
  ratios, endpoints, curves = {}, {}, []
  for inst, key in enumerate(common.instance_keys(seed, "features", cfg["seeds"])):
    H0 = models.gaussian_class_features(key, num_classes=k, n=n, d=d)
    res = run(H0, jnp.asarray(lhs))
    rec = jax.tree.map(np.asarray, res.records)
    for i, lh in enumerate(lhs):
      nc, sw, sb = rec["nc1_tilde"][i], rec["scaled_tr_sigma_w"][i], rec["scaled_tr_sigma_b"][i]
      for name, v in (("nc1_tilde_increase", np.diff(nc) / nc[0]),
                      ("scaled_tr_sigma_w_increase", np.diff(sw) / sw[0]),
                      ("scaled_tr_sigma_b_decrease", -np.diff(sb) / sb[0])):
        violations[name] = max(violations[name], float(v.max()))
      ratios.setdefault(float(lh), []).append(float(nc[-1] / nc[0]))
      if inst == 0:
        W0 = models.optimal_classifier(H0, num_classes=k, lambda_W=common.LAMBDA_W)
        H1 = res.final[i]
        W1 = models.optimal_classifier(H1, num_classes=k, lambda_W=common.LAMBDA_W)
        m0 = metrics.collapse_metrics(H0, labels, W0, num_classes=k)
        m1 = metrics.collapse_metrics(H1, labels, W1, num_classes=k)
        endpoints[f"lambda_H={lh:g}"] = {
            key: [common.rounded(m0[key], 4), common.rounded(m1[key], 4)]
            for key in ("nc1_tilde", "nc1", "nc2_etf_means")}
        sl = slice(None, None, 200)
        curves.append((f"lambda_H={lh:g}", rec["t"][i][sl], nc[sl]))
  fig = common.figure("central path, instance 0 (K=4, n=d=10, lambda_W=sqrt 2)", "t",
                      r"$\widetilde{NC}_1(H_t)$", curves)
  return dict(violations=violations, ratios=ratios, endpoints=endpoints, fig=fig,
              seeds=cfg["seeds"])


def predicted_nc23_rate(lambda_W: float, lambda_H: float) -> float:
  r"""The linearized decay rate :math:`4(1 - \sqrt{\lambda_H\lambda_W})\lambda_H` of the class
  means' singular-value spread near the collapsed limit of the central path (hence of NC2 and NC3)."""
  return 4.0 * (1.0 - math.sqrt(lambda_H * lambda_W)) * lambda_H


def _late_rate(t: np.ndarray, v: np.ndarray) -> float:
  sel = t >= RATE_WINDOW * RATE_T
  return -fitting.loglinear_rate(t[sel], v[sel]).slope


@functools.lru_cache(maxsize=16)
def _measure_rates(preset: str, seed: int) -> dict:
  common.require_x64()
  cfg = PRESETS[preset]
  k, n, d, lw = common.K, common.N_PER_CLASS, common.D, common.LAMBDA_W
  lhs = np.asarray((0.0,) + RATE_LAMBDA_H[preset], np.float64)
  run = jax.jit(jax.vmap(lambda H0, lh: flows.central_path_flow(
      H0, num_classes=k, lambda_W=lw, lambda_H=lh, dt=RATE_DT,
      num_steps=int(round(RATE_T / RATE_DT)), record_every=RATE_EVERY, full_metrics=True),
      in_axes=(None, 0)))
  nc1_ratios, nc23_ratios, details, curves = [], [], {}, []
  for inst, key in enumerate(common.instance_keys(seed, "features", cfg["seeds"])):
    H0 = models.gaussian_class_features(key, num_classes=k, n=n, d=d)
    rec = jax.tree.map(np.asarray, run(H0, jnp.asarray(lhs)).records)
    row = {}
    for i, lh in enumerate(lhs):
      t = rec["t"][i]
      if lh == 0.0:  # no lambda_H: NC1~ stalls; its rate on the last quarter is reported
        row["lambda_H=0 nc1_tilde_rate_t_in_[30,40]"] = common.rounded(
            _late_rate(t, rec["nc1_tilde"][i]), 3)
        continue
      r1 = _late_rate(t, rec["nc1_tilde"][i]) / (2.0 * lh)
      pred = predicted_nc23_rate(lw, lh)
      r23 = {m: _late_rate(t, rec[m][i]) / pred for m in NC23_METRICS}
      nc1_ratios.append(r1)
      nc23_ratios.extend(r23.values())
      row[f"lambda_H={lh:g}"] = {
          "nc1_tilde_rate_over_2lambda_H": common.rounded(r1, 6),
          f"nc2_nc3_rate_over_4(1-c)lambda_H={pred:.4f}": {m: common.rounded(v, 6)
                                                          for m, v in r23.items()},
          "nc3_self_duality_at_t=40 (no bias: does not vanish)":
              common.rounded(rec["nc3_self_duality"][i][-1], 4),
          "nc2_etf_w_at_t=40 (no bias: W W^T -> a multiple of I, not the simplex)":
              common.rounded(rec["nc2_etf_w"][i][-1], 4)}
      if inst == 0:
        curves += [(f"{m} lH={lh:g}", t[::5], rec[m][i][::5])
                   for m in ("nc1_tilde", NC23_METRICS[0])]
    details[f"instance {inst}"] = row
  fig = common.figure("central path: NC1~ and NC2 decay (instance 0)", "t", "metric", curves)
  return dict(nc1=nc1_ratios, nc23=nc23_ratios, details=details, fig=fig,
              window="t in [30, 40]")


@register(
    id="neural_collapse.thm31_monotone", paper=common.PAPER,
    claim="Theorem 3.1 on the central-path flow (RK4 dt 1e-3, t <= 20): largest per-step relative "
          "violation of 'NC1~ decreases', 'e^{2 lH t} tr Sigma_W non-increasing', "
          "'e^{2 lH t} tr Sigma_B increases', over lambda_H in {0, 0.1} (quick; full adds 0.01, 0.5, "
          "1 and 4 seeds)",
    predicted="< 0 (strict monotonicity)", band=(-np.inf, 1e-12))
def monotone(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  details = {"per_statement_max_step_change": {k: common.rounded(v, 4)
                                               for k, v in m["violations"].items()},
             "endpoints_[t=0,t=20]_instance0 (sheet lH=0: NC1~ 1.288->0.550, NC1 0.372->0.031; "
             "lH=0.1: NC1~ 1.288->0.0577, NC1 0.372->1.4e-4, NC2 0.383->0.013)": m["endpoints"],
             "final_over_initial_nc1_tilde_t=20 (sheet: 0.045 at lambda_H 0.1, 0.43 at 0)": {
                 f"lambda_H={k:g}": common.rounded(v, 4) for k, v in m["ratios"].items()},
             "seeds": m["seeds"]}
  return Measurement(value=max(m["violations"].values()), details=details, figure=m["fig"])


@register(
    id="neural_collapse.thm31_nc1_rate", paper=common.PAPER,
    claim="Theorem 3.1 with lambda_H > 0: NC1~ -> 0 along the central path at the asymptotic rate "
          "2 lambda_H (d > K: the directions outside W*'s rows see only lambda_H); log-linear rate "
          "of NC1~ on t in [30, 40], lambda_H in {0.1, 0.5}, lambda_W = sqrt 2; "
          "worst ratio to 2 lambda_H over lambda_H and instances",
    predicted="1 (rate 2 lambda_H)", band=(0.98, 1.02))
def nc1_rate(preset: str, seed: int) -> Measurement:
  m = _measure_rates(preset, seed)
  return Measurement(value=common.worst(m["nc1"], 1.0), details=m["details"], figure=m["fig"])


@register(
    id="neural_collapse.central_path_nc2_nc3_rate", paper=common.PAPER,
    claim="along the central path (lambda_H > 0), NC2 of the centred means (ETF distance, Papyan's "
          "equinorm, equiangularity, max-angle) and NC3 (ETF distance of W* Mdot) -> 0 at the rate "
          "4 (1 - sqrt(lambda_H lambda_W)) lambda_H of the means' linearized singular-value "
          "dynamics; log-linear rates on t in [30, 40], worst ratio to it over "
          "metrics, lambda_H in {0.1, 0.5} and instances",
    predicted="1 (0.2496 at lambda_H 0.1, 0.3182 at 0.5)", band=(0.98, 1.02))
def nc2_nc3_rate(preset: str, seed: int) -> Measurement:
  m = _measure_rates(preset, seed)
  return Measurement(value=common.worst(m["nc23"], 1.0), details=m["details"])
