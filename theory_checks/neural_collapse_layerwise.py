r"""Claim (Section 5, the layer-wise trained MLP of Fig. 2): within-class variability of the deepest
features falls with depth.

Each stage of :func:`jaxopt_lab.neural_collapse.features.train_layerwise` trains one new ReLU layer
and a new classifier on the frozen features of the previous stage, which is eq. 2 with
:math:`H_0` the previous features and :math:`1/\beta` the capacity of one layer; Corollary 3.2
(and the paper's Fig. 2 on CIFAR-10) then says NC1 of the features decreases at every added layer.

Measured on scikit-learn's digits (CIFAR-10 is not reachable here; the fact sheet's stand-in): 40
images per class drawn at random from the seed offset (10 classes, 64 pixels, centred), 4 layers of
width 64, MSE, weight decay 5e-4 on features and classifier, 600 full-batch Adam steps per layer
(lr 3e-3), initialization from the seed offset. Value: the largest ratio
:math:`NC(h_l)/NC(h_{l-1})`, l = 1..4, over Papyan's NC1 and :math:`\widetilde{NC}_1` (and the
instances of the full preset); predicted < 1 (strictly decreasing with depth), band (0, 1).
Calibration: NC1 0.652, 0.14, 0.013, 0.0036, 0.0022 (depth 0..4; the last ratio ~0.6).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab.neural_collapse import features
from theory_checks import neural_collapse_common as common
from theory_checks import registry
from theory_checks.registry import Measurement, register

NUM_CLASSES = 10
PRESETS = {
    "quick": dict(instances=1, n_per_class=40, depth=4, width=64, steps=600),
    "full": dict(instances=3, n_per_class=100, depth=6, width=128, steps=2000),
}
WEIGHT_DECAY, LR = 5e-4, 3e-3


def _random_subset(seed: int, n_per_class: int) -> tuple[jax.Array, jax.Array]:
  data = features.load_digits_balanced(174)  # every class has >= 174 images: all of them
  rng = np.random.default_rng(registry.check_seed(seed, "data"))
  labels = np.asarray(data.labels)
  idx = np.concatenate([np.sort(rng.choice(np.flatnonzero(labels == c), n_per_class,
                                           replace=False)) for c in range(NUM_CLASSES)])
  return jnp.asarray(data.H)[:, idx], jnp.asarray(labels[idx])


@functools.lru_cache(maxsize=16)
def _measure(preset: str, seed: int) -> dict:
  common.require_x64()
  cfg = PRESETS[preset]
  X, labels = _random_subset(seed, cfg["n_per_class"])
  ratios, details, curves = [], {}, []
  for inst, key in enumerate(common.instance_keys(seed, "init", cfg["instances"])):
    res = features.train_layerwise(key, X, labels, num_classes=NUM_CLASSES, depth=cfg["depth"],
                                   width=cfg["width"], lambda_feat=WEIGHT_DECAY,
                                   lambda_cls=WEIGHT_DECAY, lr=LR,
                                   num_steps_per_layer=cfg["steps"])
    nc = features.layerwise_nc1(res, labels, num_classes=NUM_CLASSES)
    for name in ("nc1", "nc1_tilde"):
      ratios.extend(nc[name][1:] / nc[name][:-1])
    details[f"instance {inst}"] = {"nc1_per_depth": common.rounded(nc["nc1"], 4),
                                   "nc1_tilde_per_depth": common.rounded(nc["nc1_tilde"], 4)}
    curves.append((f"NC1, instance {inst}", nc["depth"], nc["nc1"]))
  fig = common.figure("layer-wise MLP on digits: NC1 vs depth", "depth", "NC1", curves,
                      points=True)
  return dict(value=registry.strict_max(ratios), details=details, fig=fig)


@register(
    id="neural_collapse.layerwise_nc1_decreases", paper=common.PAPER,
    claim="layer-wise trained ReLU MLP (digits, 40/class, 4 layers, MSE, weight decay 5e-4): NC1 "
          "and NC1~ of the features decrease at every added layer; largest ratio "
          "NC(h_l)/NC(h_{l-1}) over layers and both metrics",
    predicted="< 1 (decreasing with depth)", band=(0.0, 1.0))
def layerwise(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  return Measurement(value=m["value"], details=m["details"], figure=m["fig"])
