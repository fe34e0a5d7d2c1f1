r"""Claim 5 (muTransfer): under muP the best learning rate does not move with width; under SP it does.

Yang et al. 2022, Tensor Programs V (arXiv:2203.03466), Section 3 and Figure 1: with muP the optimal
learning rate is stable across widths, while with SP and a width-independent learning rate it drifts
(roughly like 1/width: the output update :math:`\Delta f \propto \eta\, n`).

Measured: scikit-learn's digits (standardized, first 256 images, one-hot targets, squared loss),
1-hidden-layer ReLU MLPs of widths 32..512 (16x; base width 32, where SP and muP coincide), full-batch
SGD for 40 steps, learning rates :math:`2^{-8}..2^{1}` (grid step x2); the best learning rate per width
minimizes the final training loss (a diverged run counts as infinite). The value is how far the best
learning rate moves across widths, in grid steps.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxopt_lab.mup.parametrization import MLP, Task, preset
from jaxopt_lab.mup.transfer import digits_task, plot_transfer, transfer_sweep
from theory_checks import mup_common as common
from theory_checks.registry import Measurement, register

PRESETS = {
    "quick": dict(widths=(32, 64, 128, 256, 512), num=256, steps=40, seeds=1, depth=1),
    "full": dict(widths=(64, 128, 256, 512, 1024, 2048), num=1797, steps=200, seeds=3, depth=2),
}
LRS = 2.0 ** np.arange(-8, 2)


@functools.lru_cache(maxsize=16)
def _measure(preset_name: str, seed: int) -> dict:
  cfg = PRESETS[preset_name]
  task = digits_task(cfg["num"])
  task = Task(task.x, jax.nn.one_hot(task.y, 10, dtype=task.x.dtype))
  out = {}
  for label, abc in (("muP", preset("mup", cfg["depth"])), ("SP", preset("sp", cfg["depth"], c=0.0))):
    net = MLP(abc, d_in=64, width=cfg["widths"][0], d_out=10, activation="relu",
              base_width=cfg["widths"][0])
    out[label] = transfer_sweep(net, cfg["widths"], task, lrs=LRS, seeds=common.seeds(seed, "transfer/init", cfg["seeds"]),
                                num_steps=cfg["steps"], record_every=cfg["steps"] // 4, loss="mse")
  return out


def _details(res: dict) -> dict:
  return {label: {"widths": r.widths.tolist(), "log2_best_lr": np.log2(r.best_lr).tolist(),
                  "shift_in_grid_steps": r.shift_in_grid_steps(),
                  "best_lr_exponent": common.rounded(r.best_lr_exponent()),
                  "diverged_fraction": common.rounded(r.diverged.mean())}
          for label, r in res.items()}


@register(
    id="mup.transfer_mup", paper=common.PAPER_TP5,
    claim="muP: the best learning rate moves by at most one grid step (x2) over a 16x width range "
          "(digits, widths 32..512); its shift in grid steps",
    predicted="0 (<= 1)", band=(0.0, 1.0))
def mup_transfer(preset_name: str, seed: int) -> Measurement:
  res = _measure(preset_name, seed)
  return Measurement(value=float(res["muP"].shift_in_grid_steps()), details=_details(res),
                     figure=plot_transfer(res, title="digits, training loss vs learning rate"))


@register(
    id="mup.transfer_sp", paper=common.PAPER_TP5,
    claim="SP (width-independent learning rate): the best learning rate moves by at least two grid "
          "steps over the same 16x width range; its shift in grid steps",
    predicted="about 4 (LR* ~ 1/width)", band=(2.0, float("inf")))
def sp_transfer(preset_name: str, seed: int) -> Measurement:
  res = _measure(preset_name, seed)
  return Measurement(value=float(res["SP"].shift_in_grid_steps()), details=_details(res))
