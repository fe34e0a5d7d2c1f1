"""NTK at initialization: the empirical NTK of a finite MLP converges to the analytic NTK.

Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Theorem 1: as the hidden widths grow, the NTK of a
randomly initialized network converges in probability to the deterministic limit Theta^L. Its
fluctuations are Gaussian-like of size width^{-1/2}, so the relative Frobenius error
||Theta_hat - Theta^L||_F / ||Theta^L||_F, averaged over seeds, should fall as width^{-1/2}.

Measured on a depth-3 ReLU MLP (2 hidden layers, sigma_w = 1, sigma_b = 0.1, NTK parametrization) on
points of the unit sphere S^3, with the structured empirical NTK; seeds vmapped (in batches).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_lab import ntk
from jaxopt_lab.fitting import loglog_slope
from theory_checks.registry import Measurement, register

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
def relative_errors(x: jax.Array, keys: jax.Array, *, width: int, seed_batch: int) -> jax.Array:
  """Per seed, ||Theta_hat - Theta^L||_F / ||Theta^L||_F of a width-``width`` depth-3 ReLU MLP."""
  net = ntk.MLP((x.shape[1], width, width, 1), "relu", sigma_w=1.0, sigma_b=0.1)
  theta_inf = ntk.mlp_kernels(x, **net.kernel_kwargs()).ntk

  def one(key):
    theta = ntk.empirical_ntk(net, net.init(key), x, method="structured")
    return jnp.linalg.norm(theta - theta_inf) / jnp.linalg.norm(theta_inf)

  return jax.lax.map(one, keys, batch_size=seed_batch)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _inputs_and_keys(points: int, dim: int, widths: int, seeds: int):
  key_x, key_init = jax.random.split(jax.random.key(0))
  return (ntk.sphere_inputs(key_x, points, dim, jnp.float64),
          jax.random.split(key_init, (widths, seeds)))


@register(
    id="ntk.init_convergence",
    paper="Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572), Theorem 1",
    claim="at init the empirical NTK tends to the analytic NTK: relative Frobenius error "
          "~ width^-1/2",
    predicted="-0.5", band=(-0.6, -0.4))
def check(preset: str, seed: int) -> Measurement:
  require_x64()
  s = SIZES[preset]
  x, keys = _inputs_and_keys(s["points"], s["dim"], len(s["widths"]), s["seeds"])
  errors = [np.asarray(relative_errors(x, k, width=w, seed_batch=s["seed_batch"]))
            for w, k in zip(s["widths"], keys)]
  mean = np.array([e.mean() for e in errors])
  fit = loglog_slope(s["widths"], mean)
  return Measurement(
      value=fit.slope,
      details={"widths": list(s["widths"]), "mean_relative_error": mean.tolist(),
               "seed_std": [float(e.std()) for e in errors], "r2": fit.r2, "seeds": s["seeds"],
               "points": s["points"], "dim": s["dim"]},
      figure=_figure(s["widths"], errors, fit))


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
