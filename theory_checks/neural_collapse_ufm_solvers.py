r"""Claim: the UFM's global minimizers are the closed forms of Theorem 2.1 (MSE), its bias variant, and
Zhu et al.'s (CE); they are collapsed (NC1 = 0, class means a simplex ETF); past the thresholds
(:math:`\sqrt{\lambda_H\lambda_W} \ge 1` for MSE, :math:`\sqrt{n\lambda_W\lambda_H} \ge 1/K` for CE)
the minimizer is zero.

Measured: optax L-BFGS (zoom line search, float64, fixed iteration count) from random starts, several
seeds and hyperparameters per model, against :mod:`jaxopt_lab.neural_collapse.models`' closed forms:
the largest absolute error over :math:`f^*`, :math:`\bar H^\top\bar H` vs :math:`\rho I` (or
:math:`\rho(I - 11^\top/K)`), :math:`W\bar H` vs :math:`(1-c)I`, :math:`b` vs :math:`1/K`,
:math:`\bar h_G = 0`, and the CE norms :math:`\|w_k\|^2`, :math:`\|h_{k,i}\|^2`; NC1 and NC2 at the
minimizers; the largest entry of :math:`(W, H)` in the trivial regimes.
The sheet's values: c = sqrt(0.1 sqrt 2) = 0.3760603 gives f* = 0.3053496312; CE with
lambda_W = lambda_H = 5e-3, K = 4, n = 5 gives f* = 0.1836919957.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np

from jaxopt_lab.neural_collapse import metrics, models, solvers
from theory_checks import neural_collapse_common as common
from theory_checks.registry import Measurement, register

PRESETS = {
    "quick": dict(k=4, n=5, d=6, seeds=2),
    "full": dict(k=10, n=8, d=12, seeds=4),
}
# (lambda_W, lambda_H): two non-trivial settings and one trivial one (c >= 1) per model.
MSE_HP = [(math.sqrt(2.0), 0.1), (0.05, 0.3), (2.0, 1.0)]
MSE_BIAS_HP = [(math.sqrt(2.0), 0.1), (0.1, 0.2), (2.0, 1.0)]
# (lambda_W, lambda_H, lambda_b): the sheet's CE case, another, and a trivial one (sqrt(n lW lH) >= 1/K).
CE_HP = [(5e-3, 5e-3, 5e-3), (1e-2, 2e-3, 1e-3), (0.2, 0.2, 0.01)]


def _means(H, k):
  d, n_total = H.shape
  return H.reshape(d, k, n_total // k).mean(axis=2)


@functools.lru_cache(maxsize=16)
def _measure(preset: str, seed: int) -> dict:
  common.require_x64()
  cfg = PRESETS[preset]
  k, n, d, seeds = cfg["k"], cfg["n"], cfg["d"], cfg["seeds"]
  labels = metrics.class_by_class_labels(k, n)
  errors: dict[str, float] = {}
  nc1s, nc2s, trivial_sizes, f_values = [], [], [], {}

  def grid(hps, role):
    hp = np.repeat(np.asarray(hps, np.float64), seeds, axis=0)
    keys = common.instance_keys(seed, role, len(hp))  # random starts
    return keys, hp

  def record(name, err):
    errors[name] = max(errors.get(name, 0.0), float(err))

  for bias, hps in ((False, MSE_HP), (True, MSE_BIAS_HP)):
    tag = "mse_bias" if bias else "mse"
    keys, hp = grid(hps, f"start_{tag}")
    for key, (lw, lh) in zip(keys, hp):
      # A Python loop, not vmap: one compile per model serves every case (runs take milliseconds).
      res = solvers.solve_ufm_mse(key, num_classes=k, n=n, d=d, lambda_W=lw, lambda_H=lh, bias=bias)
      cf = models.mse_closed_form(k, lw, lh, bias=bias)
      W, H, b = (np.asarray(x) for x in res.params)
      record(f"{tag}_f", abs(res.value - cf.f_star))
      f_values[f"{tag} lW={lw:.4g} lH={lh:.4g}"] = common.rounded(res.value, 11)
      if bool(cf.trivial):
        trivial_sizes.append(max(np.abs(W).max(), np.abs(H).max()))
        continue
      Hbar = _means(H, k)
      if bias:
        target = float(cf.rho) * (np.eye(k) - np.ones((k, k)) / k)
        centred = Hbar - Hbar.mean(axis=1, keepdims=True)
        record("mse_bias_b", np.abs(b - float(cf.b_star)).max())
        record("mse_bias_global_mean", np.abs(H.mean(axis=1)).max())
        record("mse_bias_rho", np.abs(centred.T @ centred - target).max())
      else:
        record("mse_rho", np.abs(Hbar.T @ Hbar - float(cf.rho) * np.eye(k)).max())
        record("mse_W_Hbar", np.abs(W @ Hbar - float(cf.w_hbar) * np.eye(k)).max())
      record(f"{tag}_w_norm_sq", abs(np.sum(W**2) - float(cf.w_norm_sq)))
      m = metrics.collapse_metrics(H, labels, W, b, num_classes=k)  # b = 0 without bias
      nc1s.append(float(m["nc1"]))
      nc2s.append(float(m["nc2_etf_means"]))

  keys, hp = grid(CE_HP, "start_ce")
  for key, (lw, lh, lb) in zip(keys, hp):
    res = solvers.solve_ufm_ce(key, num_classes=k, n=n, d=d, lambda_W=lw, lambda_H=lh, lambda_b=lb)
    cf = models.ce_closed_form(k, n, lw, lh)
    W, H, b = (np.asarray(x) for x in res.params)
    record("ce_f", abs(res.value - cf.f_star))
    f_values[f"ce lW={lw:.4g} lH={lh:.4g}"] = common.rounded(res.value, 11)
    if bool(cf.trivial):
      trivial_sizes.append(max(np.abs(W).max(), np.abs(H).max(), np.abs(b).max()))
      continue
    record("ce_w_norm_sq", np.abs(np.sum(W**2, axis=1) - float(cf.w_norm_sq)).max())
    record("ce_h_norm_sq", np.abs(np.sum(H**2, axis=0) - float(cf.h_norm_sq)).max())
    record("ce_b", np.abs(b).max())
    m = metrics.collapse_metrics(H, labels, W, b, num_classes=k)
    nc1s.append(float(m["nc1"]))
    nc2s.append(float(m["nc2_etf_means"]))

  sheet = {"mse f* at c = sqrt(0.1 sqrt2) (sheet 0.3053496312)":
               common.rounded(models.mse_closed_form(k, math.sqrt(2.0), 0.1).f_star, 11),
           "ce f* at 5e-3, 5e-3, K=4, n=5 (sheet 0.1836919957)":
               common.rounded(models.ce_closed_form(4, 5, 5e-3, 5e-3).f_star, 11)}
  return dict(errors=errors, nc1=max(nc1s), nc2=max(nc2s), trivial=max(trivial_sizes),
              f_values=f_values, sheet=sheet, size=dict(K=k, n=n, d=d, seeds=seeds))


@register(
    id="neural_collapse.ufm_closed_forms", paper=common.PAPER,
    claim="L-BFGS minimizers of the MSE UFM (with/without bias) and the CE UFM match the closed forms: "
          "largest abs error over f*, rho, W Hbar = (1-c)I, b = 1/K, hbar_G = 0, CE norms",
    predicted="0 (solver error only)", band=(0.0, 1e-6))
def closed_forms(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  details = {"errors": {k: common.rounded(v, 3) for k, v in m["errors"].items()},
             "f_values": m["f_values"], "closed_forms_vs_sheet": m["sheet"], **m["size"]}
  return Measurement(value=max(m["errors"].values()), details=details)


@register(
    id="neural_collapse.ufm_minimizer_nc1", paper=common.PAPER,
    claim="the UFM minimizers are collapsed: largest NC1 = tr(Sigma_W Sigma_B^+)/K over the non-trivial "
          "MSE, MSE+bias and CE minimizers",
    predicted="0", band=(0.0, 1e-10))
def minimizer_nc1(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  return Measurement(value=m["nc1"], details={"max_nc2_etf_means (sheet: < 1e-6)":
                                              common.rounded(m["nc2"], 3), **m["size"]})


@register(
    id="neural_collapse.ufm_trivial_regime", paper=common.PAPER,
    claim="past the thresholds (sqrt(lH lW) >= 1 MSE, sqrt(n lW lH) >= 1/K CE) the minimizer is "
          "W = H = 0 (b = 0 for CE): largest entry of the L-BFGS minimizers",
    predicted="0", band=(0.0, 1e-6))
def trivial_regime(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  return Measurement(value=m["trivial"], details={"f_values": m["f_values"], **m["size"]})
