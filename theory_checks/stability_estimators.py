r"""Claim: the curvature estimators of :mod:`jaxopt_lab.stability.curvature` meet their stated accuracy.

Measured against dense float64 Hessians (``jax.hessian`` + ``eigh``) of the MSE of small tanh MLPs
at 1 (quick: :math:`d` = 103; the unit tests cover a second size) or 5 (full: :math:`d` = 44 to 550)
sizes, away from any minimum (so :math:`H` is indefinite
and :math:`H \ne G`):

- Lanczos (30 steps, top 3, largest algebraic) and power iteration (100 iterations, top 1, largest
  magnitude): error at most the returned residual :math:`\|Hv - \theta v\|` plus a rounding floor
  of :math:`10^{-10}|\lambda|`;
- Hutchinson (100 Rademacher probes) and the Frobenius estimator (100 probes): error at most 4
  standard deviations, from the exact variances :math:`\frac2m(\|H\|_F^2 - \sum_i H_{ii}^2)` and
  :math:`\frac2m(\|H^2\|_F^2 - \sum_i (H^2)_{ii}^2)`;
- Hutch++ (99 products, :math:`s = 33`): error at most 4 times
  :math:`\frac{2}{\sqrt s}\|H - H_{\lfloor s/2\rfloor}\|_F` (the second stage's standard deviation with the
  randomized range finder's expected residual for a rank-:math:`s/2` target);
- the exact Gauss-Newton trace: within 1e-10 relative of :math:`\frac1n\sum_i\|J_i\|_F^2` from dense
  ``jax.jacobian``;
- SLQ (10 steps per probe): per probe, :math:`\sum_j w_j\theta_j^r = v^\top H^r v` for
  :math:`r = 0..3` within 1e-9 relative (Gauss quadrature is exact for degree < 20).

Value: the largest error / tolerance over estimators and sizes (band [0, 1]). A second check fits the
RMS relative error of Hutchinson's estimate over 200 draws at 4, 16, 64, 256 probes: slope -1/2.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_lab import fitting
from jaxopt_lab.stability import curvature, models
from theory_checks import registry
from theory_checks import stability_common as common
from theory_checks.registry import Measurement, register

PAPER = ("Hutchinson 1989; Meyer et al. 2021 (arXiv:2010.09649); Golub & Van Loan (Lanczos, power); "
         "Ubaru, Chen & Saad 2017 (SLQ)")
PRESETS = {
    "quick": dict(sizes=((6, 10, 3),), draws=200),
    "full": dict(sizes=((4, 6, 2), (6, 10, 3), (8, 16, 4), (10, 20, 5), (16, 24, 6)), draws=1000),
}
PROBES = (4, 16, 64, 256)
HUTCH_PP_S = 33
BOOTSTRAP = 400


def problem(sizes: tuple[int, ...], key: jax.Array):
  """A tanh MLP's MSE on 40 random examples with random targets, at a random point."""
  k_x, k_y, k_p = jax.random.split(key, 3)
  x = jax.random.normal(k_x, (40, sizes[0]), jnp.float64)
  y = jax.random.normal(k_y, (40, sizes[-1]), jnp.float64)
  model = models.tanh_mlp(sizes)
  params = model.init(k_p, jnp.float64)
  loss = lambda p: models.mse(model.apply(p, x), y)
  return model, params, x, loss


def _estimates(sizes: tuple[int, ...], key: jax.Array, probe_key: jax.Array
               ) -> dict[str, np.ndarray]:
  """Every estimator and the dense references for one problem, in one compiled program."""
  model, params, x, loss = problem(sizes, key)
  d = ravel_pytree(params)[0].size
  s = HUTCH_PP_S if d >= HUTCH_PP_S else 0

  @jax.jit
  def run(params, key):
    out = {"hessian": curvature.dense_hessian(loss, params)}
    lz = curvature.top_eigenvalues_lanczos(loss, params, key, k=3, num_steps=min(30, d))
    out["lanczos"], out["lanczos_res"] = lz.values, lz.residuals
    pw = curvature.top_eigenvalues_power(loss, params, key, k=1, num_iters=100)
    out["power"], out["power_res"] = pw.values, pw.residuals
    out["hutchinson"] = curvature.hutchinson_trace(loss, params, key, num_probes=100).value
    out["frobenius"] = curvature.frobenius_sq(loss, params, key, num_probes=100).value
    if s:
      out["hutch_pp"] = curvature.hutch_pp_trace(loss, params, key, num_matvecs=3 * s)
    w, unravel = ravel_pytree(params)
    jac = jax.vmap(lambda xi: jax.jacobian(lambda v: model.apply(unravel(v), xi[None])[0])(w))(x)
    out["gn_ref"] = jnp.sum(jac**2) / x.shape[0]
    out["gn"] = curvature.gauss_newton_trace(model.apply, params, x)
    q = curvature.slq(loss, params, key, num_probes=1, num_steps=min(10, d))
    out["slq_nodes"], out["slq_weights"] = q.nodes[0], q.weights[0]
    # The probe slq used (same key splits), to compare the quadrature's moments with v^T H^r v.
    k_v = jax.random.split(jax.random.split(key, 1)[0])[0]
    out["slq_probe"] = jax.random.rademacher(k_v, (d,), jnp.int32).astype(jnp.float64)
    return out

  return {k: np.asarray(v, np.float64) for k, v in run(params, probe_key).items()}


def _ratios(sizes: tuple[int, ...], key: jax.Array, probe_key: jax.Array
            ) -> tuple[dict[str, float], int]:
  e = _estimates(sizes, key, probe_key)
  h = e["hessian"]
  ev = np.linalg.eigvalsh(h)
  d = h.shape[0]
  top = np.max(np.abs(ev))
  floor = 1e-10 * top
  out = {}
  out["lanczos_top3"] = np.max(np.abs(e["lanczos"] - ev[::-1][:3]) / (e["lanczos_res"] + floor))
  lm = ev[np.argmax(np.abs(ev))]
  out["power_top1"] = abs(e["power"][0] - lm) / (e["power_res"][0] + floor)
  m = 100
  h2 = h @ h
  sd_tr = np.sqrt(2 * (np.sum(h * h) - np.sum(np.diag(h) ** 2)) / m)
  sd_fr = np.sqrt(2 * (np.sum(h2 * h2) - np.sum(np.diag(h2) ** 2)) / m)
  out["hutchinson"] = abs(e["hutchinson"] - np.trace(h)) / (4 * sd_tr)
  out["frobenius"] = abs(e["frobenius"] - np.sum(h * h)) / (4 * sd_fr)
  if "hutch_pp" in e:
    s = HUTCH_PP_S
    tail = np.sort(np.abs(ev))[::-1][s // 2:]
    sd_pp = 2 / np.sqrt(s) * np.sqrt(np.sum(tail**2))
    out["hutch_pp"] = abs(e["hutch_pp"] - np.trace(h)) / (4 * sd_pp + floor)
  out["gauss_newton_trace"] = abs(e["gn"] - e["gn_ref"]) / (1e-10 * e["gn_ref"])
  v = e["slq_probe"] / np.linalg.norm(e["slq_probe"])
  worst = 0.0
  for r in range(4):
    quad = np.sum(e["slq_weights"] * e["slq_nodes"] ** r)
    ref = v @ np.linalg.matrix_power(h, r) @ v
    worst = max(worst, abs(quad - ref) / (1e-9 * top**r))
  out["slq_moments"] = worst
  return {k: float(v) for k, v in out.items()}, d


@functools.lru_cache(maxsize=16)
def _accuracy(preset: str, seed: int) -> dict:
  rows = {}
  worst = 0.0
  for i, sizes in enumerate(PRESETS[preset]["sizes"]):
    ratios, d = _ratios(sizes, registry.check_key(seed, f"problem{i}"),
                        registry.check_key(seed, f"probes{i}"))
    rows[f"mlp {sizes} d={d}"] = common.rounded(list(ratios.values()), 3)
    rows["estimators"] = list(ratios)
    worst = max(worst, max(ratios.values()))
  return dict(value=worst, rows=rows)


@register(
    id="stability.estimators_accuracy", paper=PAPER,
    claim="Lanczos, power iteration, Hutchinson, Hutch++, Frobenius, Gauss-Newton trace and SLQ agree "
          "with dense float64 eigendecompositions within their stated accuracy (1-5 MLP sizes); the "
          "largest error / stated tolerance",
    predicted="<= 1", band=(0.0, 1.0))
def accuracy(preset: str, seed: int) -> Measurement:
  m = _accuracy(preset, seed)
  return Measurement(value=m["value"], details=m["rows"])


@register(
    id="stability.hutchinson_rate", paper=PAPER,
    claim="Hutchinson's trace estimate: RMS relative error over independent draws ~ probes^(-1/2); "
          "log-log slope over 4, 16, 64, 256 probes (statistical: 200 draws give a bootstrap "
          "standard error ~0.015, so the band is ~3 standard errors, expected failure rate <~ 1%)",
    predicted="-0.5", band=(-0.55, -0.45))
def hutchinson_rate(preset: str, seed: int) -> Measurement:
  draws = PRESETS[preset]["draws"]
  _, params, _, loss = problem((6, 10, 3), registry.check_key(seed, "hutchinson_problem"))
  h = np.asarray(curvature.dense_hessian(loss, params))
  tr = np.trace(h)
  # One compile: draws x 64 independent 4-probe estimates; the mean of k of them is exactly a
  # 4k-probe Hutchinson estimate (independent Rademacher probes), for k = 1, 4, 16, 64.
  keys = jax.random.split(registry.check_key(seed, "hutchinson_probes"), draws * 64)
  est4 = jax.jit(jax.vmap(lambda k: curvature.hutchinson_trace(loss, params, k, num_probes=4).value))
  est4 = np.asarray(est4(keys)).reshape(draws, 64)
  rms, predicted = [], []
  for m in PROBES:
    est = est4[:, : m // 4].mean(axis=1)
    rms.append(float(np.sqrt(np.mean((est - tr) ** 2))) / abs(tr))
    predicted.append(np.sqrt(2 * (np.sum(h * h) - np.sum(np.diag(h) ** 2)) / m) / abs(tr))
  fit = fitting.loglog_slope(PROBES, rms)
  # The slope's sampling error: bootstrap over the independent draws (rows of est4).
  rng = np.random.default_rng(registry.check_seed(seed, "hutchinson_bootstrap"))
  rows = rng.integers(0, draws, (BOOTSTRAP, draws))
  boot_rms = np.stack([np.sqrt(np.mean((est4[rows, : m // 4].mean(axis=2) - tr) ** 2, axis=1))
                       for m in PROBES], axis=1)  # (BOOTSTRAP, len(PROBES))
  boot_slope = np.polyfit(np.log(PROBES), np.log(boot_rms).T, 1)[0]
  return Measurement(value=fit.slope, details={
      "slope_standard_error (bootstrap)": common.rounded(np.std(boot_slope)),
      "band_half_width_in_standard_errors": common.rounded(0.05 / np.std(boot_slope), 3),
      "probes": list(PROBES), "rms_relative_error": common.rounded(rms),
      "predicted_rms": common.rounded(predicted),
      "measured_over_predicted": common.rounded(np.array(rms) / np.array(predicted)),
      "r2": common.rounded(fit.r2, 6), "draws": draws})
