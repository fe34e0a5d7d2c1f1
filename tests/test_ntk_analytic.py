"""Tests of jaxopt_lab.ntk.analytic: infinite-width NNGP/NTK against independent NumPy
references."""

import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from scipy.special import erf as np_erf

from jaxopt_lab.ntk import analytic

ARCH = dict(depth=3, sigma_w=1.3, sigma_b=0.2)


def _points(n, d=3, seed=0, scale=1.0):
  x = np.random.default_rng(seed).normal(size=(n, d))
  return scale * x / np.linalg.norm(x, axis=1, keepdims=True)


def _np_closed_form(x1, x2, depth, act, sigma_w, sigma_b, widths=None, same=False):
  """Textbook formulas in NumPy (arccos form of Cho & Saul; Williams' arcsin form for erf).

  ``same``: x1 is x2, and the diagonal's cosine is exactly 1 (arccos of a rounded 1 - eps would
  make its angle sqrt(2 eps) instead of 0)."""
  n0 = x1.shape[1]
  q12 = sigma_w**2 * x1 @ x2.T / n0 + sigma_b**2
  q11 = sigma_w**2 * np.sum(x1**2, 1)[:, None] / n0 + sigma_b**2
  q22 = sigma_w**2 * np.sum(x2**2, 1)[None, :] / n0 + sigma_b**2
  cw = [sigma_w**2] * depth if widths is None else [n0] + list(widths)
  cb = sigma_b**2 if widths is None else 1.0
  ntk = cw[0] * (x1 @ x2.T / n0) + cb
  for l in range(1, depth):
    if act == "relu":
      c = np.clip(q12 / np.sqrt(q11 * q22), -1, 1)
      if same:
        np.fill_diagonal(c, 1.0)
      th = np.arccos(c)
      e = np.sqrt(q11 * q22) * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)
      ed = (np.pi - th) / (2 * np.pi)
      e11, e22 = q11 / 2, q22 / 2
    elif act == "erf":
      f = lambda a, b, c: 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * a) * (1 + 2 * b)))
      e, e11, e22 = f(q11, q22, q12), f(q11, q11, q11), f(q22, q22, q22)
      ed = 4 / np.pi / np.sqrt((1 + 2 * q11) * (1 + 2 * q22) - 4 * q12**2)
    else:  # identity
      e, ed, e11, e22 = q12, np.ones_like(q12), q11, q22
    ntk = cw[l] * e + cb + sigma_w**2 * ed * ntk
    q12, q11, q22 = (sigma_w**2 * v + sigma_b**2 for v in (e, e11, e22))
  return q12, ntk


def _np_monte_carlo(x, depth, phi, dphi, sigma_w, sigma_b, samples=400_000, seed=0):
  """NNGP/NTK by Monte Carlo: each pair's 2x2 Gaussian expectation sampled at every layer."""
  n, n0 = x.shape
  z = np.random.default_rng(seed).normal(size=(2, samples // 2))
  z = np.concatenate([z, -z], axis=1)  # antithetic
  nngp = np.zeros((n, n))
  ntk = np.zeros((n, n))
  for i in range(n):
    for j in range(i, n):
      q = sigma_w**2 * np.array([[x[i] @ x[i], x[i] @ x[j]], [x[j] @ x[i], x[j] @ x[j]]]) / n0
      q += sigma_b**2
      t = q[0, 1]
      for _ in range(1, depth):
        chol = np.linalg.cholesky(q + 1e-300 * np.eye(2)) if i != j else None
        if i == j:
          u = v = np.sqrt(q[0, 0]) * z[0]
        else:
          u, v = chol @ z
        e_uu, e_uv, e_vv = np.mean(phi(u) ** 2), np.mean(phi(u) * phi(v)), np.mean(phi(v) ** 2)
        ed = np.mean(dphi(u) * dphi(v))
        q = sigma_w**2 * np.array([[e_uu, e_uv], [e_uv, e_vv]]) + sigma_b**2
        t = q[0, 1] + sigma_w**2 * ed * t
      nngp[i, j] = nngp[j, i] = q[0, 1]
      ntk[i, j] = ntk[j, i] = t
  return nngp, ntk


NP_ACTS = {
    "relu": (lambda u: np.maximum(u, 0), lambda u: (u > 0).astype(float)),
    "erf": (np_erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-u**2)),
    "tanh": (np.tanh, lambda u: 1 - np.tanh(u) ** 2),
}


class ClosedFormTest(parameterized.TestCase):

  @parameterized.product(act=["relu", "erf", "identity"], depth=[1, 2, 4],
                         parametrization=["ntk", "standard"])
  def test_matches_textbook_formulas(self, act, depth, parametrization):
    x1, x2 = _points(5, seed=1, scale=1.7), _points(4, seed=2, scale=0.6)
    widths = (64, 32, 16)[:depth - 1] if parametrization == "standard" else None
    k = analytic.mlp_kernels(x1, x2, depth=depth, activation=act, sigma_w=1.3, sigma_b=0.2,
                             parametrization=parametrization, hidden_widths=widths)
    nngp, ntk = _np_closed_form(x1, x2, depth, act, 1.3, 0.2, widths)
    # float64, two algebraically equal forms (atan2 vs arccos): a few ulps times the depth.
    np.testing.assert_allclose(k.nngp, nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.ntk, ntk, rtol=1e-12, atol=1e-14)

  def test_known_values(self):
    x = np.eye(2)  # orthogonal unit vectors, n0 = 2
    k = analytic.mlp_kernels(x, depth=2, activation="relu", sigma_w=1.0, sigma_b=0.0)
    # Sigma^1 = diag(1/2); off-diagonal theta = pi/2: E[relu relu] = (1/2)(1/(2 pi)), E' = 1/4.
    np.testing.assert_allclose(k.nngp, [[1 / 4, 1 / (4 * np.pi)], [1 / (4 * np.pi), 1 / 4]],
                               rtol=1e-15)
    np.testing.assert_allclose(k.ntk, [[1 / 2, 1 / (4 * np.pi)], [1 / (4 * np.pi), 1 / 2]],
                               rtol=1e-15)
    k = analytic.mlp_kernels(np.ones((1, 1)), depth=2, activation="erf", sigma_w=1.0)
    np.testing.assert_allclose(k.nngp, [[2 / np.pi * np.arcsin(2 / 3)]], rtol=1e-15)
    np.testing.assert_allclose(k.ntk, [[2 / np.pi * np.arcsin(2 / 3) + 4 / np.pi / np.sqrt(5)]],
                               rtol=1e-15)
    k = analytic.mlp_kernels(np.ones((1, 4)), depth=3, activation="identity", sigma_w=2.0)
    np.testing.assert_allclose(k.ntk, [[3 * 2.0**6]], rtol=1e-15)  # L sigma_w^{2L} |x|^2/n0


class QuadratureAndMonteCarloTest(parameterized.TestCase):

  @parameterized.parameters("relu", "erf", "tanh")  # gelu, softplus: the same quadrature path
  def test_against_numpy_monte_carlo(self, act):
    x = _points(4, seed=3)
    # Order 32: quadrature error <= 1e-4 here (module docstring), far below the MC tolerance.
    k = analytic.mlp_kernels(x, depth=3, activation=act, sigma_w=1.3, sigma_b=0.2,
                             quadrature_order=32)
    nngp, ntk = _np_monte_carlo(x, 3, *NP_ACTS[act], 1.3, 0.2)
    # 4e5 antithetic samples: standard error ~3e-3 of the kernel scale; 1.5e-2 is ~5 sigma.
    scale = np.abs(ntk).max()
    np.testing.assert_allclose(k.ntk, ntk, atol=1.5e-2 * scale)
    np.testing.assert_allclose(k.nngp, nngp, atol=1.5e-2 * np.abs(nngp).max())

  @parameterized.parameters(1e-2, 1.0, 10.0, 100.0, 1e4)
  def test_automatic_quadrature_meets_its_stated_accuracy(self, q):
    # erf as a callable (quadrature) against its closed form: <= 1e-6 of the kernel scale in
    # float64 at every pre-activation variance up to 1e4 (Gauss-Hermite of order 64 was off by 6e-2
    # at q = 10 and 0.86 at q = 100). Points of norm sqrt(q) at three angles; sigma_w = 1.
    rng = np.random.default_rng(4)
    x = np.sqrt(q) * np.array([[1.0, 0.0], [0.6, 0.8], [-0.28, 0.96]])
    x2 = np.sqrt(q) * rng.uniform(0.5, 1.0, size=(2, 1)) * _points(2, d=2, seed=5)
    rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
    for depth in (2, 3):
      arch = dict(depth=depth, sigma_w=1.0, sigma_b=0.1)
      for b in (None, x2):
        exact = analytic.mlp_kernels(x, b, activation="erf", **arch)
        quad = analytic.mlp_kernels(x, b, activation=jax.scipy.special.erf, **arch)
        self.assertLess(rel(quad.nngp, exact.nngp), 1e-6, (depth, b is None))
        self.assertLess(rel(quad.ntk, exact.ntk), 1e-6, (depth, b is None))
      diag = analytic.mlp_kernels_diag(x, activation=jax.scipy.special.erf, **arch)
      exact = analytic.mlp_kernels_diag(x, activation="erf", **arch)
      np.testing.assert_allclose(diag.ntk, exact.ntk, rtol=1e-6)

  def test_quadrature_converges_with_order(self):
    # Explicit orders: exponential convergence for erf (order 64 is at rounding at q ~ 1.7);
    # relu's kink only algebraic (measured NNGP 1.2e-2 / 3.1e-3 / 7.8e-4 and NTK 1.3e-2 / 9.3e-3 /
    # 2.2e-3 at orders 16 / 32 / 64), and the automatic order refuses it with the accuracy reached.
    arch = dict(depth=2, sigma_w=1.3, sigma_b=0.2)
    x1, x2 = _points(5, seed=4), _points(3, seed=5)
    rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
    exact = analytic.mlp_kernels(x1, x2, activation="erf", **arch)
    quad = analytic.mlp_kernels(x1, x2, activation=jax.scipy.special.erf, quadrature_order=64,
                                **arch)
    self.assertLess(rel(quad.nngp, exact.nngp), 1e-14)
    self.assertLess(rel(quad.ntk, exact.ntk), 1e-14)
    exact = analytic.mlp_kernels(x1, x2, activation="relu", **arch)
    errs = []
    for order in (16, 32, 64):
      quad = analytic.mlp_kernels(x1, x2, activation=jax.nn.relu, quadrature_order=order, **arch)
      errs.append([rel(quad.nngp, exact.nngp), rel(quad.ntk, exact.ntk)])
    errs = np.array(errs)
    self.assertLess(errs[-1].max(), 3e-3)
    self.assertTrue(np.all(errs[1:] < 0.75 * errs[:-1]), errs)
    with self.assertRaisesRegex(ValueError, r"^activation: quadrature reaches only .* at order 256"):
      analytic.mlp_kernels(x1, x2, activation=jax.nn.relu, **arch)
    with self.assertRaisesRegex(ValueError, r"^activation: .*variances up to 1e\+06"):
      analytic.mlp_kernels_diag(np.array([[1e3]]), depth=2, activation=jnp.sin)

  @parameterized.parameters("tanh", "gelu", "softplus", "sigmoid")
  def test_quadrature_diagonal_against_adaptive_quadrature(self, act):
    # E[phi(u)^2] and E[phi'(u)^2], u ~ N(0, q), by scipy's adaptive quad on split intervals (an
    # independent rule), up to q = 1e4; the module docstring states 1e-12 at order 128.
    from scipy import integrate  # pylint: disable=g-import-not-at-top
    from scipy.special import expit  # pylint: disable=g-import-not-at-top
    phi, dphi = {
        "tanh": (np.tanh, lambda u: 1 / np.cosh(u) ** 2),
        "gelu": (lambda u: u * (1 + np_erf(u / np.sqrt(2))) / 2,
                 lambda u: (1 + np_erf(u / np.sqrt(2))) / 2 + u * np.exp(-u * u / 2)
                 / np.sqrt(2 * np.pi)),
        "softplus": (lambda u: np.logaddexp(0, u), expit),
        "sigmoid": (expit, lambda u: expit(u) * (1 - expit(u))),
    }[act]
    qs = np.array([0.3, 30.0, 1e4])

    def expect(f, q):
      a = np.sqrt(q)
      g = lambda u: f(u) ** 2 * np.exp(-0.5 * (u / a) ** 2) / (a * np.sqrt(2 * np.pi))
      cuts = [c for c in (1, 4, 16, 64, 256) if c < 9 * a]
      pts = sorted({-9 * a, 9 * a, 0.0} | {s * c for c in cuts for s in (-1, 1)})
      return sum(integrate.quad(g, lo, hi, epsabs=0, epsrel=1e-13, limit=200)[0]
                 for lo, hi in zip(pts[:-1], pts[1:]))

    ref = np.array([[expect(phi, q), expect(dphi, q)] for q in qs])
    # depth 2, sigma_w = 1, sigma_b = 0, one input coordinate: Sigma = E[phi^2], and
    # Theta = E[phi^2] + E[phi'^2] q.
    d = analytic.mlp_kernels_diag(np.sqrt(qs)[:, None], depth=2, activation=act,
                                  quadrature_order=128)
    np.testing.assert_allclose(d.nngp, ref[:, 0], rtol=1e-12)
    np.testing.assert_allclose(d.ntk, ref[:, 0] + ref[:, 1] * qs, rtol=1e-12)


class ExactUnderEveryCompilationTest(parameterized.TestCase):
  """Regression for XLA:CPU's float64 atan2 returning wrong angles inside the fused recursion:
  mlp_kernels(np.full((2, 2), 0.2), depth=5, sigma_w=1.5, sigma_b=0.1) gave an NTK with off-diagonal
  1.734 instead of 0.928 (non-PSD), and 36 of 300 kernels of random inputs with repeated rows were
  wrong by more than 1e-6 of their scale."""

  def test_the_reported_case(self):
    x = np.full((2, 2), 0.2)
    k = analytic.mlp_kernels(x, depth=5, sigma_w=1.5, sigma_b=0.1)
    # Two equal points: every entry is the diagonal's value (0.928...); the off-diagonal pair's
    # angle is known only to sqrt(eps) (see below), the diagonal's exactly.
    nngp, ntk = _np_closed_form(x[:1], x[:1], 5, "relu", 1.5, 0.1, same=True)
    np.testing.assert_allclose(k.ntk, np.full((2, 2), ntk[0, 0]), rtol=5 * np.sqrt(2.2e-16))
    np.testing.assert_allclose(k.nngp, np.full((2, 2), nngp[0, 0]), rtol=5 * np.sqrt(2.2e-16))
    np.testing.assert_allclose(np.diag(k.ntk), [ntk[0, 0]] * 2, rtol=1e-14)

  @parameterized.product(act=["relu", "erf"], dtype=["float64", "float32"],
                         path=["whole", "strips", "blocked", "diag"], jit=[True, False])
  def test_repeated_parallel_antiparallel_rows(self, act, dtype, path, jit):
    # Every degenerate geometry at once: exact duplicates, near-duplicates (angle ~1e-5), scaled
    # copies, antiparallel rows and a zero row, shuffled among generic points; depths 5 and 7.
    # Tolerance: a pair's angle comes from q11 q22 - q12^2, which for (nearly) parallel or
    # antiparallel rows is a difference of rounded numbers: an exact duplicate pair cannot be told
    # from one at angle sqrt(eps), in our formula and in the reference's arccos alike, and the NTK
    # is Lipschitz in the angle (d/dtheta of (pi - theta) / 2 pi), amplified by each layer. So the
    # band is depth * sqrt(eps) of the kernel scale (measured max: 8e-9 float64, 2e-4 float32 at
    # depth 5, i.e. ~0.6 sqrt(eps)); the reported bug was off by O(1).
    rng = np.random.default_rng(23)
    base = _points(6, d=4, seed=24)
    rows = [base, base[:3], base[:2] + 1e-5 * rng.normal(size=(2, 4)), 3.0 * base[2:4],
            -base[:3], -2.5 * base[4:5], np.zeros((1, 4))]
    x = np.concatenate(rows)[rng.permutation(sum(len(r) for r in rows))]
    n = len(x)
    if path == "strips":  # past 2 strips of 128 rows on CPU
      x = np.concatenate([x] * (300 // n + 1))[:300]
    ref_x = x.astype(dtype).astype(np.float64)
    for depth in (5, 7):
      tol = depth * np.sqrt(np.finfo(dtype).eps)
      kw = dict(depth=depth, activation=act, sigma_w=1.5, sigma_b=0.1)
      ref = _np_closed_form(ref_x, ref_x, depth, act, 1.5, 0.1, same=True)
      xd = x.astype(dtype)
      if path == "diag":
        fn = lambda z, kw=kw: analytic.mlp_kernels_diag(z, **kw)
        ref = tuple(np.diag(r) for r in ref)
      elif path == "blocked":
        fn = lambda z, kw=kw: analytic.mlp_kernels_blocked(z, block_size=8, **kw)
      else:
        fn = lambda z, kw=kw: analytic.mlp_kernels(z, **kw)
      if path != "blocked" and jit:
        got = jax.jit(fn)(xd)
      elif path != "blocked":
        with jax.disable_jit():
          got = fn(xd)
      else:
        got = fn(xd)
      for g, r in zip(got, ref):
        g = np.asarray(g, np.float64)
        scale = np.abs(r).max()
        self.assertLess(np.abs(g - r).max() / scale, tol, (depth, np.abs(g - r).max()))
        if g.ndim == 2:
          np.testing.assert_array_equal(g, g.T)
          # PSD up to its entries' errors (duplicates make it singular): by Weyl's inequality an
          # entrywise error tol * scale moves eigenvalues by at most n * tol * scale.
          self.assertGreater(np.linalg.eigvalsh(g).min(), -len(g) * tol * scale)

  def test_float64_arctangent_against_libm(self):
    rng = np.random.default_rng(16)
    y = np.abs(rng.normal(size=200_000)) * 10.0 ** rng.uniform(-12, 12, 200_000)
    x = rng.normal(size=200_000) * 10.0 ** rng.uniform(-12, 12, 200_000)
    y[:4], x[:4] = 0.0, [2.0, -2.0, 0.0, -0.0]
    got = np.asarray(jax.jit(analytic._atan2_nonneg)(y, x))
    ref = np.arctan2(y, x)
    self.assertLessEqual(np.max(np.abs(got - ref) / np.spacing(np.maximum(ref, 1e-300))), 6)
    np.testing.assert_array_equal(got[:4], [0.0, np.pi, 0.0, np.pi])

  @parameterized.parameters("relu", "erf", "tanh")
  def test_small_self_kernels_exactly_symmetric(self, act):
    # Below 256 points the whole-matrix path ran and, with sigma_b != 0, was 1 ulp asymmetric.
    for n in (3, 17, 100, 255):
      x = _points(n, d=5, seed=n)
      for dtype in (np.float64, np.float32):
        k = analytic.mlp_kernels(x.astype(dtype), depth=4, activation=act, sigma_w=1.4,
                                 sigma_b=0.3, quadrature_order=16)
        np.testing.assert_array_equal(k.ntk, k.ntk.T)
        np.testing.assert_array_equal(k.nngp, k.nngp.T)


class DiagonalSymmetryPrecisionTest(parameterized.TestCase):

  @parameterized.parameters("relu", "erf", "tanh")
  def test_diagonal_exact_and_symmetric(self, act):
    x = _points(7, seed=7, scale=1.5)
    k = analytic.mlp_kernels(x, activation=act, quadrature_order=16, **ARCH)
    d = analytic.mlp_kernels_diag(x, activation=act, quadrature_order=16, **ARCH)
    # Exact: x @ x.T is bitwise symmetric on XLA:CPU, the closed forms keep it, quadrature
    # symmetrizes.
    np.testing.assert_array_equal(k.ntk, k.ntk.T)
    np.testing.assert_array_equal(k.nngp, k.nngp.T)
    # Same elementwise formula with det = 0; XLA may fuse the two differently: 4 ulps.
    np.testing.assert_allclose(jnp.diag(k.ntk), d.ntk, rtol=1e-15)
    np.testing.assert_allclose(jnp.diag(k.nngp), d.nngp, rtol=1e-15)

  def test_self_kernel_vs_cross_kernel(self):
    x = _points(6, seed=8)
    same, cross = analytic.mlp_kernels(x, **ARCH), analytic.mlp_kernels(x, x, **ARCH)
    off = ~np.eye(6, dtype=bool)
    np.testing.assert_allclose(np.asarray(same.ntk)[off], np.asarray(cross.ntk)[off], rtol=1e-13)
    # The cross kernel cannot know x == x': its diagonal angle is sqrt(eps)-accurate, not exact.
    np.testing.assert_allclose(jnp.diag(same.ntk), jnp.diag(cross.ntk), rtol=1e-6)

  @parameterized.parameters("relu", "erf")
  def test_float32_accuracy(self, act):
    x = _points(32, d=16, seed=9, scale=3.0)
    k64 = analytic.mlp_kernels(x, activation=act, **ARCH).ntk
    k32 = analytic.mlp_kernels(x.astype(np.float32), activation=act, **ARCH).ntk
    self.assertEqual(k32.dtype, jnp.float32)
    err = np.abs(np.asarray(k32, np.float64) - np.asarray(k64))
    # Off-diagonal: a few float32 ulps per layer of the kernel's scale (erf kernels cross zero, so
    # the error is relative to the largest entry; random points are far from parallel).
    self.assertLess(err.max() / np.abs(k64).max(), 2e-6)
    # Diagonal: the angle is exactly 0, so it is as accurate as the rest (neural-tangents ~7e-4).
    self.assertLess((np.diag(err) / np.abs(np.diag(k64))).max(), 2e-6)

  def test_vmap_over_sigma_equals_loop(self):
    x = _points(4, seed=10)
    sw = jnp.array([0.5, 1.0, 2.0])
    batched = jax.vmap(lambda s: analytic.mlp_kernels(x, depth=3, sigma_w=s, sigma_b=0.1).ntk)(sw)
    for i, s in enumerate(sw):
      np.testing.assert_allclose(batched[i], analytic.mlp_kernels(
          x, depth=3, sigma_w=float(s), sigma_b=0.1).ntk, rtol=1e-14)

  def test_compiles_once(self):
    x = _points(5, seed=11)
    analytic.mlp_kernels(x, depth=2, activation="erf", sigma_w=1.0)
    before = analytic._kernels_jit._cache_size()
    for s in (0.5, 1.5, 2.5):
      analytic.mlp_kernels(x + s, depth=2, activation="erf", sigma_w=s, sigma_b=s / 3)
    self.assertEqual(analytic._kernels_jit._cache_size(), before)


class BlockedTest(parameterized.TestCase):

  @parameterized.parameters(("relu", 16, 37, 3), ("erf", 7, 37, 3), ("tanh", 8, 11, 2))
  def test_blocked_equals_unblocked(self, act, block, n, depth):
    x1, x2 = _points(n, seed=12), _points(n // 2 + 3, seed=13)
    arch = dict(ARCH, depth=depth, activation=act, quadrature_order=16)
    for a, b in [(x1, None), (x1, x2)]:
      ref = analytic.mlp_kernels(a, b, **arch)
      got = analytic.mlp_kernels_blocked(a, b, block_size=block, **arch)
      # Tiles see the same numbers as the whole; XLA may vectorize tiles differently: ~ulps.
      np.testing.assert_allclose(got.ntk, ref.ntk, rtol=1e-13)
      np.testing.assert_allclose(got.nngp, ref.nngp, rtol=1e-13)
      if b is None:
        np.testing.assert_array_equal(got.ntk, got.ntk.T)
        np.testing.assert_allclose(np.diag(got.ntk), analytic.mlp_kernels_diag(a, **arch).ntk,
                                   rtol=1e-15)

  def test_sharded_over_devices_and_out_arrays(self):
    devices = jax.local_devices()
    self.assertGreaterEqual(len(devices), 2)  # conftest forces 4 CPU devices
    x = _points(45, seed=14)
    ref = analytic.mlp_kernels_blocked(x, block_size=8, **ARCH)
    with tempfile.TemporaryDirectory() as tmp:
      mm = np.memmap(f"{tmp}/ntk.dat", dtype=np.float64, mode="w+", shape=(45, 45))
      got = analytic.mlp_kernels_blocked(x, block_size=8, which="ntk", devices=devices,
                                         out=analytic.Kernels(None, mm), **ARCH)
      self.assertIsNone(got.nngp)
      self.assertIs(got.ntk, mm)
      # One tile per device (vmapped and sharded) vs one at a time: XLA vectorizes differently.
      np.testing.assert_allclose(np.asarray(mm), ref.ntk, rtol=1e-14)

  def test_one_compile_for_all_tiles(self):
    x = _points(50, seed=15)
    analytic._tile_program.cache_clear()
    analytic.mlp_kernels_blocked(x, block_size=16, which="nngp", depth=2)
    self.assertEqual(analytic._tile_program.cache_info().currsize, 1)
    program = analytic._tile_program(analytic._check_arch(2, "relu", 1.0, 0.0, "ntk", None, 32),
                                     16, True, "nngp", None)
    self.assertEqual(program._cache_size(), 1)  # 10 tiles, one executable

  def test_fifty_thousand_points_fit_a_24gb_device(self):
    # Compile (do not run) the tile program for N = 50,000 MNIST-sized float32 inputs.
    arch = analytic._check_arch(3, "relu", 1.0, 0.0, "ntk", None, 32)
    program = analytic._tile_program(arch, 4096, True, "ntk", None)
    padded = -(-50_000 // 4096) * 4096
    s = jax.ShapeDtypeStruct
    compiled = program.lower(s((padded, 784), jnp.float32), s((padded, 784), jnp.float32),
                             s((), jnp.float32), s((), jnp.float32), s((1,), jnp.int32),
                             s((1,), jnp.int32)).compile()
    mem = compiled.memory_analysis()
    total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    self.assertLess(total, 2e9)  # the (50,000)^2 float32 NTK itself (10 GB) lives on the host


class FastPathsTest(parameterized.TestCase):
  """The float32 atan2 polynomial and the CPU strip layout (both used only past small sizes)."""

  def test_float32_atan2_against_float64(self):
    rng = np.random.default_rng(16)
    y = np.abs(rng.normal(size=200_000)) * 10.0 ** rng.uniform(-6, 6, 200_000)
    x = rng.normal(size=200_000) * 10.0 ** rng.uniform(-6, 6, 200_000)
    y[:4], x[:4] = 0.0, [2.0, -2.0, 0.0, -0.0]  # the diagonal, antiparallel, zero-norm cases
    got = np.asarray(jax.jit(analytic._atan2_nonneg)(jnp.asarray(y, jnp.float32),
                                                     jnp.asarray(x, jnp.float32)), np.float64)
    ref = np.arctan2(y.astype(np.float32), x.astype(np.float32)).astype(np.float64)
    # Polynomial 9.3e-8 plus the roundings of pi/2 - a and pi - a: under 2 ulps of pi.
    self.assertLess(np.abs(got - ref).max(), 2 * np.spacing(np.float32(np.pi)))
    np.testing.assert_array_equal(got[:4], np.float32([0.0, np.pi, 0.0, np.pi]))

  def test_traced_inputs_under_jit_and_vmap(self):
    # A tracer cannot say which device it lives on: the strip choice must not ask it (it did once,
    # and every jitted caller such as a theory check's relative_errors failed to trace).
    x = _points(300, seed=19)
    eager = analytic.mlp_kernels(x, depth=3, activation="relu").ntk
    jitted = jax.jit(lambda z: analytic.mlp_kernels(z, depth=3, activation="relu").ntk)(x)
    # Same float64 formulas; XLA may fuse the jitted program differently: a few ulps, not more.
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-12)
    vmapped = jax.vmap(lambda z: analytic.mlp_kernels(z, depth=3, activation="relu").ntk)(x[None])
    np.testing.assert_allclose(vmapped[0], eager, rtol=1e-12, atol=1e-12)

  @parameterized.parameters(("relu", 600, None), ("relu", 611, None), ("erf", 600, 333),
                            ("tanh", 611, 257))
  def test_strips_equal_whole_matrix(self, act, n1, n2):
    # 600 = 4 strips of 150 (no padding); 611 is padded to whole strips; cross kernels by strips.
    x1, x2 = _points(n1, seed=17), None if n2 is None else _points(n2, seed=18)
    arch = analytic._check_arch(3, act, 1.3, 0.2, "ntk", None, 8)
    kw = dict(arch=arch, same=x2 is None)
    b = x1 if x2 is None else x2
    whole = analytic._kernels_jit(x1, b, 1.3, 0.2, strip_rows=None, **kw)
    strips = analytic._kernels_jit(x1, b, 1.3, 0.2, strip_rows=128, **kw)
    for got, ref in zip(strips, whole):
      # The same numbers, other matmul shapes: ulps of each entry, or of the kernel's scale where
      # it crosses zero (erf, tanh).
      np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14 * np.abs(ref).max())
      if x2 is None:
        np.testing.assert_array_equal(got, got.T)
        diag = analytic.mlp_kernels_diag(x1, depth=3, activation=act, sigma_w=1.3, sigma_b=0.2)
        np.testing.assert_allclose(np.diag(got), diag.nngp if got is strips.nngp else diag.ntk,
                                   rtol=1e-15)

  def test_blocked_tiles_by_strips(self):
    # Tiles of 300 > 2 * 128 rows: each tile is computed in strips with a traced `same`.
    x = _points(611, seed=19)
    got = analytic.mlp_kernels_blocked(x, block_size=300, **ARCH)
    ref = analytic._kernels_jit(x, x, 1.3, 0.2, arch=analytic._check_arch(
        3, "relu", 1.3, 0.2, "ntk", None, 8), same=True, strip_rows=None)
    np.testing.assert_allclose(got.ntk, ref.ntk, rtol=1e-13)
    np.testing.assert_array_equal(got.ntk, got.ntk.T)
    np.testing.assert_allclose(np.diag(got.ntk), analytic.mlp_kernels_diag(x, **ARCH).ntk,
                               rtol=1e-15)


class ValidationTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("feature_dims", dict(x2=np.ones((2, 4))), "x2"),
      ("negative_scale", dict(sigma_w=-1.0), "sigma_w"),
      ("negative_bias", dict(sigma_b=-0.1), "sigma_b"),
      ("activation", dict(activation="swish42"), "activation"),
      ("depth", dict(depth=0), "depth"),
      ("parametrization", dict(parametrization="mup"), "parametrization"),
      ("standard_needs_widths", dict(parametrization="standard"), "hidden_widths"),
      ("widths_length", dict(hidden_widths=(3,)), "hidden_widths"),
      ("quadrature", dict(activation="tanh", quadrature_order=1), "quadrature_order"),
  )
  def test_bad_arguments(self, kwargs, name):
    args = dict(x1=np.ones((3, 2)), depth=3)
    args.update(kwargs)
    x1 = args.pop("x1")
    x2 = args.pop("x2", None)
    with self.assertRaisesRegex(ValueError, f"^{name}"):
      analytic.mlp_kernels(x1, x2, **args)

  def test_bad_inputs(self):
    for x, name in [(np.ones((0, 2)), "x1"), (np.array([[np.nan, 1.0]]), "x1"),
                    (np.ones(3), "x1"), (np.ones((2, 2), np.int32), "x1")]:
      with self.assertRaisesRegex(ValueError, f"^{name}"):
        analytic.mlp_kernels(x, depth=2)
    with self.assertRaisesRegex(ValueError, "^x2"):
      analytic.mlp_kernels(np.ones((2, 2)), np.array([[1.0, np.inf]]), depth=2)
    with self.assertRaisesRegex(ValueError, "^x"):
      analytic.mlp_kernels_diag(np.ones((0, 2)), depth=2)
    with self.assertRaisesRegex(ValueError, "^block_size"):
      analytic.mlp_kernels_blocked(np.ones((2, 2)), depth=2, block_size=0)
    with self.assertRaisesRegex(ValueError, "^which"):
      analytic.mlp_kernels_blocked(np.ones((2, 2)), depth=2, which="all")


if __name__ == "__main__":
  absltest.main()
