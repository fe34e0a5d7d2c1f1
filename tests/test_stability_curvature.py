"""Curvature estimators against dense float64 Hessians (jax.hessian + numpy eigh) on small problems."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.flatten_util import ravel_pytree

from jaxopt_lab.stability import curvature as cv
from jaxopt_lab.stability import models


def _problem(seed=0, sizes=(3, 5, 2), n=30):
  """A tanh MLP's MSE at a random point (indefinite Hessian) and its dense float64 Hessian."""
  kx, ky, kp = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, (n, sizes[0]), jnp.float64)
  y = jax.random.normal(ky, (n, sizes[-1]), jnp.float64)
  model = models.tanh_mlp(sizes)
  params = model.init(kp, jnp.float64)
  loss = lambda p: models.mse(model.apply(p, x), y)
  return model, params, x, y, loss


M = 200  # probes of the trace / Frobenius estimates


class EigenResidualsTest(absltest.TestCase):
  """Returned residuals equal ||M v - theta v|| of the returned vectors; power iteration does exactly
  the products it is asked for (compared with a NumPy loop from the same start)."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.normal(size=(12, 12)))[0]
    self.m = q @ np.diag(0.8 ** np.arange(12) * np.where(np.arange(12) == 3, -1, 1)) @ q.T
    self.matvec = lambda v: jnp.asarray(self.m) @ v
    self.v0 = rng.normal(size=12)

  def test_lanczos_residuals_equal_direct_residuals(self):
    eig = jax.jit(lambda v: cv.lanczos_eigen(self.matvec, v, 5, k=3))(jnp.asarray(self.v0))
    vecs = np.asarray(eig.vectors)
    direct = np.linalg.norm(self.m @ vecs - vecs * np.asarray(eig.values)[None, :], axis=0)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=0), 1.0, rtol=1e-12)
    # Full reorthogonalization: |beta_m s_m| equals the true residual to rounding.
    np.testing.assert_allclose(np.asarray(eig.residuals), direct, rtol=1e-8, atol=1e-14)

  def test_power_iteration_does_exactly_num_iters_products(self):
    for num_iters in (1, 2, 5):
      eig = cv.power_iteration(self.matvec, jnp.asarray(self.v0)[:, None], num_iters)
      v = self.v0 / np.linalg.norm(self.v0)
      for _ in range(num_iters - 1):
        v = self.m @ v
        v /= np.linalg.norm(v)
      theta = v @ self.m @ v
      np.testing.assert_allclose(float(eig.values[0]), theta, rtol=1e-12, err_msg=str(num_iters))
      np.testing.assert_allclose(float(eig.residuals[0]), np.linalg.norm(self.m @ v - theta * v),
                                 rtol=1e-10, err_msg=str(num_iters))


class EstimatorsTest(parameterized.TestCase):
  """The estimators run once, in one jitted program (one compile), checked in one test method
  (subtests), so a parallel test runner never compiles it twice."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model, cls.params, cls.x, cls.y, loss = _problem()
    cls.loss = staticmethod(loss)
    d = ravel_pytree(cls.params)[0].size
    y0 = cls.model.apply(cls.params, cls.x)
    interp = lambda p: models.mse(cls.model.apply(p, cls.x), y0)

    @jax.jit
    def everything(params, key, v):
      unravel = ravel_pytree(params)[1]
      matvec, _ = cv.hessian_operator(loss, params)
      return {
          "h": cv.dense_hessian(loss, params),
          "h_interp": cv.dense_hessian(interp, params),
          "hvp": ravel_pytree(cv.hvp(loss, params, unravel(v)))[0],
          "op": matvec(v),
          "lanczos": cv.top_eigenvalues_lanczos(loss, params, key, k=3, num_steps=d),
          "lanczos_lm": cv.top_eigenvalues_lanczos(loss, params, key, num_steps=d, which="LM"),
          "lanczos_few": cv.top_eigenvalues_lanczos(loss, params, key, num_steps=12),
          "power": cv.top_eigenvalues_power(loss, params, key, k=2, num_iters=300),
          "hutchinson": cv.hutchinson_trace(loss, params, key, num_probes=M),
          "frobenius": cv.frobenius_sq(loss, params, key, num_probes=M),
          "gn": cv.gauss_newton_trace(cls.model.apply, params, cls.x),
          "gn_chunked": cv.gauss_newton_trace(cls.model.apply, params, cls.x, batch_size=7),
          "slq": cv.slq(loss, params, key, num_probes=3, num_steps=8),
          "slq_full": cv.slq(loss, params, key, num_probes=1, num_steps=d),
      }

    cls.key = jax.random.key(0)
    cls.v = jax.random.normal(jax.random.key(1), (d,), jnp.float64)
    cls.out = everything(cls.params, cls.key, cls.v)
    cls.h = np.asarray(cls.out["h"])
    cls.ev = np.linalg.eigvalsh(cls.h)
    cls.d = d

  def _hvp_and_operator_match_dense_hessian(self):
    np.testing.assert_allclose(self.out["hvp"], self.h @ np.asarray(self.v), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(self.out["op"], self.h @ np.asarray(self.v), rtol=1e-10, atol=1e-12)
    self.assertEqual(cv.hessian_operator(self.loss, self.params)[1], self.d)

  def _lanczos_top_eigenvalues(self):
    eig = self.out["lanczos"]
    # num_steps = d: T is the whole operator, exact up to rounding (float64).
    np.testing.assert_allclose(eig.values, self.ev[::-1][:3], rtol=1e-9)
    # Largest magnitude: this indefinite Hessian's extreme eigenvalue in |.|.
    np.testing.assert_allclose(self.out["lanczos_lm"].values[0],
                               self.ev[np.argmax(np.abs(self.ev))], rtol=1e-9)
    # Few steps: the returned residual bounds the error (plus a float64 rounding floor).
    few = self.out["lanczos_few"]
    self.assertLessEqual(abs(float(few.values[0]) - self.ev[-1]),
                         float(few.residuals[0]) + 1e-10 * abs(self.ev[-1]))
    vec = np.asarray(eig.vectors[:, 0])
    np.testing.assert_allclose(self.h @ vec, self.ev[-1] * vec, atol=1e-8)

  def _power_iteration_block_and_warm_start(self):
    eig = self.out["power"]
    order = np.argsort(-np.abs(self.ev))[:2]
    np.testing.assert_allclose(np.sort(eig.values), np.sort(self.ev[order]), rtol=1e-6)
    self.assertLessEqual(float(np.max(np.abs(eig.values - self.ev[order]))),
                         float(np.max(eig.residuals)) + 1e-10)
    # Warm start from converged vectors: 1 iteration keeps the accuracy that cold 1 iteration lacks.
    one = jax.jit(functools.partial(cv.top_eigenvalues_power, self.loss, k=2, num_iters=1))
    warm = one(self.params, v0=eig.vectors)
    cold = one(self.params, v0=jax.random.normal(jax.random.key(5), (self.d, 2), jnp.float64))
    err = lambda e: float(np.max(np.abs(np.sort(e.values) - np.sort(self.ev[order]))))
    self.assertLess(err(warm), 1e-6)
    self.assertGreater(err(cold), 100 * err(warm))

  def _traces_and_frobenius_within_stated_accuracy(self):
    h = self.h
    h2 = h @ h
    sd_tr = np.sqrt(2 * (np.sum(h * h) - np.sum(np.diag(h) ** 2)) / M)
    sd_fr = np.sqrt(2 * (np.sum(h2 * h2) - np.sum(np.diag(h2) ** 2)) / M)
    hut, fro = self.out["hutchinson"], self.out["frobenius"]
    # 4 standard deviations of the stated variance: a false failure has probability ~6e-5.
    self.assertLess(abs(float(hut.value) - np.trace(h)), 4 * sd_tr)
    self.assertLess(abs(float(fro.value) - np.sum(h * h)), 4 * sd_fr)
    # The reported standard error estimates the stated one (within 30%: 200 probes).
    np.testing.assert_allclose(float(hut.std_err), sd_tr, rtol=0.3)

  def _gauss_newton_trace(self):
    w, unravel = ravel_pytree(self.params)
    jac = jax.vmap(lambda xi: jax.jacfwd(
        lambda v: self.model.apply(unravel(v), xi[None])[0])(w))(self.x)
    ref = float(jnp.sum(jac**2)) / self.x.shape[0]
    np.testing.assert_allclose(float(self.out["gn"]), ref, rtol=1e-12)
    np.testing.assert_allclose(float(self.out["gn_chunked"]), ref, rtol=1e-12)
    # At an interpolating point (targets = outputs) the Gauss-Newton trace is the Hessian's.
    np.testing.assert_allclose(float(self.out["gn"]), float(np.trace(self.out["h_interp"])),
                               rtol=1e-10)

  def _slq_quadrature_and_density(self):
    q = self.out["slq"]
    np.testing.assert_allclose(np.sum(q.weights, axis=1), 1.0, rtol=1e-12)
    # Each probe's Gauss quadrature reproduces v^T H^r v for r < 16; reproduce the probes.
    keys = jax.random.split(self.key, 3)
    for p in range(3):
      v = np.asarray(jax.random.rademacher(jax.random.split(keys[p])[0], (self.d,), jnp.int32), float)
      v /= np.linalg.norm(v)
      for r in (1, 2, 3, 5):
        ref = v @ np.linalg.matrix_power(self.h, r) @ v
        got = np.sum(np.asarray(q.weights[p]) * np.asarray(q.nodes[p]) ** r)
        np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12 * np.max(np.abs(self.ev)) ** r)
    grid = np.linspace(self.ev[0] - 1.0, self.ev[-1] + 1.0, 4001)
    dens = np.asarray(cv.spectral_density(q, jnp.asarray(grid), sigma=0.05))
    np.testing.assert_allclose(np.sum(dens) * (grid[1] - grid[0]), 1.0, rtol=1e-6)
    # Full Lanczos (m = d): the nodes are the eigenvalues.
    np.testing.assert_allclose(np.sort(self.out["slq_full"].nodes[0]), self.ev, atol=1e-9)
    np.testing.assert_allclose(float(cv.quadrature_trace(self.out["slq_full"], self.d)),
                               float(self.d * np.sum(np.asarray(self.out["slq_full"].weights[0])
                                                     * np.asarray(self.out["slq_full"].nodes[0]))))

  def test_estimators_against_dense_hessian(self):
    for name in ("hvp_and_operator_match_dense_hessian", "lanczos_top_eigenvalues",
                 "power_iteration_block_and_warm_start", "traces_and_frobenius_within_stated_accuracy",
                 "gauss_newton_trace", "slq_quadrature_and_density"):
      with self.subTest(name):
        getattr(self, "_" + name)()


class CurvatureTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model, cls.params, cls.x, cls.y, loss = _problem()
    cls.loss = staticmethod(loss)
    cls.d = ravel_pytree(cls.params)[0].size

  def test_lanczos_breakdown_low_rank(self):
    # Rank-3 PSD operator with a repeated eigenvalue in d = 10: the Krylov space is exhausted after
    # 3 steps; random restarts keep T exact, so all d Ritz values are the eigenvalues.
    a = jax.random.normal(jax.random.key(2), (3, 10), jnp.float64)
    a = a.at[2].set(a[1] * 0.0 + jnp.roll(a[1], 1))
    m = a.T @ a + a.T @ a  # eigenvalues with multiplicity and 7 zeros
    tri = jax.jit(lambda v: cv.lanczos(lambda u: m @ u, v, 10, jax.random.key(3)))(
        jnp.ones(10, jnp.float64))
    theta, _ = cv.tridiagonal_eigh(tri)
    np.testing.assert_allclose(np.sort(theta), np.linalg.eigvalsh(np.asarray(m)), atol=1e-10)
    q = np.asarray(tri.basis)
    np.testing.assert_allclose(q @ q.T, np.eye(10), atol=1e-10)

  def test_slq_probe_block_breakdown_low_rank(self):
    # slq runs its probes as one Lanczos block (shared products; the restart is a branch taken when
    # any probe breaks down, a select under an outer vmap). Every probe must still give an exact T:
    # all d nodes are the eigenvalues and the weights reproduce v^T M^r v.
    a = jax.random.normal(jax.random.key(2), (3, 10), jnp.float64)
    a = a.at[2].set(jnp.roll(a[1], 1))
    m = a.T @ a + a.T @ a + 0.5 * jnp.eye(10)  # shifted: a skipped restart would show as 0 nodes
    ev = np.linalg.eigvalsh(np.asarray(m))
    loss = lambda w: 0.5 * w @ m @ w
    f = lambda k: cv.slq(loss, jnp.ones(10, jnp.float64), k, num_probes=3, num_steps=10)
    keys = jax.random.split(jax.random.key(5), 2)
    runs = {"block": jax.jit(f)(keys[0]), "vmapped": jax.jit(jax.vmap(f))(keys)}
    for name, q in runs.items():
      nodes, weights = np.reshape(q.nodes, (-1, 10)), np.reshape(q.weights, (-1, 10))
      for p in range(nodes.shape[0]):
        with self.subTest(run=name, probe=p):
          np.testing.assert_allclose(np.sort(nodes[p]), ev, atol=1e-10)
          np.testing.assert_allclose(np.sum(weights[p]), 1.0, rtol=1e-12)
    # The quadratures reproduce the probes' moments: check them against the probes themselves.
    for p, k in enumerate(jax.random.split(keys[0], 3)):
      v = np.asarray(jax.random.rademacher(jax.random.split(k)[0], (10,), jnp.int32), float)
      v /= np.linalg.norm(v)
      for r in (1, 2, 3):
        np.testing.assert_allclose(
            np.sum(np.asarray(runs["block"].weights[p]) * np.asarray(runs["block"].nodes[p]) ** r),
            v @ np.linalg.matrix_power(np.asarray(m), r) @ v, rtol=1e-9)

  def test_hutch_pp_exact_on_low_rank(self):
    a = jax.random.normal(jax.random.key(4), (4, 12), jnp.float64)
    loss = lambda p: 0.5 * jnp.sum((a @ p["w"]) ** 2) + 0.0 * jnp.sum(p["b"])
    params = {"w": jnp.ones(12, jnp.float64), "b": jnp.ones(3, jnp.float64)}
    # Rank 4 <= s = 5: the sketch captures the whole range, the estimate is exact.
    est = jax.jit(functools.partial(cv.hutch_pp_trace, loss, num_matvecs=15))(
        params, jax.random.key(0))
    np.testing.assert_allclose(float(est), float(jnp.sum(a * a)), rtol=1e-10)

  def test_probe_chunks_give_the_same_estimate(self):
    f = lambda b: cv.hutchinson_trace(self.loss, self.params, jax.random.key(3), num_probes=12,
                                      batch_size=b).value
    np.testing.assert_allclose(jax.jit(lambda: f(5))(), jax.jit(lambda: f(None))(), rtol=1e-12)

  def test_vmap_over_keys_equals_loop(self):
    f = jax.jit(functools.partial(cv.top_eigenvalues_lanczos, self.loss, k=1, num_steps=6))
    keys = jax.random.split(jax.random.key(9), 3)
    batched = jax.vmap(lambda k: f(self.params, k).values)(keys)
    for i in range(3):
      np.testing.assert_allclose(batched[i], f(self.params, keys[i]).values, rtol=1e-12)

  @parameterized.named_parameters(
      ("hvp", lambda l, p, k: cv.hvp(l, p, p)),
      ("operator", lambda l, p, k: cv.hessian_operator(l, p)),
      ("power", lambda l, p, k: cv.top_eigenvalues_power(l, p, k)),
      ("lanczos", lambda l, p, k: cv.top_eigenvalues_lanczos(l, p, k)),
      ("hutchinson", lambda l, p, k: cv.hutchinson_trace(l, p, k, num_probes=2)),
      ("hutch_pp", lambda l, p, k: cv.hutch_pp_trace(l, p, k, num_matvecs=3)),
      ("frobenius", lambda l, p, k: cv.frobenius_sq(l, p, k, num_probes=2)),
      ("slq", lambda l, p, k: cv.slq(l, p, k, num_probes=1, num_steps=2)),
  )
  def test_non_scalar_loss_is_a_value_error_naming_the_shape(self, call):
    bad = lambda p: p["w"] * 2.0
    params = {"w": jnp.ones((3, 2), jnp.float64)}
    with self.assertRaisesRegex(ValueError, r"scalar.*\(3, 2\)"):
      call(bad, params, jax.random.key(0))

  def test_bad_counts(self):
    with self.assertRaisesRegex(ValueError, "multiple of 3"):
      cv.hutch_pp_trace(self.loss, self.params, jax.random.key(0), num_matvecs=10)
    with self.assertRaisesRegex(ValueError, "num_steps"):
      cv.lanczos(lambda v: v, jnp.ones(4), 5)
    with self.assertRaisesRegex(ValueError, "which"):
      cv.lanczos_eigen(lambda v: v, jnp.ones(4), 3, which="SA")


if __name__ == "__main__":
  absltest.main()
