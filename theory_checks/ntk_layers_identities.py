"""CNN-GP without pooling equals the NNGP of the locally connected net; global pooling changes it.

Novak et al. 2019, "Bayesian Deep Convolutional Networks with Many Channels are Gaussian Processes"
(arXiv:1810.05148), Section 3.1 and Figure 1: without pooling, a CNN's infinite-channel NNGP uses
only the covariances of each position with itself, so it equals the NNGP of a locally connected
network (LCN: the same windows, untied weights per position, whose covariances across positions vanish);
global average pooling reads the covariances across positions and gives another kernel.

Measured (float64) on random 4x4x2 images, a 2-layer ReLU conv net (SAME then VALID with stride):

- ``ntk_layers.cnn_gp_equals_lcn_gp``: the analytic CNN-GP, computed carrying the full P x P
  covariances (``full_spatial=True``), against the Monte Carlo NNGP of a *finite LCN* written
  here independently of the library (patches and one weight matrix per output position), in units
  of the Monte Carlo standard error (band [0, 3]). Details: the gap between the full-covariance and
  the diagonal-only computation (the identity at the level of the kernels, ~1e-16).
- ``ntk_layers.gap_changes_cnn_gp``: the same Monte Carlo LCN NNGP against the CNN-GP with
  GlobalAvgPool instead of Flatten, in standard errors (band >= 5: the estimate that matches the
  CNN-GP rejects the pooled kernel). Details: the relative Frobenius change of the kernel.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab.ntk import layers as L
from theory_checks.registry import Measurement, check_key, check_seed, register

SIZES = {
    "quick": dict(width=256, seeds=64, points=6, batch=16),
    "full": dict(width=1024, seeds=256, points=12, batch=16),
}
SHAPE = (4, 4, 2)
SIGMA_B = 0.3
# (filter, strides, padding) of the two layers
WINDOWS = (((3, 3), (1, 1), "SAME"), ((2, 2), (2, 1), "VALID"))


def cnn(width: int, head: L.Layer) -> L.Serial:
  """The conv net: two conv layers with ReLU, then ``head`` (Flatten or GlobalAvgPool), Dense."""
  convs = []
  for f, s, p in WINDOWS:
    convs += [L.Conv(width, f, strides=s, padding=p, sigma_b=SIGMA_B), L.Relu()]
  return L.serial(*convs, head, L.Dense(width, sigma_b=SIGMA_B))


def _lcn_init(key, width: int, channels: int):
  """Per layer: weights (positions, window * fan-in, width), biases (positions, width); N(0, 1)."""
  shapes, spatial, c = [], SHAPE[:2], channels
  for f, s, p in WINDOWS:
    spatial = tuple(len(range(0, n - (k if p == "VALID" else 1) + 1, t))
                    for n, k, t in zip(spatial, f, s))
    shapes += [(math.prod(spatial), math.prod(f) * c, width), (math.prod(spatial), width)]
    c = width
  shapes += [(math.prod(spatial) * c, width), (width,)]
  keys = jax.random.split(key, len(shapes))
  return [jax.random.normal(k, sh, jnp.float64) for k, sh in zip(keys, shapes)]


def lcn_apply(params, x):
  """The finite LCN (NTK parametrization): untied weights per output position."""
  h = x
  for l, (f, s, p) in enumerate(WINDOWS):
    w, b = params[2 * l], params[2 * l + 1]
    patches = jax.lax.conv_general_dilated_patches(
        h, f, s, p, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
    n, ho, wo, fan_in = patches.shape
    z = jnp.einsum("npf,pfc->npc", patches.reshape(n, ho * wo, fan_in), w,
                   precision=jax.lax.Precision.HIGHEST) / math.sqrt(fan_in)
    h = jax.nn.relu(z + SIGMA_B * b[None]).reshape(n, ho, wo, -1)
  flat = h.reshape(h.shape[0], -1)
  return (flat @ params[-2]) / math.sqrt(flat.shape[1]) + SIGMA_B * params[-1][None]


@functools.partial(jax.jit, static_argnames=("width", "batch"))
def _lcn_nngp_samples(keys, x, *, width, batch):
  def one(key):
    f = lcn_apply(_lcn_init(key, width, x.shape[-1]), x)
    return f @ f.T / f.shape[1]
  return jax.lax.map(one, keys, batch_size=batch)


def _z(samples, limit):
  se = math.sqrt(float(np.sum(samples.var(0, ddof=1))) / len(samples))
  return float(np.linalg.norm(samples.mean(0) - limit) / se)


@functools.lru_cache(maxsize=16)
def _measure(preset: str, seed: int) -> dict:
  if not jax.config.jax_enable_x64:
    raise RuntimeError("NTK layer checks need jax_enable_x64 (float64)")
  s = SIZES[preset]
  x = jax.random.normal(check_key(seed, "lcn-inputs"), (s["points"],) + SHAPE, jnp.float64)
  flat = cnn(s["width"], L.Flatten())
  k_full = np.asarray(flat.kernels(x, full_spatial=True).nngp)
  k_diag = np.asarray(flat.kernels(x).nngp)
  k_gap = np.asarray(cnn(s["width"], L.GlobalAvgPool()).kernels(x).nngp)
  keys = jax.random.split(jax.random.key(check_seed(seed, "lcn-init"), impl="rbg"), s["seeds"])
  samples = np.asarray(_lcn_nngp_samples(keys, x, width=s["width"], batch=s["batch"]))
  return {
      "z_cnn": _z(samples, k_full), "z_gap": _z(samples, k_gap),
      "full_vs_diag": float(np.max(np.abs(k_full - k_diag)) / np.max(np.abs(k_diag))),
      "gap_change": float(np.linalg.norm(k_gap - k_diag) / np.linalg.norm(k_diag)),
      "mc_relative_gap": float(np.linalg.norm(samples.mean(0) - k_full) / np.linalg.norm(k_full)),
      "width": s["width"], "seeds": s["seeds"], "points": s["points"],
  }


PAPER = "Novak et al. 2019 (arXiv:1810.05148), Section 3.1"


@register(id="ntk_layers.cnn_gp_equals_lcn_gp", paper=PAPER,
          claim="without pooling the CNN-GP (computed with full spatial covariances) equals the "
                "NNGP of a finite locally connected net by Monte Carlo, within 3 standard errors",
          predicted="||MC_LCN - K_CNN||_F / SE ~ 1", band=(0.0, 3.0))
def check_lcn(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  return Measurement(value=m["z_cnn"], details={k: v for k, v in m.items() if k != "z_cnn"})


@register(id="ntk_layers.gap_changes_cnn_gp", paper=PAPER,
          claim="global average pooling changes the CNN-GP: the Monte Carlo LCN kernel that "
                "matches the CNN-GP rejects the pooled kernel by at least 5 standard errors",
          predicted="||MC_LCN - K_GAP||_F / SE >> 3", band=(5.0, math.inf))
def check_gap(preset: str, seed: int) -> Measurement:
  m = _measure(preset, seed)
  return Measurement(value=m["z_gap"], details={k: v for k, v in m.items() if k != "z_gap"})
