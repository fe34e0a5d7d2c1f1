r"""Few-shot MAML at finite width vs its exact infinite-width muP limit and the NTK limit (TP4 Sec. 9.2).

:mod:`jaxopt_lab.mup.maml`: first-order MAML with one inner step on a linear 1-hidden-layer network,
5-way 1-shot episodes from scikit-learn's digits (meta-train classes 0-4, test classes 5-9), inner rate
0.05, outer rate 0.02, meta-batch 4, base width 16. One cached sweep per (preset, seed offset): the muP
limit, muP networks at every width x init seed (all padded to one width, one compiled program, on the
same episode sequence) and the NTK limit over the init seeds.

* ``mup_maml.limit_convergence``: width exponent of the RMS of the adapted query logits
  :math:`f_n - f_\infty` on fixed test episodes (band [-0.6, -0.4]: the CLT rate of a smooth function of
  the initial Gram matrix, as for Word2Vec).
* ``mup_maml.wider_is_better``: the largest *fall* of mean test accuracy between consecutive widths, in
  standard errors (below 2).
* ``mup_maml.limit_beats_ntk``: test accuracy of the muP limit minus the NTK limit of NTP (its random
  NNGP initial function included), in seed spreads (more than 3). What wins here is the muP limit's
  deterministic :math:`f_0 = 0`: against the *centered* NTK limit (:math:`f_0 = 0`, the ensemble mean),
  whose raw-pixel kernel step is already a nearest-class-mean classifier, the margin is within noise at
  this scale, and meta-training lowers the limit's accuracy below its untrained value (both reported
  in the details). Feature learning does not pay on 5 meta-training classes of 8x8 digits.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab import fitting
from jaxopt_lab.mup import maml
from jaxopt_lab.mup import word2vec as w2v
from theory_checks import mup_common as common
from theory_checks.registry import Measurement, check_key, register

PRESETS = {
    "quick": dict(widths=(16, 64, 256, 1024), seeds=3, num_steps=100, num_tests=100),
    "full": dict(widths=(16, 64, 256, 1024, 4096), seeds=8, num_steps=300, num_tests=400),
}
KW = dict(inner_lr=0.05, learning_rate=0.02, meta_batch=4, ways=5, shots=1, queries=5)
BASE_WIDTH = 16


@functools.partial(jax.jit, static_argnames=("widths", "num_steps"))
def _sweep(episodes, tests, data_key, init_keys, *, widths, num_steps):
  sw = maml.sweep_widths(episodes, tests, data_key, init_keys, parametrization="mup", widths=widths,
                         base_width=BASE_WIDTH, num_steps=num_steps, **KW)
  d, ways = episodes.x.shape[2], KW["ways"]
  untrained = maml.evaluate(maml.limit_init(d, ways, dtype=episodes.x.dtype), tests,
                            w2v.limit_scalings(BASE_WIDTH), KW["inner_lr"])[0]
  ntk = lambda k, c: maml.ntk_limit(k, data_key, episodes, tests, num_steps=num_steps,
                                    base_width=BASE_WIDTH, centered=c, **KW)
  ntk_acc = jax.vmap(lambda k: ntk(k, False))(init_keys)
  fw = sw.logits
  rms = jnp.sqrt(jnp.mean(jnp.square(fw - sw.limit_logits[None, None]), axis=tuple(range(1, fw.ndim))))
  return dict(limit=sw.limit_accuracy, acc=sw.accuracy, rms=rms, ntk=ntk_acc,
              ntk_centered=ntk(init_keys[0], True), limit_untrained=untrained)


@functools.lru_cache(maxsize=16)
def measure(preset_name: str, seed: int) -> dict:
  """The shared MAML sweep of one preset and seed offset."""
  cfg = PRESETS[preset_name]
  episodes = maml.digits_episodes(dtype=jnp.float64)
  tests = maml.test_episodes(check_key(seed, "test_episodes"), episodes, cfg["num_tests"],
                             ways=KW["ways"], shots=KW["shots"], queries=KW["queries"])
  init_keys = jax.random.split(check_key(seed, "init"), cfg["seeds"])
  out = _sweep(episodes, tests, check_key(seed, "data"), init_keys, widths=cfg["widths"],
               num_steps=cfg["num_steps"])
  return {"widths": np.array(cfg["widths"]), **{k: np.asarray(v) for k, v in out.items()}}


@register(
    id="mup_maml.limit_convergence", paper=common.PAPER,
    claim="MAML (first order, one inner step, 5-way 1-shot digits) muP nets -> the exact limit: width "
          "exponent of the RMS gap of adapted query logits",
    predicted="-0.5", band=(-0.6, -0.4))
def limit_convergence(preset_name: str, seed: int) -> Measurement:
  m = measure(preset_name, seed)
  fit = fitting.loglog_slope(m["widths"], m["rms"])
  return Measurement(fit.slope, {"widths": m["widths"].tolist(), "rms_logits": common.rounded(m["rms"]),
                                 "r2": common.rounded(fit.r2)})


@register(
    id="mup_maml.wider_is_better", paper=common.PAPER,
    claim="MAML under muP: test accuracy rises with width towards the limit's; largest fall between "
          "consecutive widths, in standard errors",
    predicted="< 2 (no significant fall)", band=(-math.inf, 2.0))
def wider_is_better(preset_name: str, seed: int) -> Measurement:
  m = measure(preset_name, seed)
  acc = m["acc"]
  mean, se2 = acc.mean(1), acc.var(1, ddof=1) / acc.shape[1]
  z = (mean[:-1] - mean[1:]) / np.sqrt(np.maximum(se2[:-1] + se2[1:], 1e-12))
  return Measurement(float(np.max(z)), {
      "widths": m["widths"].tolist(), "mean_accuracy": common.rounded(mean), "fall_z": common.rounded(z),
      "limit_accuracy": common.rounded(m["limit"])})


@register(
    id="mup_maml.limit_beats_ntk", paper=common.PAPER,
    claim="MAML: muP limit accuracy minus the NTK limit's (NTP at infinite width, random NNGP init) in "
          "seed spreads; the centered NTK limit and the untrained muP limit are in the details",
    predicted="> 3", band=(3.0, math.inf))
def limit_beats_ntk(preset_name: str, seed: int) -> Measurement:
  m = measure(preset_name, seed)
  spread = max(float(np.std(m["ntk"], ddof=1)), float(np.std(m["acc"][-1], ddof=1)))
  margin = float(m["limit"] - np.mean(m["ntk"]))
  return Measurement(margin / spread if spread > 0 else math.nan, {
      "mup_limit": common.rounded(m["limit"]), "ntk_limit": common.rounded(m["ntk"]),
      "ntk_limit_centered": common.rounded(m["ntk_centered"]),
      "mup_limit_untrained": common.rounded(m["limit_untrained"]), "seed_spread": common.rounded(spread)})
