"""Tests of the perturbation operator F of Theorem 4.1 and Theorem 4.2's prediction."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.neural_collapse import models, perturbation, solvers

K, N, D = 4, 10, 10          # the paper's Fig. 1 size
LW = math.sqrt(2.0)


class OperatorTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.H0 = models.gaussian_class_features(jax.random.key(0), num_classes=K, n=N, d=D)
    cls.beta, cls.lh = 20.0, 0.1
    cls.res = solvers.solve_perturbed(cls.H0, num_classes=K, lambda_W=LW, lambda_H=cls.lh,
                                      beta=cls.beta)
    cls.F = perturbation.perturbation_operator(cls.H0, num_classes=K, lambda_W=LW, lambda_H=cls.lh,
                                               beta=cls.beta, minimizer=cls.res.params)

  def test_schur_complement_identity(self):
    # F = (beta/Kn) [Hess^{-1}]_HH equals (I + (Kn/beta) Hess L(H))^{-1}, L the reduced loss.
    hess = perturbation.reduced_hessian(self.res.params.H, num_classes=K, lambda_W=LW,
                                        lambda_H=self.lh)
    ref = np.linalg.inv(np.eye(D * K * N) + K * N / self.beta * np.asarray(hess))
    np.testing.assert_allclose(self.F, ref, atol=1e-10)

  def test_matches_finite_differences_of_the_solver(self):
    # F dH0 = d(minimizer)/d(H0) . dH0: a central difference of L-BFGS solves (step 1e-4; solver
    # error ~1e-12 / 1e-4 and the O(step^2) term leave ~1e-7).
    dH0 = jax.random.normal(jax.random.key(1), self.H0.shape)
    eps = 1e-4
    solve = lambda H0: solvers.solve_perturbed(H0, num_classes=K, lambda_W=LW, lambda_H=self.lh,
                                               beta=self.beta).params.H
    fd = (solve(self.H0 + eps * dH0) - solve(self.H0 - eps * dH0)) / (2 * eps)
    np.testing.assert_allclose((self.F @ dH0.reshape(-1)).reshape(self.H0.shape), fd, atol=1e-6)

  def test_large_beta_operator_error_is_second_order(self):
    errs = []
    for beta in (200.0, 400.0):
      H = solvers.solve_perturbed(self.H0, num_classes=K, lambda_W=LW, lambda_H=self.lh,
                                  beta=beta).params
      F = perturbation.perturbation_operator(self.H0, num_classes=K, lambda_W=LW, lambda_H=self.lh,
                                             beta=beta, minimizer=H)
      Fa = perturbation.large_beta_operator(self.H0, num_classes=K, lambda_W=LW, lambda_H=self.lh,
                                            beta=beta)
      errs.append(float(jnp.linalg.norm(F - Fa, 2)))
    self.assertBetween(errs[0] / errs[1], 3.6, 4.4)   # beta^-2: ratio 4 up to O(1/beta)

  def test_class_blocks_layout(self):
    F = np.arange((D * K * N) ** 2, dtype=np.float64).reshape(D * K * N, D * K * N)
    blocks = np.asarray(perturbation.class_blocks(F, num_classes=K, d=D))
    rows = lambda k: [i * K * N + k * N + j for i in range(D) for j in range(N)]
    for k, kp in ((0, 0), (1, 3), (3, 2)):
      np.testing.assert_array_equal(blocks[k, kp], F[np.ix_(rows(k), rows(kp))])

  def test_block_singular_values_match_numpy(self):
    sv = perturbation.block_singular_values(self.F, num_classes=K, d=D)
    blocks = np.asarray(perturbation.class_blocks(self.F, num_classes=K, d=D))
    np.testing.assert_allclose(sv[2, 1], np.linalg.svd(blocks[2, 1], compute_uv=False), atol=1e-13)


class Theorem42Test(parameterized.TestCase):

  def test_prediction_at_beta_100(self):
    lh, beta = 0.1, 100.0
    star = models.collapsed_minimizer(jax.random.key(2), num_classes=K, n=N, d=D, lambda_W=LW,
                                      lambda_H=lh)
    F = perturbation.perturbation_operator(star.H, num_classes=K, lambda_W=LW, lambda_H=lh,
                                           beta=beta, minimizer=star)
    sv = np.asarray(perturbation.block_singular_values(F, num_classes=K, d=D))
    pred = perturbation.theorem42_prediction(num_classes=K, d=D, lambda_W=LW, lambda_H=lh, beta=beta)
    # Sheet: 0.997348 measured vs 0.997341 predicted; the gap is O(beta^-2).
    np.testing.assert_allclose(sv[1, 1, -1], 0.997348, atol=5e-7)
    np.testing.assert_allclose(sv[1, 1, -1], pred.sigma_min_diag, rtol=1e-5)
    np.testing.assert_allclose(sv[1, 1, 0], 1.0, atol=1e-12)
    self.assertEqual(int(np.sum(np.abs(sv[1, 1] - 1) < 1e-10)), pred.num_unit_diag)
    self.assertLess(sv[0, 3, 1], 1e-15)                                  # rank one
    np.testing.assert_allclose(sv[0, 3, 0], pred.sigma_max_cross, rtol=5e-3)  # O(1/beta) relative

  def test_prediction_validation(self):
    with self.assertRaisesRegex(ValueError, "d = 3 < K = 4"):
      perturbation.theorem42_prediction(num_classes=4, d=3, lambda_W=1.0, lambda_H=0.1, beta=10.0)
    with self.assertRaisesRegex(ValueError, "does not apply"):
      perturbation.theorem42_prediction(num_classes=4, d=5, lambda_W=2.0, lambda_H=0.5, beta=10.0)
    with self.assertRaisesRegex(ValueError, "not square"):
      perturbation.class_blocks(np.zeros((30, 31)), num_classes=4, d=10)
    with self.assertRaisesRegex(ValueError, "beta must be > 0"):
      perturbation.large_beta_operator(np.zeros((D, K * N)), num_classes=K, lambda_W=1.0,
                                       lambda_H=0.1, beta=-1.0)


if __name__ == "__main__":
  absltest.main()
