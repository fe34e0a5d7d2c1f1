"""Models of the paper and their norm identities (tr G vs l1 norm, path norm, balancedness)."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from jaxopt_lab.stability import curvature, models


class ModelsTest(absltest.TestCase):

  def test_diagonal_trace_identity_and_l1_bound(self):
    model = models.diagonal_net(7)
    params = model.init(jax.random.key(0), jnp.float64)
    data = models.sparse_regression_data(jax.random.key(1), d=7, n=50, sparsity=2)
    gn = float(curvature.gauss_newton_trace(model.apply, params, data.x))
    s2 = jnp.mean(data.x**2, axis=0)
    np.testing.assert_allclose(gn, float(models.diagonal_trace(params, s2)), rtol=1e-12)
    norms = models.diagonal_norms(params)
    self.assertGreaterEqual(gn, 2 * float(jnp.min(s2)) * float(norms["l1"]))
    np.testing.assert_allclose(float(data.y[0]), float(data.x[0, :2].sum()), rtol=1e-12)

  def test_relu_population_trace_and_path_norm(self):
    d, m = 5, 6
    model = models.relu_net(d, m, w_std=0.7, a_std=0.9)
    params = model.init(jax.random.key(2), jnp.float64)
    # Monte Carlo tr G over 20000 sphere points: relative standard error ~1%; 4% is 4 sigma.
    x = models.sphere(jax.random.key(3), 20000, d)
    np.testing.assert_allclose(float(curvature.gauss_newton_trace(model.apply, params, x)),
                               float(models.relu_population_trace(params)), rtol=0.04)
    np.testing.assert_allclose(jnp.linalg.norm(x, axis=1), np.sqrt(d), rtol=1e-12)
    pop = float(models.relu_population_trace(params))
    self.assertGreaterEqual(pop, np.sqrt(d) * float(models.path_norm(params)))
    # Balanced neurons (|w_j| = sqrt(d) |a_j|) reach the AM-GM bound with equality.
    w = params["w"]
    bal = {"w": w, "a": jnp.linalg.norm(w, axis=1) / np.sqrt(d)}
    np.testing.assert_allclose(float(models.relu_population_trace(bal)),
                               np.sqrt(d) * float(models.path_norm(bal)), rtol=1e-12)

  def test_balancedness_conserved_by_small_step_gd(self):
    model = models.relu_net(4, 3)
    params = model.init(jax.random.key(4), jnp.float64)
    data = models.relu_teacher_data(jax.random.key(5), d=4, n=20)
    loss = lambda p: models.mse(model.apply(p, data.x), data.y)
    step = jax.jit(lambda p: jax.tree.map(lambda a, g: a - 1e-3 * g, p, jax.grad(loss)(p)))
    per_neuron = lambda p: p["a"] ** 2 - jnp.sum(p["w"] ** 2, axis=1)
    b0 = per_neuron(params)
    p = params
    for _ in range(50):
      p = step(p)
    # Gradient flow conserves a_j^2 - |w_j|^2 exactly; GD with step 1e-3 changes it by O(eta^2)
    # per step: bounded by 50 * 1e-6 * |grad|^2 (~1e-4 here).
    np.testing.assert_allclose(per_neuron(p), b0, atol=1e-3)
    self.assertGreater(float(jnp.max(jnp.abs(p["a"] - params["a"]))), 1e-3)  # it did move

  def test_digits_and_mlp(self):
    data = models.digits_data(n_train=100, n_test=30)
    self.assertEqual(data.x.shape, (100, 64))
    self.assertEqual(data.y.shape, (100, 10))
    np.testing.assert_allclose(np.asarray(data.y).sum(axis=1), 1.0)
    np.testing.assert_allclose(np.asarray(data.x).mean(axis=0), 0.0, atol=1e-12)
    model = models.tanh_mlp((64, 8, 10))
    out = model.apply(model.init(jax.random.key(0), jnp.float64), data.x_test)
    self.assertEqual(out.shape, (30, 10))
    with self.assertRaisesRegex(ValueError, "n_train"):
      models.digits_data(n_train=2000)

  def test_validation(self):
    with self.assertRaisesRegex(ValueError, "one shape"):
      models.mse(jnp.ones((3,)), jnp.ones((3, 1)))
    with self.assertRaisesRegex(ValueError, "sparsity"):
      models.sparse_regression_data(jax.random.key(0), d=3, n=4, sparsity=5)
    with self.assertRaisesRegex(ValueError, "sizes"):
      models.tanh_mlp((3,))


if __name__ == "__main__":
  absltest.main()
