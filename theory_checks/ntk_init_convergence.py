"""NTK at initialization: the empirical NTK of a finite MLP converges to the analytic NTK.

Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Theorem 1: as the hidden widths grow, the NTK of a
randomly initialized network converges in probability to the deterministic limit Theta^L. Its
fluctuations are Gaussian-like of size width^{-1/2}, so the relative Frobenius error
||Theta_hat - Theta^L||_F / ||Theta^L||_F, averaged over seeds, should fall as width^{-1/2}.

Measured on a depth-3 ReLU MLP (2 hidden layers, sigma_w = 1, sigma_b = 0.5, NTK parametrization) on
points of the unit sphere S^3, with the structured empirical NTK; seeds vmapped (in batches).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab import ntk
from jaxopt_lab.fitting import loglog_slope
from theory_checks.registry import Measurement, check_key, register

SIZES = {
    "quick": dict(widths=(64, 128, 256, 512, 1024), seeds=16, points=16, dim=4, seed_batch=16),
    "full": dict(widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=32, points=32, dim=4,
                 seed_batch=4),
}


def require_x64() -> None:
  """Theory checks run in float64 (the report enables it); refuse to measure silently in float32."""
  if not jax.config.jax_enable_x64:
    raise RuntimeError("NTK theory checks need jax_enable_x64 (float64)")


@functools.partial(jax.jit, static_argnames=("width", "seed_batch"))
def empirical_kernels(x: jax.Array, keys: jax.Array, *, width: int, seed_batch: int):
  """Per seed, the empirical NTK of a width-``width`` depth-3 ReLU MLP; and the analytic NTK."""
  net = ntk.MLP((x.shape[1], width, width, 1), "relu", sigma_w=1.0, sigma_b=SIGMA_B)
  theta_inf = ntk.mlp_kernels(x, **net.kernel_kwargs()).ntk
  one = lambda key: ntk.empirical_ntk(net, net.init(key), x, method="structured")
  return jax.lax.map(one, keys, batch_size=seed_batch), theta_inf


def _inputs_and_keys(points: int, dim: int, widths: int, seeds: int, seed: int):
  return (ntk.sphere_inputs(check_key(seed, "inputs"), points, dim, jnp.float64),
          jax.random.split(check_key(seed, "init"), (widths, seeds)))


# 16 entries: launch.report --seeds=K runs one check over every offset before the next, so both
# checks of this module must find all K offsets' runs (K <= 16) to share them.
@functools.lru_cache(maxsize=16)
def _measure(preset: str, seed: int):
  """Per width: per-seed relative errors, and the seed-mean's deviation from the limit in units of
  its standard error (both checks below read one run)."""
  require_x64()
  s = SIZES[preset]
  x, keys = _inputs_and_keys(s["points"], s["dim"], len(s["widths"]), s["seeds"], seed)
  errors, z = [], []
  for w, k in zip(s["widths"], keys):
    thetas, theta_inf = empirical_kernels(x, k, width=w, seed_batch=s["seed_batch"])
    thetas, theta_inf = np.asarray(thetas), np.asarray(theta_inf)
    errors.append(np.linalg.norm(thetas - theta_inf, axis=(1, 2)) / np.linalg.norm(theta_inf))
    mean = thetas.mean(0)
    se = np.sqrt(np.sum(thetas.var(0, ddof=1)) / len(thetas))  # E||mean - E theta||_F, roughly
    z.append(float(np.linalg.norm(mean - theta_inf) / se))
  return errors, z


SIGMA_B = 0.5  # large enough that a kernel missing sigma_b^2 is off by many standard errors


@register(
    id="ntk.init_convergence",
    paper="Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Theorem 1",
    claim="at init the empirical NTK tends to the analytic NTK: relative Frobenius error "
          "~ width^-1/2",
    predicted="-0.5", band=(-0.6, -0.4))
def check(preset: str, seed: int) -> Measurement:
  s = SIZES[preset]
  errors, z = _measure(preset, seed)
  mean = np.array([e.mean() for e in errors])
  fit = loglog_slope(s["widths"], mean)
  return Measurement(
      value=fit.slope,
      details={"widths": list(s["widths"]), "mean_relative_error": mean.tolist(),
               "seed_std": [float(e.std()) for e in errors], "r2": fit.r2, "seeds": s["seeds"],
               "points": s["points"], "dim": s["dim"], "sigma_b": SIGMA_B},
      figure=_figure(s["widths"], errors, fit))


@register(
    id="ntk.init_limit_value",
    paper="Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Theorem 1",
    claim="the seed-average of the empirical NTK at the largest width equals the analytic NTK "
          "within its standard error (a wrong but smooth limit fails)",
    predicted="||mean - Theta^L||_F / SE ~ 1", band=(0.0, 3.0))
def check_value(preset: str, seed: int) -> Measurement:
  """The rate check above passes for a limit that is wrong by less than the fluctuations; this one
  compares values. With S seeds, the seed-mean of Theta_hat has Frobenius noise
  SE = sqrt(sum_ij Var(Theta_hat_ij) / S), so ||mean - Theta^L||_F / SE is about 1 (a chi-like
  variable over the kernel's entries, correlated, hence not sharper than ~1 +- 1) when the limit is
  right and the O(1/width) finite-width bias is small next to SE (it is: SE ~ width^-1/2 / sqrt(S)).
  Band [0, 3]: three standard errors. A limit missing sigma_b^2 = 0.25 is off by >> 3 SE."""
  s = SIZES[preset]
  _, z = _measure(preset, seed)
  return Measurement(value=z[-1], details={"widths": list(s["widths"]), "z_per_width": z,
                                           "seeds": s["seeds"], "sigma_b": SIGMA_B})


def _figure(widths, errors, fit):
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=(4, 3), layout="constrained")
  ax = fig.add_subplot()
  w = np.asarray(widths, float)
  for wi, e in zip(w, errors):
    ax.scatter(np.full(e.shape, wi), e, s=4, alpha=0.3, color="C0")
  ax.plot(w, [e.mean() for e in errors], "o-", color="C0", label="mean over seeds")
  ax.plot(w, np.exp(fit.intercept) * w**fit.slope, "--", color="C1",
          label=f"slope {fit.slope:.2f}")
  ax.set(xscale="log", yscale="log", xlabel="width", ylabel="relative Frobenius error",
         title="empirical NTK at init vs analytic")
  ax.legend(fontsize=7)
  return fig
