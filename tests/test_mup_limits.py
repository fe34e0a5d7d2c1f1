"""Infinite-width limits: P/Q recursion vs NumPy, finite nets vs particles, quadrature accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.mup import limits
from jaxopt_lab.mup.parametrization import MLP, Task, preset, train_algorithm

X = np.array([[1.0, 0.2], [-0.5, 0.4], [0.3, -1.0]])
Y = np.array([[1.0, 0.0], [0.5, -0.3], [-0.4, 0.2]])
XE = np.array([[0.7, 0.1], [-1.0, 0.5]])
B = np.array([[0, 1], [2, 0], [1, 2], [0, 2], [1, 0], [2, 1]])


def _numpy_linear_limit(x, y, batches, xe, lr, gram=None):
  d, do = x.shape[1], y.shape[1]
  D = d + do
  g = np.eye(D) if gram is None else gram
  P, Q = np.eye(D)[:d], np.eye(D)[d:]
  out = [xe @ P @ g @ Q.T]
  for idx in batches:
    xb = x[idx]
    chi = (xb @ P @ g @ Q.T - y[idx]) / len(idx)
    P, Q = P - lr * xb.T @ chi @ Q, Q - lr * chi.T @ xb @ P
    out.append(xe @ P @ g @ Q.T)
  return np.stack(out)


class LinearLimitTest(absltest.TestCase):

  def test_recursion_matches_numpy(self):
    res = limits.linear_limit(X, Y, B, XE, lr=0.3)
    np.testing.assert_allclose(res.f, _numpy_linear_limit(X, Y, B, XE, 0.3), rtol=1e-12, atol=1e-14)
    sub = limits.linear_limit(X, Y, B, XE, lr=0.3, record_every=3)
    np.testing.assert_allclose(sub.f, res.f[::3], rtol=1e-13)
    self.assertEqual(list(sub.steps), [0, 3, 6])

  def test_finite_width_is_the_particle_network(self):
    key = jax.random.key(5)
    fin = limits.linear_finite(key, 9, X, Y, B, XE, lr=0.3, gram_method="omega")
    part = limits.finite_network(key, 9, X, Y, B, XE, lr=0.3, activation="identity")
    np.testing.assert_allclose(fin.f, part.f, rtol=1e-12, atol=1e-14)
    gram = limits.sample_gram(key, 9, 4, method="omega")
    np.testing.assert_allclose(fin.f, _numpy_linear_limit(X, Y, B, XE, 0.3, np.asarray(gram)),
                               rtol=1e-12, atol=1e-14)

  def test_bartlett_gram_has_the_wishart_moments(self):
    keys = jax.random.split(jax.random.key(0), 4000)
    g = jax.vmap(lambda k: limits.sample_gram(k, 50.0, 3))(keys)
    # E[G] = I, Var[G_ii] = 2/n, Var[G_ij] = 1/n; 4000 samples: 5 standard errors.
    np.testing.assert_allclose(g.mean(0), np.eye(3), atol=5 * np.sqrt(2 / 50 / 4000))
    np.testing.assert_allclose(g[:, 0, 0].var(), 2 / 50, rtol=0.15)
    np.testing.assert_allclose(g[:, 0, 1].var(), 1 / 50, rtol=0.15)

  def test_memory_is_constant_in_the_number_of_steps(self):
    def temp_bytes(steps):
      b = jnp.zeros((steps, 2), jnp.int32)
      c = jax.jit(lambda lr: limits.linear_limit(X, Y, b, XE, lr=lr, record_every=steps).f).lower(
          0.1).compile()
      return c.memory_analysis().temp_size_in_bytes
    # Only the (steps, batch) index array itself grows (int32); the recursion's state does not.
    self.assertLessEqual(temp_bytes(10_000) - temp_bytes(10), 4 * 2 * (10_000 - 10))


class NonlinearLimitTest(parameterized.TestCase):

  def test_identity_quadrature_reproduces_the_linear_limit(self):
    lin = limits.linear_limit(X[:, :1], Y[:, :1], B, XE[:, :1], lr=0.3)
    quad = limits.nonlinear_limit(X[:, :1], Y[:, :1], B, XE[:, :1], lr=0.3, activation="identity",
                                  h=0.1)
    self.assertEqual((quad.method, quad.dim), ("quadrature", 2))
    # The trapezoid rule is exact to ~1e-15 on polynomials times a Gaussian.
    np.testing.assert_allclose(quad.f, lin.f, atol=1e-12)

  @parameterized.parameters("tanh", "gelu")
  def test_trapezoid_converges_and_monte_carlo_agrees(self, activation):
    x, y, xe = X[:, :1], Y[:, :1], XE[:, :1]
    coarse = limits.nonlinear_limit(x, y, B, xe, lr=0.5, activation=activation, h=0.1)
    fine = limits.nonlinear_limit(x, y, B, xe, lr=0.5, activation=activation, h=0.05)
    np.testing.assert_allclose(coarse.f, fine.f, atol=1e-9)  # spectral convergence in h
    mc = limits.nonlinear_limit(x, y, B, xe, lr=0.5, activation=activation, method="monte_carlo",
                                key=jax.random.key(1), mc_particles=8192, mc_replicas=8)
    self.assertEqual(mc.method, "monte_carlo")
    # Monte Carlo within 5 standard errors (plus its O(1/particles) bias).
    err = np.abs(np.asarray(mc.f - fine.f))
    self.assertTrue(np.all(err <= 5 * np.asarray(mc.stderr) + 2e-4), (err, mc.stderr))

  def test_high_dimension_falls_back_to_monte_carlo(self):
    with self.assertRaisesRegex(ValueError, "pass a key"):
      limits.nonlinear_limit(X, Y, B, XE, lr=0.1, max_nodes=1000)
    res = limits.nonlinear_limit(X, Y, B, XE, lr=0.1, max_nodes=1000, key=jax.random.key(0),
                                 mc_particles=512, mc_replicas=4)
    self.assertEqual((res.method, res.dim), ("monte_carlo", 4))
    self.assertTrue(np.all(np.asarray(res.stderr) > 0))

  def test_particle_network_is_the_mup_mlp(self):
    # finite_network == MLP(muP, L = 1, base width 1) trained by SGD, for d = 1.
    x, y, xe = X[:, :1], Y[:, :1], XE[:, :1]
    batches = np.tile(np.arange(3), (4, 1))
    key = jax.random.key(2)
    part = limits.finite_network(key, 64, x, y, batches, xe, lr=0.5, activation="tanh")
    net = MLP(preset("mup", 1), 1, 64, 1, activation="tanh")
    z = jax.random.normal(key, (64, 2), jnp.float64)
    params = ({"w": (z[:, 0] * 64 ** -0.5)[None, :]}, {"w": (z[:, 1] * 64 ** -0.5)[:, None]})
    # Same init numbers: W^1 = m^{1/2} w^1 = u, W^2 = m^{-1/2} w^2 = v / n.
    np.testing.assert_allclose(net.effective_params(params)[0]["w"][0], z[:, 0], rtol=1e-13)
    alg = train_algorithm(net)
    state = alg.init(jax.random.key(0), Task(jnp.asarray(x), jnp.asarray(y)))
    state = state._replace(params=params)
    state = state._replace(grads=jax.grad(lambda p: 0.5 * jnp.sum((net.apply(p, x) - y) ** 2) / 3)(params))
    for _ in range(4):
      state, _ = alg.step(state, Task(jnp.asarray(x), jnp.asarray(y)), lr=0.5)
    np.testing.assert_allclose(net.apply(state.params, xe), part.f[-1], rtol=1e-11)

  def test_kernel_limits_and_finite_widths_converge(self):
    x, y, xe = X[:, :1], Y[:, :1], XE[:, :1]
    ntk = limits.kernel_limit(x, y, B, xe, lr=0.01)
    quad = limits.nonlinear_limit(x, y, B, xe, lr=0.01, h=0.1)
    # At small lr the muP limit is the NTK limit to first order in lr (per step: O(lr^2)).
    np.testing.assert_allclose(quad.f, ntk.f, atol=5e-4)
    nngp = limits.kernel_limit(x, y, B, xe, lr=0.5, kernel="nngp")
    self.assertEqual(nngp.f.shape, (7, 2, 1))
    keys = jax.random.split(jax.random.key(0), 32)
    lim = limits.nonlinear_limit(x, y, B, xe, lr=0.5, h=0.1).f[-1]
    rms = [float(jnp.sqrt(jnp.mean(jnp.square(jax.vmap(
        lambda k: limits.finite_network(k, n, x, y, B, xe, lr=0.5, max_width=4096).f[-1])(keys)
        - lim[None])))) for n in (64, 4096)]
    self.assertLess(rms[1], rms[0] / 4)  # 64x wider: 8x closer at n^-1/2 (seed noise: 4x)

  def test_validation(self):
    with self.assertRaisesRegex(ValueError, "loss"):
      limits.linear_limit(X, Y, B, XE, lr=0.1, loss="l1")
    with self.assertRaisesRegex(ValueError, "batches"):
      limits.linear_limit(X, Y, B[0], XE, lr=0.1)
    with self.assertRaisesRegex(ValueError, "record_every"):
      limits.linear_limit(X, Y, B, XE, lr=0.1, record_every=4)
    with self.assertRaisesRegex(ValueError, "x_eval"):
      limits.linear_limit(X, Y, B, XE[:, :1], lr=0.1)
    with self.assertRaisesRegex(ValueError, "width"):
      limits.finite_network(jax.random.key(0), 0, X, Y, B, XE, lr=0.1)
    with self.assertRaisesRegex(ValueError, "num_classes"):
      limits.linear_limit(X, np.array([0, 1, 0]), B, XE, lr=0.1, loss="xent")
    with self.assertRaisesRegex(ValueError, "kernel"):
      limits.kernel_limit(X, Y, B, XE, lr=0.1, kernel="cntk")
    xent = limits.linear_limit(X, np.array([0, 1, 2]), B, XE, lr=0.1, loss="xent", num_classes=3)
    self.assertEqual(xent.f.shape, (7, 2, 3))


if __name__ == "__main__":
  absltest.main()
