"""Tests of jaxopt_lab.neural_collapse.metrics against an independent float64 NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.neural_collapse import metrics


def numpy_reference(H, y, W=None, b=None):
  """NC metrics written out loop by loop from Papyan et al. 2020 and Zhu et al. 2021."""
  H = np.asarray(H, np.float64)
  y = np.asarray(y)
  d, N = H.shape
  K = int(y.max()) + 1
  mu = np.stack([H[:, y == c].mean(axis=1) for c in range(K)], axis=1)
  mu_g = H.mean(axis=1)
  Sw = np.zeros((d, d))
  for i in range(N):
    v = H[:, i] - mu[:, y[i]]
    Sw += np.outer(v, v) / N
  Sb = np.zeros((d, d))
  for c in range(K):
    v = mu[:, c] - mu_g
    Sb += np.outer(v, v) / K
  out = {"tr_sigma_w": np.trace(Sw), "tr_sigma_b": np.trace(Sb),
         "nc1_tilde": np.trace(Sw) / np.trace(Sb),
         "nc1": np.trace(Sw @ np.linalg.pinv(Sb, rcond=10 * max(d, K) * np.finfo(float).eps)) / K}
  M = mu - mu_g[:, None]
  etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)

  def etf_dist(G):
    return np.linalg.norm(G / np.linalg.norm(G) - etf)

  def stats(V):
    norms = np.linalg.norm(V, axis=0)
    cos = [V[:, i] @ V[:, j] / (norms[i] * norms[j]) for i in range(K) for j in range(i + 1, K)]
    return np.std(norms) / np.mean(norms), np.std(cos), np.mean(np.abs(np.array(cos) + 1 / (K - 1)))

  out["nc2_etf_means"] = etf_dist(M.T @ M)
  out["nc2_equinorm_means"], out["nc2_equiangular_means"], out["nc2_maxangle_means"] = stats(M)
  if W is None:
    return out
  W = np.asarray(W, np.float64)
  out["nc2_etf_w"] = etf_dist(W @ W.T)
  out["nc2_equinorm_w"], out["nc2_equiangular_w"], out["nc2_maxangle_w"] = stats(W.T)
  out["nc3_self_duality"] = np.linalg.norm(W.T / np.linalg.norm(W) - M / np.linalg.norm(M)) ** 2
  out["nc3_duality_etf"] = etf_dist(W @ M)
  bb = np.zeros(K) if b is None else np.asarray(b)
  mismatches = 0
  for i in range(N):
    pred = np.argmax(W @ H[:, i] + bb)
    ncc = np.argmin([np.linalg.norm(H[:, i] - mu[:, c]) for c in range(K)])
    mismatches += int(pred != ncc)
  out["nc4_ncc_mismatch"] = mismatches / N
  return out


def random_case(seed, d=7, K=4, N=37, spread=1.0):
  rng = np.random.default_rng(seed)
  y = np.concatenate([np.arange(K), rng.integers(0, K, N - K)])  # every class present, unbalanced
  means = spread * rng.normal(size=(d, K))
  H = means[:, y] + rng.normal(size=(d, N))
  W = rng.normal(size=(K, d))
  b = rng.normal(size=K)
  return H, y, W, b


class MetricsTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 2)
  def test_matches_numpy_reference_general_labels(self, seed):
    H, y, W, b = random_case(seed)
    got = metrics.collapse_metrics(H, y, W, b)
    ref = numpy_reference(H, y, W, b)
    self.assertEqual(set(got), set(ref))
    for name, value in ref.items():
      # float64 reference; 1e-10 relative covers summation-order differences.
      np.testing.assert_allclose(got[name], value, rtol=1e-10, atol=1e-12, err_msg=name)

  def test_class_by_class_layout_needs_no_labels(self):
    rng = np.random.default_rng(3)
    K, n, d = 4, 3, 4                                # the simplex test's shapes: one compile
    H = rng.normal(size=(d, K * n))
    W = rng.normal(size=(K, d))
    y = np.repeat(np.arange(K), n)
    got = metrics.collapse_metrics(H, W=W, num_classes=K)
    ref = numpy_reference(H, y, W)
    for name, value in ref.items():
      np.testing.assert_allclose(got[name], value, rtol=1e-10, err_msg=name)

  def test_nc1_when_d_less_than_k(self):
    # Sigma_B has rank d < K - 1 here; the pseudo-inverse must keep all of it.
    H, y, W, b = random_case(4, d=2, K=5, N=30)
    got = metrics.collapse_metrics(H, y, W, b)
    ref = numpy_reference(H, y, W, b)
    np.testing.assert_allclose(got["nc1"], ref["nc1"], rtol=1e-10)

  def test_collapsed_simplex_gives_zero(self):
    K, n = 4, 3
    etf = np.eye(K) - np.ones((K, K)) / K          # columns: a simplex ETF in R^K
    H = np.repeat(etf, n, axis=1)
    m = metrics.collapse_metrics(H, W=etf.T, num_classes=K)
    for name in ("nc1", "nc1_tilde", "nc2_etf_means", "nc2_equinorm_means", "nc2_equiangular_means",
                 "nc2_maxangle_means", "nc2_etf_w", "nc3_self_duality", "nc3_duality_etf",
                 "nc4_ncc_mismatch"):
      self.assertLess(float(m[name]), 1e-12, name)

  @parameterized.parameters(1e-150, 1e-6, 1e150)
  def test_scale_invariant_and_safe(self, scale):
    H, y, W, b = random_case(5)
    base = metrics.collapse_metrics(H, y, W, b)
    scaled = metrics.collapse_metrics(H * scale, y, W * scale, b * scale**2)  # logits scale as s^2
    for name in base:
      if name in ("tr_sigma_w", "tr_sigma_b"):
        continue
      np.testing.assert_allclose(scaled[name], base[name], rtol=1e-9, err_msg=name)

  def test_tiny_between_class_spread_is_finite_and_accurate(self):
    H, y, W, b = random_case(6, spread=1e-6)
    got = metrics.collapse_metrics(H, y, W, b)
    ref = numpy_reference(H, y, W, b)
    self.assertTrue(all(np.isfinite(v) for v in got.values()))
    # NC1~ ~ 1e12 here; relative accuracy limited by cancellation in mu_k - mu_G (~eps / 1e-6).
    np.testing.assert_allclose(got["nc1_tilde"], ref["nc1_tilde"], rtol=1e-6)

  def test_equal_class_means_give_inf_not_nan(self):
    H = np.array([[1.0, -1.0, 1.0, -1.0], [2.0, 2.0, 2.0, 2.0]])   # both class means are (0, 2)
    m = metrics.collapse_metrics(H, np.array([0, 0, 1, 1]))
    self.assertEqual(float(m["nc1_tilde"]), np.inf)
    self.assertEqual(float(m["nc1"]), np.inf)
    m0 = metrics.collapse_metrics(np.zeros((2, 4)), np.array([0, 0, 1, 1]))
    self.assertEqual(float(m0["nc1_tilde"]), 0.0)
    self.assertFalse(any(np.isnan(float(v)) for v in m0.values()))

  def test_batched_over_seeds_equals_loop(self):
    cases = [random_case(s) for s in range(3)]
    y = cases[0][1]
    Hs, Ws, bs = (np.stack([c[i] for c in cases]) for i in (0, 2, 3))
    batched = metrics.collapse_metrics(Hs, y, Ws, bs)     # leading seed axis, vmapped inside
    for i in range(3):
      single = metrics.collapse_metrics(Hs[i], y, Ws[i], bs[i])
      for name in single:
        np.testing.assert_allclose(batched[name][i], single[name], rtol=1e-12, err_msg=name)

  def test_jax_vmap_of_public_function(self):
    H, y, W, b = random_case(0)
    Hs = np.stack([H, 2 * H + 1])
    vmapped = jax.vmap(lambda H: metrics.collapse_metrics(H, y, W, b, num_classes=4))(Hs)
    for i in range(2):
      single = metrics.collapse_metrics(Hs[i], y, W, b)
      np.testing.assert_allclose(vmapped["nc1"][i], single["nc1"], rtol=1e-12)
      np.testing.assert_allclose(vmapped["nc4_ncc_mismatch"][i], single["nc4_ncc_mismatch"])

  def test_jit_compiles_once(self):
    H, y, W, b = random_case(7)
    metrics.collapse_metrics(H, y, W, b)
    before = metrics._metrics_jit._cache_size()
    for s in range(8, 11):
      H, _, W, b = random_case(s)
      metrics.collapse_metrics(H, y, W, b)
    self.assertEqual(metrics._metrics_jit._cache_size(), before)

  def test_cheap_core_matches(self):
    H, y, _, _ = random_case(8)
    cheap = jax.jit(lambda H, y: (metrics.scatter_traces(H, y, 4), metrics.nc1_tilde_core(H, y, 4)))
    (tr_w, tr_b), nc1t = cheap(jnp.asarray(H), jnp.asarray(y))
    ref = numpy_reference(H, y)
    np.testing.assert_allclose([tr_w, tr_b, nc1t],
                               [ref["tr_sigma_w"], ref["tr_sigma_b"], ref["nc1_tilde"]], rtol=1e-12)

  @parameterized.named_parameters(
      ("nan", lambda H, y, W: (H.at[0, 0].set(np.nan), y, W), "non-finite"),
      ("out_of_range", lambda H, y, W: (H, y.at[0].set(7), W), "out of range"),
      ("negative", lambda H, y, W: (H, y.at[0].set(-1), W), "out of range"),
      ("missing", lambda H, y, W: (H, jnp.where(y == 2, 1, y), W), "missing class"),
      ("label_shape", lambda H, y, W: (H, y[:-1], W), "labels must have shape"),
      ("float_labels", lambda H, y, W: (H, y.astype(float), W), "integers"),
      ("w_shape", lambda H, y, W: (H, y, W[:, :-1]), "W must have shape"),
      ("w_nan", lambda H, y, W: (H, y, W.at[1, 1].set(np.inf)), r"W \(classifier\)"),
  )
  def test_validation_messages(self, corrupt, message):
    H, y, W, _ = random_case(9)
    H, y, W = corrupt(jnp.asarray(H), jnp.asarray(y), jnp.asarray(W))
    with self.assertRaisesRegex(ValueError, message):
      metrics.collapse_metrics(H, y, W, num_classes=4)


if __name__ == "__main__":
  absltest.main()
