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
- ``thm31_nc1_to_zero``: :math:`\widetilde{NC}_1(H_{20})/\widetilde{NC}_1(H_0)` at
  :math:`\lambda_H = 0.1` (worst seed); sheet: 0.0577/1.288 = 0.045, while :math:`\lambda_H = 0` stalls
  at 0.550/1.288 = 0.43 (reported). Band [0, 0.1]: within-class variability orthogonal to the
  classifier decays only through :math:`\lambda_H` (as :math:`e^{-2\lambda_H t}`, fitted rate reported).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab import fitting
from jaxopt_lab.neural_collapse import flows, metrics, models
from theory_checks import neural_collapse_common as common
from theory_checks.registry import Measurement, register

PRESETS = {
    "quick": dict(seeds=(0,), lambda_h=(0.0, 0.1)),
    "full": dict(seeds=(0, 1, 2, 3), lambda_h=(0.0, 0.01, 0.1, 0.5, 1.0)),
}
DT, T_END = 1e-3, 20.0
LAMBDA_H_CAL = 0.1


@functools.lru_cache(maxsize=2)
def _measure(preset: str) -> dict:
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
  ratios, rates, endpoints, curves = {}, {}, {}, []
  for seed in cfg["seeds"]:
    H0 = models.gaussian_class_features(jax.random.key(seed), num_classes=k, n=n, d=d)
    res = run(H0, jnp.asarray(lhs))
    rec = jax.tree.map(np.asarray, res.records)
    for i, lh in enumerate(lhs):
      nc, sw, sb = rec["nc1_tilde"][i], rec["scaled_tr_sigma_w"][i], rec["scaled_tr_sigma_b"][i]
      for name, v in (("nc1_tilde_increase", np.diff(nc) / nc[0]),
                      ("scaled_tr_sigma_w_increase", np.diff(sw) / sw[0]),
                      ("scaled_tr_sigma_b_decrease", -np.diff(sb) / sb[0])):
        violations[name] = max(violations[name], float(v.max()))
      ratios.setdefault(float(lh), []).append(float(nc[-1] / nc[0]))
      late = rec["t"][i] >= T_END / 2
      rates.setdefault(float(lh), []).append(-fitting.loglinear_rate(rec["t"][i][late], nc[late]).slope)
      if seed == cfg["seeds"][0]:
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
  fig = common.figure("central path, seed 0 (K=4, n=d=10, lambda_W=sqrt 2)", "t",
                      r"$\widetilde{NC}_1(H_t)$", curves)
  return dict(violations=violations, ratios=ratios, rates=rates, endpoints=endpoints, fig=fig,
              seeds=len(cfg["seeds"]))


@register(
    id="neural_collapse.thm31_monotone", paper=common.PAPER,
    claim="Theorem 3.1 on the central-path flow (RK4 dt 1e-3, t <= 20): largest per-step relative "
          "violation of 'NC1~ decreases', 'e^{2 lH t} tr Sigma_W non-increasing', "
          "'e^{2 lH t} tr Sigma_B increases', over lambda_H in {0, 0.1} (quick; full adds 0.01, 0.5, "
          "1 and 4 seeds)",
    predicted="< 0 (strict monotonicity)", band=(-np.inf, 1e-12))
def monotone(preset: str, seed: int) -> Measurement:
  m = _measure(preset)
  details = {"per_statement_max_step_change": {k: common.rounded(v, 4)
                                               for k, v in m["violations"].items()},
             "endpoints_[t=0,t=20]_seed0 (sheet lH=0: NC1~ 1.288->0.550, NC1 0.372->0.031; "
             "lH=0.1: NC1~ 1.288->0.0577, NC1 0.372->1.4e-4, NC2 0.383->0.013)": m["endpoints"],
             "seeds": m["seeds"]}
  return Measurement(value=max(m["violations"].values()), details=details, figure=m["fig"])


@register(
    id="neural_collapse.thm31_nc1_to_zero", paper=common.PAPER,
    claim="Theorem 3.1: NC1~ -> 0 along the central path when lambda_H > 0: "
          "NC1~(H_20)/NC1~(H_0) at lambda_H = 0.1, lambda_W = sqrt 2 (worst seed)",
    predicted="-> 0 (sheet: 0.0577/1.288 = 0.045 at t = 20)", band=(0.0, 0.1))
def nc1_to_zero(preset: str, seed: int) -> Measurement:
  m = _measure(preset)
  details = {"final_over_initial_nc1_tilde": {f"lambda_H={k:g}": common.rounded(v, 4)
                                              for k, v in m["ratios"].items()},
             "late_decay_rate_of_nc1_tilde_t_in_[10,20]": {
                 f"lambda_H={k:g} (2 lambda_H = {2 * k:g})": common.rounded(v, 4)
                 for k, v in m["rates"].items()},
             "sheet": "lambda_H = 0: 0.550/1.288 = 0.43 (no convergence to 0)"}
  return Measurement(value=max(m["ratios"][LAMBDA_H_CAL]), details=details)
