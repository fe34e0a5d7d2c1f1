"""Tests of the central-path and joint gradient flows (jaxopt_lab.neural_collapse.flows)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.engine import run
from jaxopt_lab.neural_collapse import flows, models

K, N, D = 4, 10, 10            # the fact sheet's calibration size
LW, LH = math.sqrt(2.0), 0.1


def h0(seed=0):
  return models.gaussian_class_features(jax.random.key(seed), num_classes=K, n=N, d=D)


@jax.jit
def integrate(H0, dt, num_steps):
  """RK4 on the central-path field with a traced step count (one compile for every dt)."""
  field = functools.partial(models.central_path_field, num_classes=K, lambda_W=LW, lambda_H=LH)
  return jax.lax.fori_loop(0, num_steps, lambda _, H: flows.rk4_step(field, H, dt), H0)


class StepErrorTest(absltest.TestCase):

  def test_rk4_global_error_is_fourth_order(self):
    H0, T = h0(), 4.0
    ref = integrate(H0, T / 3200, 3200)
    errs = [float(jnp.linalg.norm(integrate(H0, T / m, m) - ref)) for m in (20, 40, 80)]
    # Measured: 3.4e-8, 2.1e-9, 1.3e-10 (ratios 16.2, 16.1); the reference's own error is ~3e-15.
    for coarse, fine in zip(errs, errs[1:]):
      self.assertBetween(coarse / fine, 16 * 0.97, 16 * 1.04)

  def test_step_error_at_the_sheet_dt(self):
    # dt = 1e-3 (the calibration's step): halving it changes H_1 by ~6e-14 (|H| ~ 20), at round-off.
    H0 = h0()
    diff = float(jnp.linalg.norm(integrate(H0, 1e-3, 1000) - integrate(H0, 5e-4, 2000)))
    self.assertLess(diff, 1e-12)

  def test_flow_core_equals_plain_rk4_loop(self):
    H0 = h0(1)
    res = flows.central_path_flow(H0, num_classes=K, lambda_W=LW, lambda_H=LH, dt=0.01,
                                  num_steps=300, record_every=1)
    np.testing.assert_allclose(res.final, integrate(H0, 0.01, 300), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(res.records["t"][::100], [0.0, 1.0, 2.0, 3.0], rtol=1e-14)
    self.assertEqual(res.records["t"].shape, (301,))


class CentralPathTest(parameterized.TestCase):

  def test_within_class_dynamics(self):
    # d(HP)/dt = -(W*^T W* + lambda_H I) HP, P = I - I_K kron 11^T/n (the sheet's identity).
    H = h0(2)
    P = np.eye(K * N) - np.kron(np.eye(K), np.ones((N, N)) / N)
    v = np.asarray(models.central_path_field(H, num_classes=K, lambda_W=LW, lambda_H=LH))
    W = np.asarray(models.optimal_classifier(H, num_classes=K, lambda_W=LW))
    np.testing.assert_allclose(v @ P, -(W.T @ W + LH * np.eye(D)) @ np.asarray(H) @ P, atol=1e-12)

  def test_theorem_31_monotone_on_a_short_run(self):
    res = flows.central_path_flow(h0(3), num_classes=K, lambda_W=LW, lambda_H=LH, dt=0.01,
                                  num_steps=300, record_every=1)
    r = jax.tree.map(np.asarray, res.records)
    self.assertLess(np.diff(r["nc1_tilde"]).max(), 0.0)
    self.assertLessEqual(np.diff(r["scaled_tr_sigma_w"]).max(), 1e-12)
    self.assertGreater(np.diff(r["scaled_tr_sigma_b"]).min(), 0.0)
    self.assertLess(np.diff(r["loss"]).max(), 0.0)   # gradient flow decreases the reduced loss

  def test_vmap_over_seeds_and_lambda_h_equals_loop(self):
    H0s = jnp.stack([h0(4), h0(5)])
    lhs = jnp.array([0.0, 0.3])
    flow = lambda H0, lh: flows.central_path_flow(H0, num_classes=K, lambda_W=LW, lambda_H=lh,
                                                  dt=0.01, num_steps=300, record_every=1)
    batched = jax.vmap(flow)(H0s, lhs)
    for i in range(2):
      single = flow(H0s[i], float(lhs[i]))
      np.testing.assert_allclose(batched.final[i], single.final, rtol=1e-11, atol=1e-13)
      np.testing.assert_allclose(batched.records["nc1_tilde"][i], single.records["nc1_tilde"],
                                 rtol=1e-11)

  def test_compiles_once_for_new_hyperparameters(self):
    kw = dict(num_classes=K, dt=0.01, num_steps=300, record_every=1)
    flows.central_path_flow(h0(6), lambda_W=LW, lambda_H=LH, **kw)
    before = flows._central_path_core._cache_size()
    flows.central_path_flow(h0(7), lambda_W=0.5, lambda_H=0.2, dt=0.02,
                            **{k: v for k, v in kw.items() if k != "dt"})
    self.assertEqual(flows._central_path_core._cache_size(), before)

  def test_full_metrics_along_the_path(self):
    res = flows.central_path_flow(h0(8), num_classes=K, lambda_W=LW, lambda_H=0.5, dt=0.01,
                                  num_steps=300, record_every=100, full_metrics=True)
    r = res.records
    self.assertEqual(r["nc1"].shape, (4,))
    self.assertLess(float(r["nc1"][-1]), float(r["nc1"][0]))
    self.assertTrue(all(bool(jnp.all(jnp.isfinite(v))) for v in r.values()))

  def test_engine_algorithm_matches_flow(self):
    H0 = h0(9)
    alg = flows.central_path_algorithm(num_classes=K, n=N, d=D, dt=0.01)
    state, recs = run(alg, jax.random.key(0), H0, {"lambda_W": LW, "lambda_H": LH}, num_steps=300,
                      record_every=100)
    ref = flows.central_path_flow(H0, num_classes=K, lambda_W=LW, lambda_H=LH, dt=0.01,
                                  num_steps=300, record_every=1)
    np.testing.assert_allclose(state.inner.H, ref.final, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(recs["nc1_tilde"], ref.records["nc1_tilde"][100::100], rtol=1e-12)

  def test_engine_algorithm_full_metrics_match_flow(self):
    H0 = h0(10)
    alg = flows.central_path_algorithm(num_classes=K, n=N, d=D, dt=0.01, full_metrics=True)
    _, recs = run(alg, jax.random.key(0), H0, {"lambda_W": LW, "lambda_H": LH}, num_steps=200,
                  record_every=100)
    ref = flows.central_path_flow(H0, num_classes=K, lambda_W=LW, lambda_H=LH, dt=0.01,
                                  num_steps=200, record_every=100, full_metrics=True).records
    for name in ("nc1", "nc2_etf_w", "nc3_self_duality", "nc4_ncc_mismatch"):
      np.testing.assert_allclose(recs[name], ref[name][1:], rtol=1e-10, atol=1e-14, err_msg=name)


class JointFlowTest(absltest.TestCase):

  def test_converges_to_the_closed_form(self):
    k, n, d = 4, 5, 6
    H0 = 0.3 * jax.random.normal(jax.random.key(0), (d, k * n))
    W0 = 0.3 * jax.random.normal(jax.random.key(1), (k, d))
    res = flows.joint_flow(W0, H0, num_classes=k, lambda_W=LW, lambda_H=LH, dt=0.02,
                           num_steps=5000, record_every=500)
    loss = np.asarray(res.records["loss"])
    self.assertLess(np.diff(loss).max(), 0.0)
    # Decays like e^{-2 lambda_H t}: measured 2e-11 above f* at t = 100.
    self.assertLess(loss[-1] - float(models.mse_closed_form(k, LW, LH).f_star), 1e-9)

  def test_full_metrics_use_the_flows_own_classifier(self):
    from jaxopt_lab.neural_collapse import metrics  # pylint: disable=g-import-not-at-top
    k, n, d = 4, 5, 6
    H0 = 0.3 * jax.random.normal(jax.random.key(2), (d, k * n))
    W0 = 0.3 * jax.random.normal(jax.random.key(3), (k, d))
    kw = dict(num_classes=k, lambda_W=LW, lambda_H=LH, dt=0.02, num_steps=400, record_every=200)
    res = flows.joint_flow(W0, H0, full_metrics=True, **kw)
    ref = metrics.collapse_metrics(res.final.H, metrics.class_by_class_labels(k, n), res.final.W,
                                   num_classes=k)
    for name in ("nc1", "nc2_etf_w", "nc3_self_duality", "nc3_duality_etf", "nc4_ncc_mismatch"):
      np.testing.assert_allclose(res.records[name][-1], ref[name], rtol=1e-10, atol=1e-14, err_msg=name)
    cheap = flows.joint_flow(W0, H0, **kw).records
    self.assertNotIn("nc1", cheap)
    np.testing.assert_allclose(cheap["loss"], res.records["loss"], rtol=1e-12)

  def test_validation(self):
    H0, W0 = h0(), jnp.zeros((K, D))
    kw = dict(num_classes=K, lambda_W=LW, lambda_H=LH, dt=0.01, num_steps=10)
    with self.assertRaisesRegex(ValueError, "W0 must have shape"):
      flows.joint_flow(W0[:, :-1], H0, **kw)
    with self.assertRaisesRegex(ValueError, "anchor must have the shape"):
      flows.joint_flow(W0, H0, anchor=H0[:, :-4], beta=1.0, **kw)
    with self.assertRaisesRegex(ValueError, "dt must be > 0"):
      flows.central_path_flow(H0, **{**kw, "dt": 0.0})
    with self.assertRaisesRegex(ValueError, "multiple of record_every"):
      flows.central_path_flow(H0, record_every=3, **kw)
    with self.assertRaisesRegex(ValueError, "lambda_W must be > 0"):
      flows.central_path_flow(H0, **{**kw, "lambda_W": 0.0})
    with self.assertRaisesRegex(ValueError, "non-finite"):
      flows.central_path_flow(H0.at[0, 0].set(jnp.nan), **kw)


if __name__ == "__main__":
  absltest.main()
