"""Exact linear stability: the operator form against the d^2 x d^2 dense reference, limits, simulators."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.stability import linear_stability as ls
from jaxopt_lab.stability import models


def _factors(n, k, d, seed=0):
  g = jax.random.normal(jax.random.key(seed), (n, k, d), jnp.float64)
  return g * jnp.linspace(0.5, 2.0, n)[:, None, None] / np.sqrt(d)


def _enumerated_second_moment_map(f, eta, b):
  """E_xi[A (x) A], A = I - eta/B sum_{i in xi} g_i g_i^T, by enumerating every B-subset (d^2 x d^2).

  Independent of the library's noise factor: the batch average is taken literally."""
  f = np.asarray(f, np.float64).reshape(f.shape[0], -1, f.shape[-1])
  n, _, d = f.shape
  hs = np.einsum("nkd,nke->nde", f, f)
  subsets = list(itertools.combinations(range(n), b))
  out = np.zeros((d * d, d * d))
  for xi in subsets:
    a = np.eye(d) - eta * hs[list(xi)].mean(axis=0)
    out += np.kron(a, a)
  return out / len(subsets)


class ThresholdTest(parameterized.TestCase):

  def test_noise_factor_pinned_at_intermediate_batch_sizes(self):
    # p = (n - B) / (B (n - 1)): the variance factor of a uniform B-subset mean, at 1 < B < n.
    self.assertAlmostEqual(ls.noise_factor(12, 3), 9 / 33, places=15)
    self.assertAlmostEqual(ls.noise_factor(12, 6), 6 / 66, places=15)
    self.assertAlmostEqual(ls.noise_factor(7, 2), 5 / 12, places=15)
    self.assertAlmostEqual(ls.noise_factor(12, 3, replacement=True), 1 / 3, places=15)

  @parameterized.parameters(2, 3, 4)
  def test_second_moment_and_threshold_against_batch_enumeration(self, b):
    # n = 6 > d = 4: range(H) is everything. Every B-subset enumerated, no noise factor involved.
    f = _factors(6, 1, 4, seed=7)
    hs = ls.hessians_from_factors(f)
    es = float(ls.threshold(f, b))
    enum = _enumerated_second_moment_map(f, 0.7 * es, b)
    np.testing.assert_allclose(ls.second_moment_operator_dense(hs, 0.7 * es, b), enum, atol=1e-13)
    # One step of the library's recursion from S_0 = I equals the enumerated map's.
    lt = ls.second_moment_log_trace(f, 0.7 * es, b, num_steps=1)
    np.testing.assert_allclose(float(lt[1]), np.log(np.trace((enum @ np.eye(4).ravel()).reshape(4, 4))),
                               rtol=1e-12)
    # eta* is exactly where the enumerated map's spectral radius reaches 1.
    rho = np.linalg.eigvalsh(_enumerated_second_moment_map(f, es, b))[-1]
    np.testing.assert_allclose(rho, 1.0, atol=1e-10)

  def test_threshold_dense_on_rank_deficient_degenerate_spectrum(self):
    # n = 4 orthogonal equal-norm gradients in d = 9: H has a 4-fold eigenvalue and a 5-dim null space;
    # eta*(1) = 2 / tr(H) exactly. (The d^2 pseudo-inverse form was off by up to 0.57% here.)
    q = jnp.linalg.qr(jax.random.normal(jax.random.key(8), (9, 4), jnp.float64))[0].T * 1.3
    hs = ls.hessians_from_factors(q)
    np.testing.assert_allclose(ls.threshold_dense(hs, 1), 2 / 1.3**2, rtol=1e-12)
    for b in (2, 3):
      np.testing.assert_allclose(ls.threshold_dense(hs, b), float(ls.threshold(q, b)), rtol=1e-10)

  @parameterized.named_parameters(
      ("n_lt_d_B1", 6, 1, 9, 1, False),
      ("n_lt_d_B2_with_replacement", 6, 1, 9, 2, True),
      ("n_gt_d_B3", 10, 1, 5, 3, False),
      ("vector_outputs_B2", 4, 2, 6, 2, False),
  )
  def test_operator_form_equals_dense_reference(self, n, k, d, b, replacement):
    f = _factors(n, k, d)
    dense = ls.threshold_dense(ls.hessians_from_factors(f), b, replacement=replacement)
    for method in ("dense", "lanczos"):
      op = float(ls.threshold(f, b, replacement=replacement, method=method))
      np.testing.assert_allclose(op, dense, rtol=1e-9, err_msg=method)

  def test_limits_and_bounds(self):
    n, d = 8, 12
    f = _factors(n, 1, d, seed=1)
    etas = [float(ls.threshold(f, b)) for b in range(1, n + 1)]
    self.assertTrue(np.all(np.diff(etas) >= -1e-12), etas)  # non-decreasing in B
    lam = np.linalg.eigvalsh(np.asarray(ls.hessians_from_factors(f).mean(0)))
    np.testing.assert_allclose(etas[-1], 2 / lam[-1], rtol=1e-10)  # B = n: GD's threshold
    np.testing.assert_allclose(float(ls.trace_bound(f, 1)), 2 / lam.sum(), rtol=1e-12)
    self.assertLessEqual(etas[0], float(ls.necessary_bound(f, 1)) * (1 + 1e-12))
    self.assertLessEqual(float(ls.necessary_bound(f, 1)), float(ls.trace_bound(f, 1)) * (1 + 1e-12))
    wme = ls.wu_ma_e(f, 1)
    np.testing.assert_allclose(float(wme.sharpness), lam[-1], rtol=1e-10)
    # Orthogonal equal-norm gradients: eta* = 2 / tr(H), and Wu-Ma-E is exact there.
    q = jnp.linalg.qr(jax.random.normal(jax.random.key(2), (d, n), jnp.float64))[0].T * 1.3
    tr = 1.3**2
    np.testing.assert_allclose(float(ls.threshold(q, 1)), 2 / tr, rtol=1e-10)
    np.testing.assert_allclose(float(ls.wu_ma_e(q, 1).eta_bound), 2 / tr, rtol=1e-10)

  def test_dense_second_moment_operator_changes_stability_at_eta_star(self):
    f = _factors(5, 1, 4, seed=3)
    hs = ls.hessians_from_factors(f)
    es = float(ls.threshold(f, 2))
    rho = lambda eta: np.max(np.abs(np.linalg.eigvals(ls.second_moment_operator_dense(hs, eta, 2))))
    self.assertLess(rho(0.99 * es), 1.0)
    self.assertGreater(rho(1.01 * es), 1.0)

  def test_recursion_matches_dense_operator_and_monte_carlo(self):
    n, d = 8, 5  # n > d: range(H) is everything, so tr S_t is the same in both coordinates
    f = _factors(n, 1, d, seed=4)
    es = float(ls.threshold(f, 1))
    eta = 0.8 * es
    q = ls.second_moment_operator_dense(ls.hessians_from_factors(f), eta, 1)
    s = np.eye(d).ravel()
    ref = [np.log(d)]
    for _ in range(60):
      s = q @ s
      ref.append(np.log(np.trace(s.reshape(d, d))))
    lt = ls.second_moment_log_trace(f, eta, 1, num_steps=60)
    np.testing.assert_allclose(lt, ref, rtol=1e-10, atol=1e-10)
    # Monte Carlo from delta_0 = G^T z / sqrt(n), whose second moment is H (s0 = diag(lam)).
    rc = ls.range_coordinates(f)
    lt0 = ls.second_moment_log_trace(f, eta, 1, num_steps=40, s0=jnp.diag(rc.lam))
    mc = ls.simulate_linear_sgd(f, eta, 1, jax.random.key(5), num_runs=4000, num_steps=40)
    # 4000 runs below eta*: the sheet measured agreement within 2%; 8% allows for heavy tails.
    np.testing.assert_allclose(np.asarray(mc)[[10, 20, 40]], np.exp(np.asarray(lt0))[[10, 20, 40]],
                               rtol=0.08)

  def test_validation(self):
    f = _factors(4, 1, 6)
    with self.assertRaisesRegex(ValueError, "batch size"):
      ls.threshold(f, 5)
    with self.assertRaisesRegex(ValueError, "batch size"):
      ls.threshold(f, 0)
    with self.assertRaisesRegex(ValueError, "method"):
      ls.threshold(f, 1, method="svd")
    with self.assertRaisesRegex(ValueError, "factors"):
      ls.threshold(jnp.ones(3), 1)

  def test_analyze_at_a_minimum_and_refuses_a_non_minimum(self):
    model = models.diagonal_net(6)
    params = model.init(jax.random.key(0), jnp.float64)
    x = jax.random.normal(jax.random.key(1), (4, 6), jnp.float64)
    y = model.apply(params, x)  # an interpolating minimum by construction
    res = ls.analyze(model.apply, params, x, y, 1)
    grads = ls.factors_at(model.apply, params, x, y)
    np.testing.assert_allclose(float(res.eta_star), float(ls.threshold(grads, 1)), rtol=1e-12)
    self.assertLessEqual(float(res.eta_star), float(res.gd_threshold))
    with self.assertRaisesRegex(ValueError, r"not a minimum: the gradient norm is"):
      ls.analyze(model.apply, params, x, y + 0.1, 1)


if __name__ == "__main__":
  absltest.main()
