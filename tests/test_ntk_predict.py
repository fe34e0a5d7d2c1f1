"""Tests of jaxopt_lab.ntk.predict against explicit matrix exponentials and matrix powers
(SciPy)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from absl.testing import absltest, parameterized

from jaxopt_lab.ntk import (MLP, gp_inference, gradient_descent_mse_ensemble, linearize,
                            linearized_mse, max_learning_rate, mlp_kernels, mse_dynamics,
                            mse_ensemble, mse_predict, predict, residual_components)

N, M, LR = 6, 4, 0.7
ARCH = dict(depth=3, activation="erf", sigma_w=1.5, sigma_b=0.3)


def _task():
  rng = np.random.default_rng(0)
  x, x_test = rng.normal(size=(N, 3)), rng.normal(size=(M, 3))
  y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], axis=1)
  k = mlp_kernels(np.concatenate([x, x_test]), **ARCH)
  split = lambda a: (np.asarray(a[:N, :N]), np.asarray(a[N:, :N]), np.asarray(a[N:, N:]))
  return x, x_test, y, split(k.ntk), split(k.nngp)


X, X_TEST, Y, NTK, NNGP = _task()
F0 = np.random.default_rng(1).normal(size=(N, 2))
F0_TEST = np.random.default_rng(2).normal(size=(M, 2))
TIMES = np.array([0.0, 0.5, 3.0, 40.0])


class PredictTest(parameterized.TestCase):

  def test_gradient_flow_matches_expm(self):
    theta, theta_test, _ = NTK
    dyn = mse_dynamics(theta, Y, learning_rate=LR)
    f_train, f_test = mse_predict(dyn, jnp.asarray(np.append(TIMES, np.inf)), F0, F0_TEST,
                                  theta_test)
    for i, t in enumerate(TIMES):
      decay = scipy.linalg.expm(-LR * theta * t / N)
      np.testing.assert_allclose(f_train[i], Y + decay @ (F0 - Y), rtol=1e-10, atol=1e-12)
      ref = F0_TEST + theta_test @ np.linalg.solve(theta, (np.eye(N) - decay) @ (Y - F0))
      np.testing.assert_allclose(f_test[i], ref, rtol=1e-9, atol=1e-11)  # cond(theta) ~ 1e2
    np.testing.assert_allclose(f_train[-1], Y, atol=1e-10)  # t = inf interpolates
    np.testing.assert_allclose(f_test[-1], F0_TEST + theta_test @ np.linalg.solve(theta, Y - F0),
                               rtol=1e-9, atol=1e-11)

  def test_gradient_descent_matches_matrix_power(self):
    theta, theta_test, _ = NTK
    dyn = mse_dynamics(theta, Y, learning_rate=LR)
    steps = np.array([0.0, 1.0, 7.0, 50.0])
    f_train, f_test = mse_predict(dyn, jnp.asarray(steps), F0, F0_TEST, theta_test, discrete=True)
    for i, k in enumerate(steps):
      power = np.linalg.matrix_power(np.eye(N) - LR * theta / N, int(k))
      np.testing.assert_allclose(f_train[i], Y + power @ (F0 - Y), rtol=1e-10, atol=1e-12)
      ref = F0_TEST + theta_test @ np.linalg.solve(theta, (np.eye(N) - power) @ (Y - F0))
      np.testing.assert_allclose(f_test[i], ref, rtol=1e-9, atol=1e-11)
    # Oscillating but stable modes (1 - eta lambda / n < 0) keep their sign per step.
    big = mse_dynamics(theta, Y, learning_rate=1.9 * N / np.linalg.eigvalsh(theta)[-1])
    f3, _ = mse_predict(big, jnp.array([3.0]), F0, discrete=True)
    power = np.linalg.matrix_power(np.eye(N) - big.rate * theta, 3)
    np.testing.assert_allclose(f3[0], Y + power @ (F0 - Y), rtol=1e-10, atol=1e-12)

  def test_residual_components_decay_exponentially(self):
    theta = NTK[0]
    dyn = mse_dynamics(theta, Y, learning_rate=LR)
    f_train, _ = mse_predict(dyn, jnp.asarray(TIMES), F0)
    comps = residual_components(dyn, f_train)
    lam = np.linalg.eigvalsh(theta)
    expected = np.exp(-LR * lam[None, :] * TIMES[:, None] / N)[:, :, None] * comps[0][None]
    np.testing.assert_allclose(comps, expected, rtol=1e-9, atol=1e-13)

  def test_ensemble_matches_explicit_formula(self):
    theta, theta_test, _ = NTK
    k, k_test, k_tt = NNGP
    dyn = mse_dynamics(theta, Y, learning_rate=LR)
    ens = mse_ensemble(dyn, jnp.asarray(TIMES), k, k_test, k_tt, theta_test)
    for i, t in enumerate(TIMES):
      decay = scipy.linalg.expm(-LR * theta * t / N)
      op = theta_test @ np.linalg.solve(theta, np.eye(N) - decay)
      cov = k_tt - op @ k_test.T - k_test @ op.T + op @ k @ op.T
      np.testing.assert_allclose(ens.mean_test[i], op @ Y, rtol=1e-9, atol=1e-11)
      np.testing.assert_allclose(ens.cov_test[i], cov, rtol=1e-8, atol=1e-10)
      np.testing.assert_allclose(ens.mean_train[i], (np.eye(N) - decay) @ Y, rtol=1e-9, atol=1e-11)
      np.testing.assert_allclose(ens.cov_train[i], decay @ k @ decay, rtol=1e-9, atol=1e-11)

  def test_infinite_time_nngp_dynamics_is_gp_posterior(self):
    k, k_test, k_tt = NNGP
    dyn = mse_dynamics(k, Y, learning_rate=LR)
    ens = mse_ensemble(dyn, jnp.array([jnp.inf]), k, k_test, k_tt, k_test)
    mean, cov = gp_inference(k, Y, k_test, k_tt)
    np.testing.assert_allclose(ens.mean_test[0], mean, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ens.cov_test[0], cov, rtol=1e-7, atol=1e-9)
    ref_cov = k_tt - k_test @ np.linalg.solve(k, k_test.T)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-8, atol=1e-10)
    mean_reg, _ = gp_inference(k, Y, k_test, diag_reg=0.1)
    np.testing.assert_allclose(mean_reg, k_test @ np.linalg.solve(k + 0.1 * np.eye(N), Y),
                               rtol=1e-10)

  def test_singular_kernel_is_pseudo_inverted(self):
    x = np.random.default_rng(3).normal(size=(9, 2))  # identity NTK: rank 3 < 9 points
    theta = np.asarray(mlp_kernels(x, depth=2, activation="identity", sigma_b=0.5).ntk)
    y = np.random.default_rng(4).normal(size=(9, 1))
    dyn = mse_dynamics(theta, y, learning_rate=1.0)
    f, _ = mse_predict(dyn, jnp.array([jnp.inf]), np.zeros((9, 1)))
    self.assertTrue(np.all(np.isfinite(f)))
    # The converged outputs are the projection of y onto the kernel's range.
    proj = theta @ np.linalg.pinv(theta, rcond=1e-10)
    np.testing.assert_allclose(f[0], proj @ y, atol=1e-10)

  def test_one_call_ensemble_from_kernel_fn_or_matrices(self):
    theta, theta_test, _ = NTK
    k, k_test, k_tt = NNGP
    ref = mse_ensemble(mse_dynamics(theta, Y, learning_rate=LR), jnp.asarray(TIMES), k, k_test, k_tt,
                       theta_test)
    kfn = functools.partial(mlp_kernels, **ARCH)
    by_fn = gradient_descent_mse_ensemble(kernel_fn=kfn, x_train=X, y_train=Y, x_test=X_TEST,
                                          t=TIMES, learning_rate=LR)
    by_matrix = gradient_descent_mse_ensemble(
        ntk_train_train=theta, nngp_train_train=k, ntk_test_train=theta_test, nngp_test_train=k_test,
        nngp_test_test=k_tt, y_train=Y, t=TIMES, learning_rate=LR)
    for got in (by_fn, by_matrix):
      for a, b in zip(got, ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # Discrete GD: the largest stable rate is 2 n / lambda_max; at 0.99 of it the prediction matches
    # the matrix power, at it the call refuses with the number.
    eta_max = max_learning_rate(theta)
    self.assertAlmostEqual(eta_max, 2 * N / np.linalg.eigvalsh(theta)[-1], places=10)
    steps = np.array([0.0, 3.0, 50.0])
    ens = gradient_descent_mse_ensemble(ntk_train_train=theta, nngp_train_train=k, y_train=Y,
                                        t=steps, learning_rate=0.99 * eta_max, discrete=True)
    for i, n_steps in enumerate(steps):
      decay = np.linalg.matrix_power(np.eye(N) - 0.99 * eta_max * theta / N, int(n_steps))
      np.testing.assert_allclose(ens.mean_train[i], (np.eye(N) - decay) @ Y, rtol=1e-8, atol=1e-10)
    with self.assertRaisesRegex(ValueError, rf"^learning_rate: .* >= {eta_max:.6g}, the largest"):
      gradient_descent_mse_ensemble(ntk_train_train=theta, nngp_train_train=k, y_train=Y, t=steps,
                                    learning_rate=eta_max, discrete=True)
    with self.assertRaisesRegex(ValueError, "^kernel_fn: give a kernel function or"):
      gradient_descent_mse_ensemble(kernel_fn=kfn, ntk_train_train=theta, x_train=X, y_train=Y,
                                    t=TIMES)
    with self.assertRaisesRegex(ValueError, "^ntk_train_train: give kernel_fn"):
      gradient_descent_mse_ensemble(y_train=Y, t=TIMES)
    # t = inf on a singular kernel: finite, the pseudo-inverse's kernel regression.
    x = np.random.default_rng(3).normal(size=(9, 2))
    kfn_id = functools.partial(mlp_kernels, depth=2, activation="identity", sigma_b=0.5)
    y = np.random.default_rng(4).normal(size=(9, 1))
    ens = gradient_descent_mse_ensemble(kernel_fn=kfn_id, x_train=x, y_train=y, x_test=x[:3] + 0.1,
                                        t=np.array([np.inf]))
    self.assertTrue(all(np.all(np.isfinite(a)) for a in ens))
    th = np.asarray(kfn_id(x).ntk)
    np.testing.assert_allclose(ens.mean_test[0], np.asarray(kfn_id(x[:3] + 0.1, x).ntk)
                               @ np.linalg.pinv(th, rcond=1e-10) @ y, atol=1e-9)

  def test_vmap_over_learning_rate_and_compiles_once(self):
    theta, theta_test, _ = NTK
    run = jax.jit(lambda lr, t: mse_predict(mse_dynamics(theta, Y, learning_rate=lr), t, F0,
                                            F0_TEST, theta_test))
    lrs = jnp.array([0.1, 0.7, 2.0])
    batched = jax.vmap(run, in_axes=(0, None))(lrs, jnp.asarray(TIMES))
    for i, lr in enumerate(lrs):
      one = run(lr, jnp.asarray(TIMES))
      np.testing.assert_allclose(batched[0][i], one[0], rtol=1e-13)
      np.testing.assert_allclose(batched[1][i], one[1], rtol=1e-12, atol=1e-14)
    dyn = mse_dynamics(theta, Y, learning_rate=LR)
    mse_predict(dyn, jnp.asarray(TIMES), F0)
    before = predict._predict._cache_size()
    for scale in (1.0, 2.0, 3.0):
      mse_predict(dyn, jnp.asarray(TIMES * scale), F0 * scale)
    self.assertEqual(predict._predict._cache_size(), before)

  def test_validation(self):
    theta, theta_test, _ = NTK
    with self.assertRaisesRegex(ValueError, "^ntk_train_train"):
      mse_dynamics(theta[:, :3], Y, learning_rate=1.0)
    with self.assertRaisesRegex(ValueError, "^y_train"):
      mse_dynamics(theta, Y[:3], learning_rate=1.0)
    with self.assertRaisesRegex(ValueError, "^learning_rate"):
      mse_dynamics(theta, Y, learning_rate=-1.0)
    dyn = mse_dynamics(theta, Y, learning_rate=LR)
    with self.assertRaisesRegex(ValueError, "^fx_train_0"):
      mse_predict(dyn, jnp.asarray(TIMES), F0[:, :1])
    with self.assertRaisesRegex(ValueError, "^ntk_test_train"):
      mse_predict(dyn, jnp.asarray(TIMES), F0, F0_TEST)
    with self.assertRaisesRegex(ValueError, "^t"):
      mse_predict(dyn, 1.0, F0)
    with self.assertRaisesRegex(ValueError, "^nngp_test_train"):
      mse_ensemble(dyn, jnp.asarray(TIMES), NNGP[0], NNGP[1])


class LinearizedTest(absltest.TestCase):

  def test_closed_form_equals_gd_on_linearized_model(self):
    net = MLP((3, 8, 8, 2), "tanh", sigma_w=1.2, sigma_b=0.2)
    params0 = jax.jit(net.init)(jax.random.key(0))
    steps, lr = 30, 0.5
    f_train, f_test = linearized_mse(net, params0, X, Y, X_TEST, jnp.array([0.0, 10.0, 30.0]),
                                     learning_rate=lr, discrete=True)
    apply_lin = linearize(net.apply, params0)
    loss = lambda p: 0.5 * jnp.sum((apply_lin(p, X) - Y) ** 2) / N

    @jax.jit
    def gd(p, k):
      return jax.lax.fori_loop(0, k, lambda _, q: jax.tree.map(
          lambda a, g: a - lr * g, q, jax.grad(loss)(q)), p)

    np.testing.assert_allclose(f_train[0], net.apply(params0, X), rtol=1e-12)
    p10 = gd(params0, 10)
    p30 = gd(p10, 20)
    for i, p in [(1, p10), (2, p30)]:
      # Two float64 routes (closed form with a full 2-output kernel vs 30 explicit steps).
      np.testing.assert_allclose(f_train[i], apply_lin(p, X), rtol=1e-9, atol=1e-11)
      np.testing.assert_allclose(f_test[i], apply_lin(p, X_TEST), rtol=1e-9, atol=1e-11)


if __name__ == "__main__":
  absltest.main()
