r"""Shared runs of the SGD-stability checks (Wu & Su 2023, arXiv:2305.17490). Registers no check.

:func:`end_points` trains, for the diagonal linear network and the two-layer ReLU network of the
paper, online SGD (:math:`B = 1`, uniform sampling, gradient clipping at 30 throughout: inactive near
a minimum, where gradients vanish) and GD over a grid of step sizes, every seed from the same
initialization for every step size (the engine's common random numbers). Both models start from a
large initialization (:math:`\mathrm{tr}\,G \gg 2/\eta`), so GD converges near its start while SGD must
travel to a flatter minimum. Each end point with training loss :math:`\le 10^{-11}` is then analysed
exactly: :math:`\mathrm{tr}\,H` and :math:`\lambda_{\max}(H)` from the Gram matrix of per-example
gradients (:math:`H = G` at interpolation), and on the full preset the exact threshold
:math:`\eta^*(B = 1)` of :func:`jaxopt_lab.stability.linear_stability.threshold`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab.stability import curvature
from jaxopt_lab.stability import linear_stability as ls
from jaxopt_lab.stability import models, training
from theory_checks import registry

PAPER = "Wu & Su 2023 (arXiv:2305.17490)"
EXACT = "Mulayoff & Michaeli 2023 (arXiv:2306.07850); Wu & Su 2023 (arXiv:2305.17490)"
# Training loss at or below which a run counts as converged (the fact sheet's criterion).
LOSS_TOL = 1e-11
CLIP = 30.0

SETUPS = {
    # Fact sheet: d = 200, n = 60, 3-sparse beta*, x ~ U[-1, 1], u, v ~ N(0, 1).
    # Step sizes stop at 0.12: from ~0.16 on SGD approaches the sparse solution (|beta|_1 -> 3 = |beta*|_1)
    # whose zero coordinates are degenerate minima, and the loss decays sublinearly (~1e-7 after 1e5
    # steps at eta = 0.16 and 0.3), so those runs never meet the convergence criterion.
    # The smallest step size must put every seed's initialization (tr G ~ 95-125) outside SGD's
    # stable set (tr G eta / 2 > 1), or GD has nothing to violate: at eta = 0.02 one of 4 seeds of the
    # full preset started at tr G eta / 2 = 0.98 (GD then ended at 0.98, still above eta*(B = 1)).
    "diagonal": dict(norm="l1", grid={"quick": (0.02, 0.04, 0.08, 0.12),
                                      "full": (0.03, 0.04, 0.06, 0.08, 0.12)},
                     sgd_steps={"quick": 40_000, "full": 100_000},
                     gd_steps={"quick": 6_000, "full": 20_000}),
    # Fact sheet: d = 20, m = 50, n = 60, x uniform on the sphere of radius sqrt(d); init
    # w ~ N(0, 0.3^2 I), a ~ N(0, 1.5^2) (tr G ~ 10^3, GD-stable up to eta ~ 0.04).
    "relu": dict(norm="path_norm", grid={"quick": (0.005, 0.01, 0.02, 0.04),
                                         "full": (0.005, 0.01, 0.02, 0.04)},
                 sgd_steps={"quick": 60_000, "full": 100_000},
                 gd_steps={"quick": 6_000, "full": 20_000}),
}
SEEDS = {"quick": 2, "full": 4}


def devices() -> list[jax.Device]:
  """One device: a few dozen tiny runs gain nothing from sharding, and on host CPU "devices" the
  per-step synchronization of the curvature conditional would cost more than it saves."""
  return jax.local_devices()[:1]


def setup(name: str, seed: int = 0) -> tuple[models.Model, models.Dataset]:
  """The model and float64 data of a setup at check seed offset ``seed``."""
  key = registry.check_key(seed, f"data/{name}")
  if name == "diagonal":
    return (models.diagonal_net(200),
            models.sparse_regression_data(key, d=200, n=60, sparsity=3, n_test=2000))
  if name == "relu":
    return (models.relu_net(20, 50, w_std=0.3, a_std=1.5),
            models.relu_teacher_data(key, d=20, n=60, n_test=2000))
  raise ValueError(f"unknown setup {name!r}")


def _gram_spectra(model: models.Model, data: models.Dataset, params: Any) -> np.ndarray:
  """Eigenvalues of H = G at each end point, ``(runs, n)``, from the Gram matrices of per-example
  gradients (``n x n``, host ``eigh`` in float64): exact, and cheaper than any Hessian estimator."""
  jac = jax.jit(jax.vmap(lambda p: curvature.per_example_jacobians(model.apply, p, data.x)))(params)
  g = np.asarray(jac).reshape(jac.shape[0], jac.shape[1], -1)  # (runs, n, d), scalar outputs
  n = g.shape[1]
  return np.linalg.eigvalsh(np.einsum("rnd,rmd->rnm", g, g)) / n, g


def run_seeds(seed: int, preset: str) -> np.ndarray:
  """The engine's integer run seeds (initialization and sampling) at check seed offset ``seed``."""
  return registry.check_seed(seed, "runs") + np.arange(SEEDS[preset])


# 64: up to 4 models x 16 seed offsets, since launch.report --seeds=K runs each check over all K
# offsets before the next check that shares these end points.
@functools.lru_cache(maxsize=64)
def end_points(name: str, preset: str, seed: int = 0) -> dict[str, Any]:
  r"""Trains SGD (B = 1) and GD over the setup's step-size grid; returns the end-point table.

  Returns a dict with ``eta`` (grid), and per algorithm (``"sgd"``, ``"gd"``) arrays of shape
  ``(seeds, len(eta))``: ``loss``, ``converged``, ``trace``, ``sharpness``, ``eta_star``, ``norm``,
  ``test_loss``, ``diverged`` (``eta_star``, the exact :math:`\eta^*(B=1)`, only on the full preset;
NaN elsewhere and for runs that did not converge); plus ``curves`` (step, loss of seed 0).
  """
  cfg = SETUPS[name]
  model, data = setup(name, seed)
  grid = np.asarray(cfg["grid"][preset])
  seeds = run_seeds(seed, preset)
  out: dict[str, Any] = {"eta": grid, "norm_name": cfg["norm"]}
  for alg_name in ("sgd", "gd"):
    steps = cfg[f"{alg_name}_steps"][preset]
    every = steps // 10
    # Loss and norms only: the end points are analysed exactly below.
    monitor = training.Monitor(every=every, power_iters=0, gn_trace=False)
    alg = (training.sgd(model, 1, monitor=monitor) if alg_name == "sgd"
           else training.gd(model, monitor=monitor))
    hp = {"eta": grid, "clip": CLIP} if alg_name == "sgd" else {"eta": grid}
    res = training.sweep_training(alg, data, seeds=seeds, hp=hp, num_steps=steps,
                                  record_every=every, devices=devices())
    m = {k: v[..., -1] for k, v in res.metrics.items()}
    loss = m["loss"]
    converged = (res.diverged_at < 0) & (loss <= LOSS_TOL)
    flat = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), res.final_state.inner.params)
    spectra, grads = _gram_spectra(model, data, flat)
    shape = loss.shape
    trace = np.where(converged, spectra.sum(axis=1).reshape(shape), np.nan)
    sharp = np.where(converged, spectra.max(axis=1).reshape(shape), np.nan)
    eta_star = np.full(shape, np.nan)
    if preset == "full":  # the exact threshold: ~1 s per end point on 2 CPU cores
      for i in np.nonzero(converged.ravel())[0]:
        eta_star.flat[i] = float(ls.threshold(grads[i], 1))
    out[alg_name] = dict(loss=loss, converged=converged, trace=trace, sharpness=sharp,
                         eta_star=eta_star, norm=m[cfg["norm"]], test_loss=m["test_loss"],
                         diverged=res.diverged, steps=steps,
                         curves=(res.steps, res.metrics["loss"][0]))
  return out


def enough_converged(table: dict[str, Any]) -> bool:
  """At least half of the seeds of every step size converged."""
  return bool(np.all(table["converged"].mean(axis=0) >= 0.5))


def worst(values: Any, target: float) -> float:
  """The value farthest from ``target`` (NaN if empty or any is NaN)."""
  v = np.asarray(values, np.float64).ravel()
  if v.size == 0 or np.any(~np.isfinite(v)):
    return float("nan")
  return float(v[np.argmax(np.abs(v - target))])


def rounded(x: Any, digits: int = 4) -> Any:
  """``x`` as JSON-friendly floats with ``digits`` significant digits (nested lists kept)."""
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    return float(f"{float(arr):.{digits}g}")
  return [rounded(a, digits) for a in arr]


def bound_figure(preset: str, seed: int = 0) -> Figure:
  """tr(H) eta / 2 and lambda_max eta / 2 at the end of training vs eta, SGD vs GD, both models."""
  fig = Figure(figsize=(8, 3.2), tight_layout=True)
  axes = fig.subplots(1, 2)
  for ax, name in zip(axes, SETUPS):
    t = end_points(name, preset, seed)
    eta = t["eta"]
    for alg, color in (("sgd", "C0"), ("gd", "C3")):
      tr = np.nanmedian(t[alg]["trace"], axis=0) * eta / 2
      lam = np.nanmedian(t[alg]["sharpness"], axis=0) * eta / 2
      ax.loglog(eta, tr, "o-", color=color, label=f"{alg.upper()} tr(H) eta/2")
      ax.loglog(eta, lam, "s--", color=color, label=f"{alg.upper()} lambda_max eta/2")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("eta")
    ax.set_title(f"{name} (end points, median over seeds)", fontsize=9)
    ax.legend(fontsize=6)
  return fig
