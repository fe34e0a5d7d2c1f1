"""GD / SGD engine algorithms: the step against NumPy, the monitor, vmap = loop, one trace, validation."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.engine import run
from jaxopt_lab.stability import curvature, models, training

N, D = 12, 5


def _data(dtype=jnp.float64):
  return models.sparse_regression_data(jax.random.key(3), d=D, n=N, sparsity=2, n_test=7,
                                       dtype=dtype)


def _numpy_step(u, v, x, y, eta, clip=np.inf):
  """One step of (S)GD on 1/(2b) sum (<u*v, x_i> - y_i)^2 over the rows given."""
  r = x @ (u * v) - y
  gu = (x * r[:, None]).mean(0) * v
  gv = (x * r[:, None]).mean(0) * u
  norm = np.sqrt(np.sum(gu**2) + np.sum(gv**2))
  c = min(1.0, clip / norm)
  return u - eta * c * gu, v - eta * c * gv


class TrainingTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("gd", None, "full", np.inf), ("sgd_with", 3, "with_replacement", np.inf),
      ("sgd_without_clipped", 4, "without_replacement", 0.05), ("sgd_reshuffle", 4, "reshuffle", np.inf))
  def test_step_matches_numpy(self, batch, sampling, clip):
    data = _data()
    model = models.diagonal_net(D)
    mon = training.Monitor(every=2, power_iters=0, gn_trace=False)  # the step only; see below
    alg = (training.gd(model, mon) if batch is None
           else training.sgd(model, batch, sampling=sampling, monitor=mon))
    state = jax.jit(alg.init)(jax.random.key(0), data)
    step = jax.jit(functools.partial(alg.step, eta=0.07, clip=clip))
    u, v = np.asarray(state.params["u"]), np.asarray(state.params["v"])
    x, y = np.asarray(data.x), np.asarray(data.y)
    seen = []
    for t in range(3):
      idx = (np.arange(N) if batch is None else np.asarray(training.batch_indices(
          state.batch_key, jnp.int32(t), n=N, batch_size=batch, sampling=sampling)))
      seen.append(idx)
      state, metrics = step(state, data)
      u, v = _numpy_step(u, v, x[idx], y[idx], 0.07, clip)
      np.testing.assert_allclose(state.params["u"], u, rtol=1e-12)
      np.testing.assert_allclose(state.params["v"], v, rtol=1e-12)
    if sampling == "without_replacement":
      self.assertTrue(all(len(set(i.tolist())) == batch for i in seen))
    if sampling == "reshuffle":  # 3 steps of 4 = one epoch: every example exactly once
      self.assertEqual(sorted(np.concatenate(seen).tolist()), list(range(N)))
    self.assertEqual(int(metrics["monitor_step"]), 2)  # measured at step 2, carried to step 3

  def test_monitor_against_references(self):
    data = _data()
    model = models.relu_net(D, 4)
    mon = training.Monitor(every=5, power_iters=30, hutchinson_probes=4, frobenius_probes=4)
    alg = training.gd(model, mon)
    f = jax.jit(functools.partial(run, alg, num_steps=20, record_every=5))
    state, m = f(jax.random.key(1), data, {"eta": 0.0})  # eta = 0: the point stays put
    params = state.inner.params
    loss = training.loss_fn(model, data.x, data.y)
    ev = np.linalg.eigvalsh(np.asarray(jax.jit(lambda p: curvature.dense_hessian(loss, p))(params)))
    lm = ev[np.argmax(np.abs(ev))]
    # 4 warm-started measurements of 30 power iterations each: converged to float64 rounding.
    np.testing.assert_allclose(m["sharpness"][-1], lm, rtol=1e-8)
    np.testing.assert_allclose(m["gn_trace"][-1], curvature.gauss_newton_trace(
        model.apply, params, data.x), rtol=1e-12)
    np.testing.assert_allclose(m["loss"][-1], loss(params), rtol=1e-12)
    np.testing.assert_allclose(m["test_loss"][-1], models.mse(model.apply(params, data.x_test),
                                                              data.y_test), rtol=1e-12)
    np.testing.assert_allclose(m["path_norm"][-1], models.path_norm(params), rtol=1e-12)
    np.testing.assert_array_equal(m["monitor_step"], [5, 10, 15, 20])
    self.assertTrue(np.all(np.isfinite(m["hutch_trace"])) and np.all(m["frob_sq"] > 0))

  def test_vmap_equals_loop_and_traces_once(self):
    data = _data()
    alg = training.sgd(models.diagonal_net(D), 2, monitor=training.Monitor(every=4, power_iters=3))

    def single(key, problem, hp):
      return run(alg, key, problem, hp, num_steps=8, record_every=4)

    one = jax.jit(chex.assert_max_traces(single, n=1))
    batched = jax.jit(jax.vmap(single, in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.key(2), 3)
    hp = {"eta": jnp.asarray(0.05)}
    _, mb = batched(keys, data, hp)
    for i in range(3):
      _, mi = one(keys[i], data, hp)
      for name in mi:
        np.testing.assert_allclose(mb[name][i], mi[name], rtol=1e-10, err_msg=name)
    one(keys[0], data, {"eta": jnp.asarray(0.02)})  # a new eta does not retrace

  def test_when_is_elementwise_under_vmap(self):
    fn = lambda a: {"y": a["x"] * 2.0}
    xs = jnp.arange(4.0)
    pred = jnp.array([True, False, True, False])
    out = jax.jit(jax.vmap(lambda p, x: training.when(p, fn, {"x": x}, {"y": -x})))(pred, xs)
    np.testing.assert_allclose(out["y"], [0.0, -1.0, 4.0, -3.0])
    nested = jax.vmap(jax.vmap(lambda p, x: training.when(p, fn, {"x": x}, {"y": -x})))(
        pred.reshape(2, 2), xs.reshape(2, 2))
    np.testing.assert_allclose(nested["y"].ravel(), [0.0, -1.0, 4.0, -3.0])
    none = jax.vmap(lambda x: training.when(False, fn, {"x": x}, {"y": -x}))(xs)
    np.testing.assert_allclose(none["y"], -xs)

  def test_sweep_divergence_and_float32(self):
    data = _data(jnp.float32)
    alg = training.gd(models.diagonal_net(D), training.Monitor(every=10, power_iters=2))
    res = training.sweep_training(alg, data, seeds=[0, 1], hp={"eta": [0.01, 50.0]}, num_steps=40,
                                  record_every=10)
    self.assertTrue(np.all(res.diverged_at[:, 0] < 0))
    self.assertTrue(np.all(res.diverged_at[:, 1] > 0))
    self.assertEqual(res.metrics["sharpness"].dtype, np.float32)
    self.assertEqual(res.metrics["loss"].shape, (2, 2, 4))

  def test_validation(self):
    data = _data()
    model = models.diagonal_net(D)
    with self.assertRaisesRegex(ValueError, "exceeds the number of examples"):
      training.sgd(model, N + 1).init(jax.random.key(0), data)
    state = training.gd(model).init(jax.random.key(0), data)
    with self.assertRaisesRegex(ValueError, "eta"):
      training.gd(model).step(state, data, eta=-0.1)
    with self.assertRaisesRegex(ValueError, "eta"):
      training.sweep_training(training.gd(model), data, seeds=[0], hp={"eta": [0.1, -0.1]},
                              num_steps=2, record_every=1)
    with self.assertRaisesRegex(ValueError, "sampling"):
      training.sgd(model, 2, sampling="poisson")
    with self.assertRaisesRegex(ValueError, "batch_size"):
      training.sgd(model, 0)
    # Under jit a negative eta cannot raise: the run is marked diverged at step 1.
    _, m = jax.jit(functools.partial(run, training.gd(model, training.Monitor(every=1, power_iters=0,
                                                                               gn_trace=False)),
                                     num_steps=2))(jax.random.key(0), data, {"eta": -0.1})
    self.assertTrue(np.all(np.isnan(m["loss"])))


if __name__ == "__main__":
  absltest.main()
