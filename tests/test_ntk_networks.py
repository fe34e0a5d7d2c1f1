"""Tests of jaxopt_lab.ntk.networks: parametrizations, their kernel limits, and GD with the
engine."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab import engine
from jaxopt_lab.ntk import (MLP, MSEProblem, circle_inputs, empirical_ntk, gd_mse, mlp_kernels,
                            mse_loss, sphere_inputs, train_mse)


class MLPTest(parameterized.TestCase):

  def test_init_scales(self):
    widths = (3, 400, 300, 2)
    ntk_p = MLP(widths, sigma_w=2.0, sigma_b=0.5).init(jax.random.key(0))
    std_p = MLP(widths, sigma_w=2.0, sigma_b=0.5, parametrization="standard").init(
        jax.random.key(0))
    # 1.2e5 N(0,1) samples: the sample std is within 1% (~3.5 standard errors).
    np.testing.assert_allclose(np.std(ntk_p[1]["w"]), 1.0, rtol=1e-2)
    np.testing.assert_allclose(np.std(std_p[1]["w"]), 2.0 / np.sqrt(400), rtol=1e-2)
    np.testing.assert_allclose(np.std(std_p[1]["b"]), 0.5, rtol=0.1)  # 300 samples: ~2.4 sigma
    self.assertEqual([p["w"].shape for p in ntk_p], [(3, 400), (400, 300), (300, 2)])

  def test_apply_writes_out_the_scalings(self):
    net = MLP((2, 3, 1), "relu", sigma_w=1.5, sigma_b=0.2)
    params = net.init(jax.random.key(1))
    x = np.array([[0.3, -1.0]])
    w1, b1, w2, b2 = (np.asarray(params[l][k]) for l in (0, 1) for k in ("w", "b"))
    h1 = 1.5 / np.sqrt(2) * x @ w1 + 0.2 * b1
    ref = 1.5 / np.sqrt(3) * np.maximum(h1, 0) @ w2 + 0.2 * b2
    np.testing.assert_allclose(net.apply(params, x), ref, rtol=1e-14)

  @parameterized.parameters("ntk", "standard")
  def test_empirical_ntk_tends_to_the_analytic_kernel(self, parametrization):
    x = sphere_inputs(jax.random.key(2), 5, 3)
    errs = []
    for width in (32, 512):
      net = MLP((3, width, width, 1), "erf", sigma_w=1.5, sigma_b=0.3,
                parametrization=parametrization)
      theta = mlp_kernels(x, **net.kernel_kwargs()).ntk
      emp = jax.jit(jax.vmap(lambda k: empirical_ntk(net, net.init(k), x)))(
          jax.random.split(jax.random.key(width), 4))
      errs.append(float(np.mean(np.linalg.norm(emp - theta[None], axis=(1, 2)))
                        / np.linalg.norm(theta)))
    # Error ~ width^-1/2: measured ~0.3 and ~0.07; a wrong width factor in either parametrization's
    # kernel would leave an O(1) error at width 512.
    self.assertLess(errs[1], 0.15)
    self.assertLess(errs[1], 0.5 * errs[0])

  def test_validation(self):
    for kwargs, name in [(dict(widths=(3,)), "widths"), (dict(widths=(3, 0, 1)), "widths"),
                         (dict(activation="nope"), "activation"), (dict(sigma_w=-1.0), "sigma_w"),
                         (dict(parametrization="mup"), "parametrization")]:
      with self.assertRaisesRegex(ValueError, f"^{name}"):
        MLP(**{"widths": (3, 4, 1), **kwargs})

  def test_inputs(self):
    gamma, x = circle_inputs(8)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.diff(gamma), 2 * np.pi / 8, rtol=1e-12)
    s = sphere_inputs(jax.random.key(0), 6, 5)
    np.testing.assert_allclose(np.linalg.norm(s, axis=1), 1.0, rtol=1e-14)


class TrainingTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    gamma, self.x = circle_inputs(6)
    self.y = jnp.sin(2 * gamma)[:, None]
    self.net = MLP((2, 16, 16, 1), "relu", sigma_b=0.1)

  def test_step_is_gradient_descent_and_reports_loss_after_update(self):
    alg = gd_mse(self.net)
    problem = MSEProblem(self.x, self.y)
    loss = lambda p: mse_loss(self.net, p, self.x, self.y)

    @jax.jit
    def one_step(key):
      state = alg.init(key, problem)
      new, metrics = alg.step(state, problem, lr=0.3)
      expected = jax.tree.map(lambda p, g: p - 0.3 * g, state.params, jax.grad(loss)(state.params))
      r = self.net.apply(expected, self.x) - self.y
      return new, metrics, expected, 0.5 * jnp.mean(jnp.sum(r**2, axis=1))

    new, metrics, expected, manual_loss = one_step(jax.random.key(0))
    chex.assert_trees_all_close(new.params, expected, rtol=1e-14)
    np.testing.assert_allclose(metrics["loss"], manual_loss, rtol=1e-14)
    np.testing.assert_allclose(new.loss, manual_loss, rtol=1e-14)

  def test_train_mse_matches_engine_run_and_learns(self):
    trace = train_mse(self.net, jax.random.key(3), self.x, self.y, self.x, lr=1.0, num_steps=60,
                      record_every=20)
    state, metrics = jax.jit(functools.partial(engine.run, gd_mse(self.net), num_steps=60,
                                               record_every=20))(
        jax.random.key(3), MSEProblem(self.x, self.y), {"lr": 1.0})
    chex.assert_trees_all_close(trace.params_final, state.inner.params, rtol=1e-13)
    np.testing.assert_allclose(trace.loss[1:], metrics["loss"], rtol=1e-13)
    np.testing.assert_array_equal(trace.step, [0, 20, 40, 60])
    np.testing.assert_allclose(trace.f_eval[-1], self.net.apply(state.inner.params, self.x),
                               rtol=1e-13)
    self.assertLess(float(trace.loss[-1]), 0.2 * float(trace.loss[0]))

  def test_vmap_over_seeds_equals_loop_and_compiles_once(self):
    keys = jax.random.split(jax.random.key(4), 3)
    run = functools.partial(train_mse, self.net, x=self.x, y=self.y, x_eval=self.x, num_steps=60,
                            record_every=20)
    batched = jax.jit(jax.vmap(lambda k: run(k, lr=0.5)))(keys)
    run(keys[0], lr=0.5)
    before = train_mse._cache_size()
    for i, k in enumerate(keys):
      one = run(k, lr=0.5 + 0.0 * i)  # new keys and lr values: no new trace
      np.testing.assert_allclose(batched.f_eval[i], one.f_eval, rtol=1e-13)
    self.assertEqual(train_mse._cache_size(), before)


if __name__ == "__main__":
  absltest.main()
