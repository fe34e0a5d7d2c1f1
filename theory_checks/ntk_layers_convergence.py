"""Layer algebra: the finite network's empirical kernels tend to ``net.kernels`` as width^-1/2.

Jacot et al. 2018 (arXiv:1806.07572), Theorem 1, and its extension to convolutions, pooling,
residual sums and LayerNorm (Novak et al. 2019, arXiv:1810.05148; Yang 2019, "Tensor Programs I",
arXiv:1910.12478; neural-tangents' analytic-vs-Monte-Carlo tests, arXiv:1912.02803): for each
architecture family below, at initialization

- the empirical NTK of one output unit and the empirical NNGP :math:`f(x) f(x')^T / O` (the
  readout has :math:`O` = width units, so it is a Monte Carlo average over them) have relative
  Frobenius gaps to the analytic kernels that fall as width^-1/2 (their fluctuations are
  Gaussian-like of that size): the fitted log-log slope of the seed-mean gap over 4 widths lies in
  [-0.6, -0.4], for both kernels (the measured value is the one farther from -0.5);
- the seed-mean at the largest width equals the analytic kernel within its standard error:
  ``||mean - K||_F / SE <= 3`` for both kernels (the measured value is the larger), so a kernel
  wrong by less than the fluctuations (a dropped pooling normalization, a wrong padding count)
  fails even though its rate looks right.

Families (float64): ``conv`` (2-D, SAME and VALID padding, a stride, no pooling, Flatten),
``pool`` (AvgPool, CIRCULAR conv, GlobalAvgPool; 3x3 images), ``residual`` (1-D CIRCULAR
convolutions, FanOut / parallel(Identity, block) / FanInSum), ``layernorm`` (LayerNorm over channels
and over the flattened features, erf). Every draw comes from the seed offset (inputs, and each
width's initializations).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab.fitting import loglog_slope
from jaxopt_lab.ntk import layers as L
from theory_checks.registry import Measurement, check_key, check_seed, register

SIZES = {
    "quick": dict(widths=(16, 32, 64, 128), seeds=128, points=5, batch=32),
    "full": dict(widths=(64, 128, 256, 512, 1024), seeds=32, points=8, batch=8),
}


def _conv(w: int):
  return L.serial(L.Conv(w, (3, 3), padding="SAME", sigma_b=0.5), L.Relu(),
                  L.Conv(w, (2, 2), strides=(2, 1), padding="VALID", sigma_w=1.4), L.Relu(),
                  L.Flatten(), L.Dense(w, sigma_b=0.3))


def _pool(w: int):
  return L.serial(L.Conv(w, (3, 3), padding="SAME", sigma_b=0.5), L.Relu(),
                  L.AvgPool((2, 2), strides=(1, 1), padding="VALID"),
                  L.Conv(w, (2, 2), padding="CIRCULAR", sigma_w=1.4), L.Relu(),
                  L.GlobalAvgPool(), L.Dense(w, sigma_b=0.3))


def _residual(w: int):
  block = L.serial(L.Relu(), L.Conv(w, (3,), padding="CIRCULAR", sigma_b=0.5))
  return L.serial(L.Conv(w, (3,), padding="CIRCULAR", sigma_b=0.3), L.FanOut(2),
                  L.parallel(L.Identity(), block), L.FanInSum(), L.Relu(), L.Flatten(),
                  L.Dense(w))


def _layernorm(w: int):
  return L.serial(L.Conv(w, (3, 3), padding="SAME", sigma_b=0.5), L.LayerNorm(), L.Relu(),
                  L.Flatten(), L.Dense(w, sigma_b=0.5), L.LayerNorm(), L.Erf(),
                  L.Dense(w, sigma_w=1.5))


#: family -> (network of a width, input shape past the batch axis)
FAMILIES = {
    "conv": (_conv, (4, 4, 2)),
    "pool": (_pool, (3, 3, 2)),
    "residual": (_residual, (6, 2)),
    "layernorm": (_layernorm, (4, 4, 2)),
}


def require_x64() -> None:
  """Theory checks run in float64 (the report enables it); refuse to measure in float32."""
  if not jax.config.jax_enable_x64:
    raise RuntimeError("NTK layer checks need jax_enable_x64 (float64)")


@functools.partial(jax.jit, static_argnames=("net", "num_samples", "batch"))
def _samples(key, x, *, net, num_samples, batch):
  return L.sample_kernels(key, net, x, num_samples=num_samples, batch_size=batch, ntk_outputs=1)


def _gaps(samples: np.ndarray, limit: np.ndarray) -> tuple[np.ndarray, float]:
  """Per-seed relative Frobenius gaps, and the seed-mean's gap in standard errors."""
  gaps = np.linalg.norm(samples - limit, axis=(1, 2)) / np.linalg.norm(limit)
  se = np.sqrt(np.sum(samples.var(0, ddof=1)) / len(samples))
  return gaps, float(np.linalg.norm(samples.mean(0) - limit) / se)


@functools.lru_cache(maxsize=16)
def measure(family: str, preset: str, seed: int, builder=None) -> dict:
  """Per width and kernel: per-seed gaps and the seed-mean's z; ``builder`` overrides the
  family's network (the planted-bug tests pass a broken one)."""
  require_x64()
  s = SIZES[preset]
  make, shape = FAMILIES[family]
  make = builder or make
  x = jax.random.normal(check_key(seed, f"{family}-inputs"), (s["points"],) + shape, jnp.float64)
  out = {"nngp": {"gaps": [], "z": []}, "ntk": {"gaps": [], "z": []}}
  # NTK parametrization: the limit does not depend on the width (one kernel per family)
  limit = make(s["widths"][-1]).kernels(x)
  for w in s["widths"]:
    net = make(w)
    # rbg keys compile in a fraction of threefry's time (one compile per width)
    key = jax.random.key(check_seed(seed, f"{family}-init-{w}"), impl="rbg")
    samples = _samples(key, x, net=net, num_samples=s["seeds"], batch=s["batch"])
    for name in ("nngp", "ntk"):
      gaps, z = _gaps(np.asarray(getattr(samples, name)), np.asarray(getattr(limit, name)))
      out[name]["gaps"].append(gaps)
      out[name]["z"].append(z)
  return out


def rate(family: str, preset: str, seed: int) -> Measurement:
  """Fitted slopes of the seed-mean gaps; the value is the one farther from -1/2."""
  s = SIZES[preset]
  m = measure(family, preset, seed)
  fits = {k: loglog_slope(s["widths"], [g.mean() for g in m[k]["gaps"]]) for k in ("nngp", "ntk")}
  worst = max(fits, key=lambda k: abs(fits[k].slope + 0.5))
  return Measurement(
      value=fits[worst].slope,
      details={"family": family, "widths": list(s["widths"]), "seeds": s["seeds"],
               **{f"{k}_slope": fits[k].slope for k in fits},
               **{f"{k}_mean_gap": [float(g.mean()) for g in m[k]["gaps"]] for k in fits}},
      figure=_figure(family, s["widths"], m, fits))


def value(family: str, preset: str, seed: int) -> Measurement:
  """The larger of the NNGP's and the NTK's seed-mean gap at the largest width, in SEs."""
  s = SIZES[preset]
  m = measure(family, preset, seed)
  z = {k: m[k]["z"][-1] for k in ("nngp", "ntk")}
  return Measurement(value=max(z.values()),
                     details={"family": family, "width": s["widths"][-1], "seeds": s["seeds"],
                              **{f"{k}_z": z[k] for k in z},
                              **{f"{k}_z_per_width": m[k]["z"] for k in z}})


PAPER = ("Jacot et al. 2018 (arXiv:1806.07572) Thm 1; Novak et al. 2019 (arXiv:1810.05148); "
         "Yang 2019 (arXiv:1910.12478)")


def _register(family: str, what: str) -> None:
  register(id=f"ntk_layers.{family}_rate", paper=PAPER,
           claim=f"{what}: the empirical NTK and NNGP tend to net.kernels with relative "
                 "Frobenius gap ~ width^-1/2 (the slope farther from -1/2 of the two)",
           predicted="-0.5", band=(-0.6, -0.4))(functools.partial(rate, family))
  register(id=f"ntk_layers.{family}_value", paper=PAPER,
           claim=f"{what}: the seed-mean empirical NTK and NNGP at the largest width equal "
                 "net.kernels within 3 standard errors (the larger z of the two)",
           predicted="||mean - K||_F / SE ~ 1", band=(0.0, 3.0))(functools.partial(value, family))


for _family, _what in (("conv", "conv net without pooling (SAME, VALID, stride)"),
                       ("pool", "conv net with AvgPool, CIRCULAR conv, GlobalAvgPool"),
                       ("residual", "1-D residual conv net (FanOut, Identity, FanInSum)"),
                       ("layernorm", "conv net with LayerNorm over channels and features")):
  _register(_family, _what)


def _figure(family, widths, m, fits):
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(4, 3), layout="constrained")
  ax = fig.add_subplot()
  w = np.asarray(widths, float)
  for c, k in (("C0", "nngp"), ("C1", "ntk")):
    mean = [g.mean() for g in m[k]["gaps"]]
    ax.plot(w, mean, "o-", color=c, label=f"{k}: slope {fits[k].slope:.2f}")
  ax.plot(w, mean[0] * (w / w[0]) ** -0.5, ":", color="gray", label="width^-1/2")
  ax.set(xscale="log", yscale="log", xlabel="width", ylabel="relative Frobenius gap",
         title=f"{family}: empirical vs analytic kernels")
  ax.legend(fontsize=7)
  return fig
