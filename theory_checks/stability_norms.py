r"""Claim: under SGD a larger step size gives a smaller :math:`\ell_1` norm (diagonal net) and path norm
(ReLU net).

Wu & Su 2023 (arXiv:2305.17490): :math:`\mathrm{tr}\,G \ge 2s^2\|u\odot v\|_1` (diagonal net) and
:math:`\mathrm{tr}\,G \ge \sqrt d\,\sum_j|a_j|\|w_j\|` (ReLU net, population), so SGD's stability bound
:math:`\mathrm{tr}\,G \le 2/\eta` caps the norms at :math:`\sim 1/\eta`, while GD's condition leaves
them free (GD ends near its initialization). Measured on the end points of
:func:`theory_checks.stability_common.end_points` (the same initialization for every step size of a
seed): the ratio of the norm at consecutive step sizes of the grid (each step about doubles
:math:`\eta`, so the cap halves).

Band: at least a 10% decrease per doubling of :math:`\eta` for every seed and model (the bound
predicts about 50% until the norm meets the sparse solution's). GD's end-point norms are reported in
the details only: that they barely move with :math:`\eta` follows from the chosen (large)
initialization, near which GD converges, not from the paper.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from theory_checks import stability_common as common
from theory_checks.registry import Measurement, register


def _details(preset: str, seed: int) -> dict:
  out = {}
  for name in common.SETUPS:
    t = common.end_points(name, preset, seed)
    out[name] = {"eta": common.rounded(t["eta"]), "norm": t["norm_name"]}
    for alg in ("sgd", "gd"):
      r = t[alg]
      out[name][alg] = {"norm": common.rounded(r["norm"]), "test_loss": common.rounded(r["test_loss"]),
                        "converged": int(r["converged"].sum())}
  return out


def _figure(preset: str, seed: int) -> Figure:
  fig = Figure(figsize=(8, 3.2), tight_layout=True)
  axes = fig.subplots(1, 2)
  for ax, name in zip(axes, common.SETUPS):
    t = common.end_points(name, preset, seed)
    for alg, color in (("sgd", "C0"), ("gd", "C3")):
      ax.loglog(t["eta"], np.median(t[alg]["norm"], axis=0), "o-", color=color,
                label=f"{alg.upper()} {t['norm_name']}")
      ax.loglog(t["eta"], np.median(t[alg]["test_loss"], axis=0), "s--", color=color,
                label=f"{alg.upper()} test loss")
    ax.set_xlabel("eta")
    ax.set_title(f"{name}: norms and test loss at the end (median)", fontsize=9)
    ax.legend(fontsize=6)
  return fig


@register(
    id="stability.sgd_norm_decreases", paper=common.PAPER,
    claim="SGD (B = 1): the l1 norm (diagonal net) and path norm (ReLU net) at the end decrease as eta "
          "grows; max over models, seeds and consecutive step sizes of norm(eta_next) / norm(eta)",
    predicted="< 1 (about 0.5 per doubling)", band=(0.0, 0.9))
def sgd_norms(preset: str, seed: int) -> Measurement:
  ratios = []
  for name in common.SETUPS:
    r = common.end_points(name, preset, seed)["sgd"]
    if not np.all(r["converged"]):
      return Measurement(value=float("nan"), details=_details(preset, seed))
    ratios.append(r["norm"][:, 1:] / r["norm"][:, :-1])
  value = float(np.max(np.concatenate([x.ravel() for x in ratios])))
  details = _details(preset, seed)
  # GD's norms barely moving with eta follows from the chosen initialization (GD converges near its
  # start), not from the paper: reported, not checked (the issue measured 0.71-0.77 on some seeds).
  details["gd_norm_ratio_eta_max_over_eta_min (init-driven, not a check)"] = {
      name: common.rounded(common.end_points(name, preset, seed)["gd"]["norm"][:, -1]
                           / common.end_points(name, preset, seed)["gd"]["norm"][:, 0])
      for name in common.SETUPS}
  return Measurement(value=value, details=details, figure=_figure(preset, seed))


