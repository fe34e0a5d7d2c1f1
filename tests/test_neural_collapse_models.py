"""Tests of the UFM, eq. 2, their closed forms and the L-BFGS solvers (jaxopt_lab.neural_collapse)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.neural_collapse import metrics, models, solvers

K, N, D = 4, 5, 6          # the quick preset's UFM size: tests and checks share compiled solvers
PK, PN, PD = 4, 10, 10     # eq. 2 at the fact sheet's size (shared with the theory checks)
SQRT2 = math.sqrt(2.0)


def class_means(H, k):
  d, n_total = H.shape
  return np.asarray(H).reshape(d, k, n_total // k).mean(axis=2)


class ClosedFormTest(parameterized.TestCase):

  def test_sheet_values(self):
    # Golden values from the fact sheet (derived, confirmed to 10 digits there). Update only if the
    # sheet's normalization of eq. 1 or of the CE UFM changes.
    self.assertAlmostEqual(float(models.mse_closed_form(4, SQRT2, 0.1).f_star), 0.3053496312,
                           places=10)
    self.assertAlmostEqual(float(models.ce_closed_form(4, 5, 5e-3, 5e-3).f_star), 0.1836919957,
                           places=10)

  def test_mse_closed_form_is_the_loss_of_the_construction(self):
    star = models.collapsed_minimizer(jax.random.key(0), num_classes=K, n=N, d=D, lambda_W=0.3,
                                      lambda_H=0.2)
    cf = models.mse_closed_form(K, 0.3, 0.2)
    f = models.mse_loss(star, num_classes=K, lambda_W=0.3, lambda_H=0.2)
    np.testing.assert_allclose(f, cf.f_star, rtol=1e-13)
    Hbar = class_means(star.H, K)
    np.testing.assert_allclose(Hbar.T @ Hbar, cf.rho * np.eye(K), atol=1e-13)
    np.testing.assert_allclose(np.asarray(star.W) @ Hbar, (1 - cf.c) * np.eye(K), atol=1e-13)
    g = jax.grad(models.mse_loss)(star, num_classes=K, lambda_W=0.3, lambda_H=0.2)
    self.assertLess(float(jnp.max(jnp.abs(g.W))) + float(jnp.max(jnp.abs(g.H))), 1e-14)

  def test_trivial_thresholds(self):
    self.assertTrue(bool(models.mse_closed_form(4, 2.0, 0.5).trivial))     # c = 1
    self.assertFalse(bool(models.mse_closed_form(4, 2.0, 0.49).trivial))
    self.assertEqual(float(models.mse_closed_form(4, 2.0, 1.0).f_star), 0.5)
    self.assertEqual(float(models.mse_closed_form(4, 2.0, 1.0, bias=True).f_star), 3 / 8)
    self.assertTrue(bool(models.ce_closed_form(4, 4, 0.125, 0.125).trivial))  # sqrt(n lW lH) = 1/K
    self.assertAlmostEqual(float(models.ce_closed_form(4, 4, 0.2, 0.2).f_star), math.log(4), 12)


class CentralPathTest(parameterized.TestCase):

  def test_optimal_classifier_matches_numpy(self):
    rng = np.random.default_rng(0)
    H = rng.normal(size=(D, K * N))
    Y = np.kron(np.eye(K), np.ones((1, N)))
    ref = Y @ H.T @ np.linalg.inv(H @ H.T + N * 0.7 * np.eye(D))
    W = models.optimal_classifier(jnp.asarray(H), num_classes=K, lambda_W=0.7)
    np.testing.assert_allclose(W, ref, rtol=1e-11)
    # and it is where eq. 1's W-gradient vanishes
    g = jax.grad(models.mse_loss)(models.UFMParams(W, jnp.asarray(H), jnp.zeros(K)), num_classes=K,
                                  lambda_W=0.7, lambda_H=0.3)
    self.assertLess(float(jnp.max(jnp.abs(g.W))), 1e-14)

  def test_field_is_minus_kn_reduced_gradient(self):
    # Envelope theorem and the clock of the flow: v(H) = -Kn grad L(H).
    H = jax.random.normal(jax.random.key(1), (D, K * N))
    v = models.central_path_field(H, num_classes=K, lambda_W=0.7, lambda_H=0.3)
    g = jax.grad(models.reduced_loss)(H, num_classes=K, lambda_W=0.7, lambda_H=0.3)
    np.testing.assert_allclose(v, -K * N * g, rtol=1e-10, atol=1e-13)


class SolverTest(parameterized.TestCase):

  # The CE solver and more hyperparameters are covered by theory check neural_collapse.ufm_closed_forms
  # (tests/test_theory_checks_neural_collapse.py); here one case per compiled program.
  @parameterized.parameters((SQRT2, 0.1))
  def test_mse_reaches_closed_form(self, lw, lh):
    res = solvers.solve_ufm_mse(jax.random.key(0), num_classes=K, n=N, d=D, lambda_W=lw, lambda_H=lh)
    cf = models.mse_closed_form(K, lw, lh)
    W, H, _ = res.params
    Hbar = class_means(H, K)
    # L-BFGS stops at |grad| <= 1e-13; the minimizer is then accurate to ~1e-11 (1e-9 leaves room).
    self.assertAlmostEqual(float(res.value), float(cf.f_star), places=12)
    np.testing.assert_allclose(Hbar.T @ Hbar, cf.rho * np.eye(K), atol=1e-9)
    np.testing.assert_allclose(np.asarray(W) @ Hbar, (1 - cf.c) * np.eye(K), atol=1e-9)
    m = metrics.collapse_metrics(H, W=W, b=res.params.b, num_classes=K)   # b = 0 here
    self.assertLess(float(m["nc1"]), 1e-10)

  def test_mse_with_bias_reaches_closed_form(self):
    res = solvers.solve_ufm_mse(jax.random.key(1), num_classes=K, n=N, d=D, lambda_W=0.1,
                                lambda_H=0.2, bias=True)
    cf = models.mse_closed_form(K, 0.1, 0.2, bias=True)
    W, H, b = res.params
    Hbar = class_means(H, K)
    self.assertAlmostEqual(float(res.value), float(cf.f_star), places=12)
    np.testing.assert_allclose(b, np.full(K, 1 / K), atol=1e-9)
    np.testing.assert_allclose(Hbar.T @ Hbar, cf.rho * (np.eye(K) - 1 / K), atol=1e-9)

  def test_trivial_regime_gives_zero(self):
    res = solvers.solve_ufm_mse(jax.random.key(3), num_classes=K, n=N, d=D, lambda_W=2.0,
                                lambda_H=1.0)
    self.assertLess(float(jnp.max(jnp.abs(res.params.H))), 1e-8)
    self.assertLess(float(jnp.max(jnp.abs(res.params.W))), 1e-8)

  def test_vmap_over_seeds_equals_loop_and_compiles_once(self):
    keys = jax.random.split(jax.random.key(4), 2)
    solve = lambda key: solvers.solve_ufm_mse(key, num_classes=K, n=N, d=D, lambda_W=SQRT2,
                                              lambda_H=0.1)
    batched = jax.vmap(solve)(keys)
    solve(keys[0])
    before = solvers._solve_mse._cache_size()
    for i in range(2):
      single = solve(keys[i])
      np.testing.assert_allclose(batched.params.H[i], single.params.H, rtol=1e-9, atol=1e-12)
    solvers.solve_ufm_mse(keys[0], num_classes=K, n=N, d=D, lambda_W=0.3, lambda_H=0.2)
    self.assertEqual(solvers._solve_mse._cache_size(), before)

  def test_perturbed_minimizer_is_an_implicit_step(self):
    H0 = models.gaussian_class_features(jax.random.key(5), num_classes=PK, n=PN, d=PD)
    beta = 50.0
    res = solvers.solve_perturbed(H0, num_classes=PK, lambda_W=SQRT2, lambda_H=0.1, beta=beta)
    H = res.params.H
    v = models.central_path_field(H, num_classes=PK, lambda_W=SQRT2, lambda_H=0.1)
    np.testing.assert_allclose(H, H0 + v / beta, atol=1e-11)
    W = models.optimal_classifier(H, num_classes=PK, lambda_W=SQRT2)
    np.testing.assert_allclose(res.params.W, W, atol=1e-10)

  def test_corollary_22_collapsed_anchor_is_the_minimizer(self):
    star = models.collapsed_minimizer(jax.random.key(6), num_classes=PK, n=PN, d=PD,
                                      lambda_W=SQRT2, lambda_H=0.1)
    res = solvers.solve_perturbed(star.H, num_classes=PK, lambda_W=SQRT2, lambda_H=0.1, beta=50.0)
    np.testing.assert_allclose(res.params.H, star.H, atol=1e-10)
    np.testing.assert_allclose(res.params.W, star.W, atol=1e-10)

  @parameterized.named_parameters(
      ("d_less_than_k", dict(d=3), "d = 3 < K = 4"),
      ("lambda_w_zero", dict(lambda_W=0.0), "lambda_W must be > 0"),
      ("lambda_h_negative", dict(lambda_H=-1.0), "lambda_H must be > 0"),
      ("lambda_nan", dict(lambda_H=float("nan")), "lambda_H must be finite"),
      ("one_class", dict(num_classes=1), "K >= 2"),
  )
  def test_validation(self, override, message):
    kw = dict(num_classes=K, n=N, d=D, lambda_W=1.0, lambda_H=0.1)
    kw.update(override)
    with self.assertRaisesRegex(ValueError, message):
      solvers.solve_ufm_mse(jax.random.key(0), **kw)

  def test_perturbed_validation(self):
    H0 = np.zeros((D, K * N + 1))
    with self.assertRaisesRegex(ValueError, "not a positive multiple of K"):
      solvers.solve_perturbed(H0, num_classes=K, lambda_W=1.0, lambda_H=0.1, beta=1.0)
    H0 = np.full((D, K * N), np.nan)
    with self.assertRaisesRegex(ValueError, "non-finite"):
      solvers.solve_perturbed(H0, num_classes=K, lambda_W=1.0, lambda_H=0.1, beta=1.0)
    with self.assertRaisesRegex(ValueError, "beta must be > 0"):
      solvers.solve_perturbed(np.zeros((D, K * N)), num_classes=K, lambda_W=1.0, lambda_H=0.1,
                              beta=0.0)
    with self.assertRaisesRegex(ValueError, "d = 2 < K = 4"):
      models.collapsed_minimizer(jax.random.key(0), num_classes=K, n=N, d=2, lambda_W=1.0,
                                 lambda_H=0.1)


if __name__ == "__main__":
  absltest.main()
