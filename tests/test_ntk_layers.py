"""Tests of jaxopt_lab.ntk.layers: kernels against an independent float64 reference, mlp_kernels,
the new closed forms, tiling, jit, memory estimate, Monte Carlo, and the one-line errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.ntk import analytic
from jaxopt_lab.ntk import layers as L

# ----------------------------------------------------------------------------------------------
# An independent reference: the joint covariance over (point, position) pairs as one matrix, conv
# and pooling as sums of selection matrices, ReLU by arccos; padding amounts from XLA's own
# padtype_to_pads. Slow and plain, for tiny inputs.


def _selections(size, window, stride, padding):
  """Per 2-D shift d, the (P_out, P_in) matrix picking input position t*o + d - pad (zero rows
  where padded; wrapped for CIRCULAR)."""
  pads = jax.lax.padtype_to_pads(size, window, stride, "SAME" if padding != "VALID" else "VALID")
  out = [(-(-n // t)) if padding != "VALID" else (n - k) // t + 1
         for n, k, t in zip(size, window, stride)]
  mats = []
  for d in np.ndindex(*window):
    s = np.zeros((math.prod(out), math.prod(size)))
    for o in np.ndindex(*out):
      idx = [oi * t + di - lo for oi, t, di, (lo, _) in zip(o, stride, d, pads)]
      if padding == "CIRCULAR":
        idx = [i % n for i, n in zip(idx, size)]
      elif any(i < 0 or i >= n for i, n in zip(idx, size)):
        continue
      s[np.ravel_multi_index(o, out), np.ravel_multi_index(idx, size)] = 1
    mats.append(s)
  return mats, tuple(out)


def _relu_ref(k, theta):
  v = np.sqrt(np.diag(k))
  norm = np.outer(v, v)
  c = np.clip(k / norm, -1, 1)
  np.fill_diagonal(c, 1)  # arccos is ill-conditioned at 1: an ulp there is 1e-8 of angle
  t = np.arccos(c)
  e = norm * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi)
  return e, (np.pi - t) / (2 * np.pi) * theta


def reference(x, spec):
  """NNGP and NTK (NTK parametrization) of a spec: ("conv", out, filter, strides, padding, sw, sb),
  ("relu",), ("pool", window, strides, padding), ("gap",), ("dense", sw, sb) (after flatten)."""
  x = np.asarray(x, np.float64)
  n, size, c = x.shape[0], x.shape[1:-1], x.shape[-1]
  k = x.reshape(n * math.prod(size), c) @ x.reshape(n * math.prod(size), c).T / c
  theta = np.zeros_like(k)
  eye = np.eye(n)
  for layer in spec:
    if layer[0] == "conv":
      _, _, f, t, p, sw, sb = layer
      mats, size = _selections(size, f, t, p)
      big = [np.kron(eye, m) for m in mats]
      ak = sum(b @ k @ b.T for b in big) / len(big)
      at = sum(b @ theta @ b.T for b in big) / len(big)
      k = sw**2 * ak + sb**2
      theta = k + sw**2 * at
    elif layer[0] == "relu":
      k, theta = _relu_ref(k, theta)
    elif layer[0] in ("pool", "gap"):
      if layer[0] == "pool":
        mats, size = _selections(size, layer[1], layer[2], layer[3])
        avg = np.kron(eye, sum(mats) / len(mats))
      else:
        avg, size = np.kron(eye, np.ones((1, math.prod(size))) / math.prod(size)), ()
      k, theta = avg @ k @ avg.T, avg @ theta @ avg.T
    elif layer[0] == "dense":
      _, sw, sb = layer
      p = math.prod(size)
      diag = lambda a: np.einsum("npmp->nm", a.reshape(n, p, n, p)) / p
      k_new = sw**2 * diag(k) + sb**2
      theta = k_new + sw**2 * diag(theta)
      k, size = k_new, ()
  return k, theta


def _layers(spec, width=8):
  out = []
  for layer in spec:
    if layer[0] == "conv":
      _, _, f, t, p, sw, sb = layer
      out.append(L.Conv(width, f, strides=t, padding=p, sigma_w=sw, sigma_b=sb))
    elif layer[0] == "relu":
      out.append(L.Relu())
    elif layer[0] == "pool":
      out.append(L.AvgPool(layer[1], strides=layer[2], padding=layer[3]))
    elif layer[0] == "gap":
      out.append(L.GlobalAvgPool())
    else:
      out += [] if any(l[0] == "gap" for l in spec) else [L.Flatten()]
      out.append(L.Dense(1, sigma_w=layer[1], sigma_b=layer[2]))
  return L.serial(*out)


SPECS = {
    "same_valid_stride": [("conv", 8, (3, 3), (1, 1), "SAME", 1.3, 0.4), ("relu",),
                          ("conv", 8, (2, 3), (2, 1), "VALID", 1.1, 0.2), ("relu",),
                          ("dense", 1.2, 0.3)],
    "circular_pool_same": [("conv", 8, (3, 2), (1, 2), "CIRCULAR", 1.3, 0.4), ("relu",),
                           ("pool", (2, 2), (1, 1), "SAME"), ("conv", 8, (2, 2), (1, 1), "SAME",
                                                               1.0, 0.1),
                           ("relu",), ("dense", 1.0, 0.5)],
    "pool_valid_gap": [("conv", 8, (3, 3), (1, 1), "SAME", 1.5, 0.0), ("relu",),
                       ("pool", (2, 2), (2, 2), "VALID"), ("gap",),
                       ("dense", 1.0, 0.2)],
    "even_filter_same_stride": [("conv", 8, (4, 4), (2, 2), "SAME", 1.2, 0.3), ("relu",),
                                ("dense", 1.0, 0.1)],
}


class ReferenceTest(parameterized.TestCase):

  @parameterized.parameters(*SPECS)
  def test_kernels_match_reference(self, name):
    spec = SPECS[name]
    x = jax.random.normal(jax.random.key(0), (3, 5, 4, 2), jnp.float64)
    k_ref, t_ref = reference(x, spec)
    net = _layers(spec)
    for full in (False, True):
      k = net.kernels(x, full_spatial=full)
      np.testing.assert_allclose(k.nngp, k_ref, rtol=1e-12, atol=1e-13, err_msg=f"{name} {full}")
      np.testing.assert_allclose(k.ntk, t_ref, rtol=1e-12, atol=1e-13, err_msg=f"{name} {full}")
    # cross kernel of the first point against the others
    k12 = net.kernels(x[:1], x[1:])
    np.testing.assert_allclose(k12.ntk, t_ref[:1, 1:], rtol=1e-12)

  def test_conv_1d_matches_reference_of_a_column(self):
    x = jax.random.normal(jax.random.key(1), (3, 6, 2), jnp.float64)
    spec = [("conv", 8, (3, 1), (2, 1), "CIRCULAR", 1.2, 0.3), ("relu",),
            ("pool", (2, 1), (1, 1), "VALID"), ("dense", 1.0, 0.2)]
    k_ref, t_ref = reference(x[:, :, None, :], spec)
    net = L.serial(L.Conv(8, (3,), strides=(2,), padding="CIRCULAR", sigma_w=1.2, sigma_b=0.3),
                   L.Relu(), L.AvgPool((2,), strides=(1,)), L.Flatten(),
                   L.Dense(1, sigma_w=1.0, sigma_b=0.2))
    k = net.kernels(x)
    np.testing.assert_allclose(k.nngp, k_ref, rtol=1e-12)
    np.testing.assert_allclose(k.ntk, t_ref, rtol=1e-12)


class MLPTest(parameterized.TestCase):

  @parameterized.product(activation=("relu", "erf", "identity", "leaky_relu", "sin", "tanh"),
                         parametrization=("ntk", "standard"))
  def test_serial_dense_stack_equals_mlp_kernels(self, activation, parametrization):
    x = jax.random.normal(jax.random.key(2), (5, 3), jnp.float64)
    y = jax.random.normal(jax.random.key(3), (4, 3), jnp.float64)
    widths = (16, 32)
    kw = dict(sigma_w=1.4, sigma_b=0.2, parametrization=parametrization)
    order = None if activation in analytic.CLOSED_FORM else 64  # the same rule in both
    act = lambda: L.Elementwise(activation, quadrature_order=order)
    net = L.serial(L.Dense(widths[0], **kw), act(), L.Dense(widths[1], **kw), act(),
                   L.Dense(1, **kw))
    ref_kw = dict(depth=3, activation=activation, sigma_w=1.4, sigma_b=0.2,
                  parametrization=parametrization, hidden_widths=widths, quadrature_order=order)
    for args in ((x,), (x, y)):
      k, m = net.kernels(*args), analytic.mlp_kernels(*args, **ref_kw)
      np.testing.assert_allclose(k.nngp, m.nngp, rtol=1e-12, atol=1e-15)
      np.testing.assert_allclose(k.ntk, m.ntk, rtol=1e-12, atol=1e-15)
    k = net.kernels(x)
    np.testing.assert_array_equal(k.ntk, k.ntk.T)  # exactly symmetric


class ClosedFormTest(parameterized.TestCase):

  @parameterized.parameters(("sin", jnp.sin), ("cos", jnp.cos))
  def test_sinusoid_matches_quadrature(self, name, fn):
    rng = np.random.default_rng(0)
    q11, q22 = rng.uniform(0.05, 3, 50), rng.uniform(0.05, 3, 50)
    q12 = rng.uniform(-1, 1, 50) * np.sqrt(q11 * q22)
    args = [jnp.asarray(a) for a in (q11, q22, q12)]
    closed = analytic._expectations(analytic._Arch(2, name, "ntk", None, 2), *args, False)
    quad = analytic._expectations(analytic._Arch(2, fn, "ntk", None, 128), *args, False)
    for c, q in zip(closed, quad):
      np.testing.assert_allclose(c, q, rtol=1e-10, atol=1e-12)

  @parameterized.parameters((1.0, 0.01), (1.0, -1.0), (1.0, 0.2), (1.0, -0.5), (2.0, 1.0))
  def test_piecewise_linear_matches_scipy(self, a, b):
    # phi = a relu(x) - b relu(-x): E[phi(v) | u] in closed form (v | u Gaussian), then scipy's
    # adaptive quad over u with the kink as a breakpoint
    from scipy import integrate, stats  # pylint: disable=g-import-not-at-top
    fn = analytic._piecewise_linear(a, b)
    for q11, q22, c in ((1.0, 2.0, 0.3), (0.5, 0.7, -0.9), (2.0, 1.0, 0.999), (1.0, 1.0, -0.2)):
      q12 = c * math.sqrt(q11 * q22)
      r = math.sqrt(q22 - q12**2 / q11)
      phi = lambda u: a * max(u, 0) + b * min(u, 0)
      dphi = lambda u: a if u > 0 else b

      def cond(u):
        m = q12 / q11 * u
        big, small = stats.norm.cdf(m / r), stats.norm.cdf(-m / r)
        pdf = stats.norm.pdf(m / r)
        e = a * (m * big + r * pdf) - b * (-m * small + r * pdf)
        return e, a * big + b * small

      w = lambda u: stats.norm.pdf(u, scale=math.sqrt(q11))
      lim = 12 * math.sqrt(q11)
      e_ref = integrate.quad(lambda u: w(u) * phi(u) * cond(u)[0], -lim, lim, points=[0],
                             epsabs=1e-14, epsrel=1e-13)[0]
      ed_ref = integrate.quad(lambda u: w(u) * dphi(u) * cond(u)[1], -lim, lim, points=[0],
                              epsabs=1e-14, epsrel=1e-13)[0]
      det = q11 * q22 - q12**2
      e, ed = fn(*(jnp.asarray(t, jnp.float64) for t in (q11, q22, q12, det)))
      np.testing.assert_allclose([e, ed], [e_ref, ed_ref], rtol=1e-10, err_msg=f"{q11, q22, c}")

  def test_leaky_relu_layer_uses_its_slope(self):
    x = jax.random.normal(jax.random.key(4), (4, 3), jnp.float64)
    make = lambda act: L.serial(L.Dense(8, sigma_b=0.3), act, L.Dense(1)).kernels(x).ntk
    np.testing.assert_array_equal(make(L.LeakyRelu()), make(L.Elementwise("leaky_relu")))
    np.testing.assert_allclose(make(L.LeakyRelu(1.0)), make(L.Elementwise("identity")),
                               rtol=1e-14)
    np.testing.assert_allclose(make(L.LeakyRelu(-1.0)), make(L.Abs()), rtol=1e-14)

  def test_callable_tanh_matches_named(self):
    x = jax.random.normal(jax.random.key(5), (2, 3, 3, 1), jnp.float64)
    make = lambda act: L.serial(L.Conv(4, (2, 2)), act, L.Flatten(), L.Dense(1))
    a = make(L.Tanh()).kernels(x)
    b = make(L.Elementwise(jnp.tanh)).kernels(x)  # automatic order on a probe
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-10)


def _pool_net(width=8):
  return L.serial(L.Conv(width, (3, 3), sigma_b=0.2), L.Relu(), L.AvgPool((2, 2)),
                  L.Conv(width, (2, 2), padding="VALID"), L.Erf(), L.GlobalAvgPool(),
                  L.Dense(1, sigma_b=0.1))


class CombinatorTest(absltest.TestCase):

  def test_residual_sum_is_the_sum_of_the_branch_kernels(self):
    x = jax.random.normal(jax.random.key(13), (4, 5, 2), jnp.float64)
    stem = L.Conv(8, (3,), padding="CIRCULAR", sigma_b=0.3)
    branch = L.serial(L.Relu(), L.Conv(8, (3,), sigma_w=1.2, sigma_b=0.4))
    head = [L.Flatten(), L.Dense(1)]
    res = L.serial(stem, L.FanOut(2), L.parallel(L.Identity(), branch), L.FanInSum(), *head)
    skip = L.serial(stem, *head)
    deep = L.serial(stem, branch, *head)
    k, a, b = res.kernels(x), skip.kernels(x), deep.kernels(x)
    # Flatten + Dense(sigma_w=1, sigma_b=0) is linear in the covariances
    np.testing.assert_allclose(k.nngp, a.nngp + b.nngp, rtol=1e-13)
    # the NTK: both branches' parameters, the stem's through both (cross terms vanish), and the
    # head's K + Theta, linear too
    np.testing.assert_allclose(k.ntk, a.ntk + b.ntk, rtol=1e-13)


class EvaluationTest(absltest.TestCase):

  def test_float32_matches_float64(self):
    x = jax.random.normal(jax.random.key(14), (4, 4, 4, 2), jnp.float64)
    net = _pool_net()
    k64 = net.kernels(x)
    k32 = net.kernels(x.astype(jnp.float32))
    self.assertEqual(k32.ntk.dtype, jnp.float32)
    np.testing.assert_allclose(k32.ntk, k64.ntk, rtol=2e-6)  # float32 rounding over 7 layers
    np.testing.assert_allclose(k32.nngp, k64.nngp, rtol=2e-6)

  def test_tiles_equal_the_whole(self):
    x = jax.random.normal(jax.random.key(6), (5, 4, 4, 2), jnp.float64)
    y = jax.random.normal(jax.random.key(7), (3, 4, 4, 2), jnp.float64)
    net = _pool_net()
    for args in ((x,), (x, y)):
      whole = net.kernels(*args)
      tiled = net.kernels(*args, block_size=2)
      np.testing.assert_allclose(tiled.ntk, whole.ntk, rtol=1e-14)
      np.testing.assert_allclose(tiled.nngp, whole.nngp, rtol=1e-14)
    t = net.kernels(x, block_size=2).ntk
    np.testing.assert_array_equal(t, t.T)

  def test_max_bytes_picks_tiles_or_refuses(self):
    x = jax.random.normal(jax.random.key(6), (8, 4, 4, 2), jnp.float64)
    net = _pool_net()
    whole = net.kernel_bytes(8, 8, x.shape, dtype=jnp.float64)
    tile = net.kernel_bytes(2, 2, x.shape, dtype=jnp.float64, result=False) + 2 * 64 * 8
    k = net.kernels(x, max_bytes=(whole + tile) // 2)  # the whole does not fit; tiles do
    self.assertIsInstance(k.ntk, np.ndarray)
    np.testing.assert_allclose(k.ntk, net.kernels(x).ntk, rtol=1e-14)
    with self.assertRaisesRegex(ValueError, r"layer 0 \(Conv\): .* GiB .* max_bytes"):
      net.kernels(x, max_bytes=1000)

  def test_memory_estimate_bounds_xla(self):
    x = jnp.zeros((16, 6, 6, 3), jnp.float64)
    conv = L.serial(L.Conv(8, (3, 3)), L.Relu(), L.Conv(8, (3, 3), strides=(2, 2)), L.Erf(),
                    L.Flatten(), L.Dense(1))
    for net in (_pool_net(), conv):
      for same, y in ((True, x), (False, x[:8])):
        compiled = L._kernels_jit.lower(net, x, y, same=same, force=False).compile()
        mem = compiled.memory_analysis()
        used = mem.temp_size_in_bytes + mem.output_size_in_bytes
        est = net.kernel_bytes(16, y.shape[0], x.shape, dtype=jnp.float64)
        self.assertLessEqual(used, est)
        self.assertGreater(used, est / 20)  # not a vacuous bound

  def test_jit_and_vmap(self):
    x = jax.random.normal(jax.random.key(8), (3, 4, 4, 2), jnp.float64)
    net = _pool_net()
    eager = net.kernels(x)
    jitted = jax.jit(lambda z: net.kernels(z, max_bytes=None))(x)
    np.testing.assert_allclose(jitted.ntk, eager.ntk, rtol=1e-14)
    scaled = jax.vmap(lambda s: net.kernels(s * x, max_bytes=None).nngp)(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(scaled[0], eager.nngp, rtol=1e-14)

  def test_monte_carlo_is_the_mean_of_samples(self):
    x = jax.random.normal(jax.random.key(9), (3, 3, 3, 1), jnp.float64)
    net = L.serial(L.Conv(4, (2, 2)), L.Relu(), L.Flatten(), L.Dense(2))
    key = jax.random.key(10)
    mc = L.monte_carlo_kernels(key, net, x, num_samples=4, batch_size=2)
    s = L.sample_kernels(key, net, x, num_samples=4)
    np.testing.assert_allclose(mc.ntk, s.ntk.mean(0), rtol=1e-12)
    np.testing.assert_allclose(mc.nngp, s.nngp.mean(0), rtol=1e-12)

  def test_finite_network_matches_the_limit_standard_parametrization(self):
    # Monte Carlo at one width: z = ||mean - K||_F / SE is ~1 for the right kernel
    x = jax.random.normal(jax.random.key(11), (4, 3, 3, 2), jnp.float64)
    kw = dict(parametrization="standard", sigma_w=1.3, sigma_b=0.4)
    net = L.serial(L.Conv(128, (2, 2), **kw), L.LayerNorm(), L.Relu(),
                   L.AvgPool((2, 2), strides=(1, 1)), L.Flatten(), L.Dense(128, **kw))
    k = net.kernels(x)
    s = L.sample_kernels(jax.random.key(12), net, x, num_samples=32, batch_size=8,
                         ntk_outputs=1)
    for name in ("nngp", "ntk"):
      a, b = np.asarray(getattr(s, name)), np.asarray(getattr(k, name))
      z = np.linalg.norm(a.mean(0) - b) / np.sqrt(a.var(0, ddof=1).sum() / len(a))
      self.assertLess(z, 4, name)


class ErrorTest(parameterized.TestCase):

  @parameterized.parameters(
      (lambda: L.serial(L.Dense(4), L.Flatten(), L.Conv(4, (3, 3))), r"layer 2 \(Conv\)"),
      (lambda: L.serial(L.Conv(4, (3,)), L.Relu()), r"layer 0 \(Conv\): filter_shape \(3,\) has 1"),
      (lambda: L.serial(L.AvgPool((5, 5))), r"layer 0 \(AvgPool\): pooling window \(5, 5\) is "
                                            r"larger than the image \(4, 4\)"),
      (lambda: L.serial(L.Conv(4, (5, 5), padding="VALID")), r"layer 0 \(Conv\).*larger"),
      (lambda: L.serial(L.Relu(), L.Dense(1)), r"layer 0 \(Elementwise 'relu'\): needs a Gaussian"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.Relu(), L.Relu()), r"layer 2 \(Elementwise 'relu'\)"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.Relu(), L.LayerNorm()), r"layer 2 \(LayerNorm\)"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.FanOut(2), L.parallel(L.Identity(), L.Identity()),
                        L.FanInSum()), r"layer 3 \(FanInSum\): branches \[0, 1\]"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.FanOut(2),
                        L.parallel(L.Identity(), L.Conv(4, (3, 3), strides=(2, 2))), L.FanInSum()),
       r"layer 3 \(FanInSum\): branch outputs differ"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.FanOut(3), L.parallel(L.Identity(), L.Identity())),
       r"layer 2 \(Parallel\): expected 2 branches"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.FanOut(2)), r"\(output\)"),
      (lambda: L.serial(L.Conv(4, (3, 3)), L.FanOut(2), L.parallel(
          L.Identity(), L.serial(L.Relu(), L.Conv(4, (3, 3), padding="VALID"))), L.FanInSum()),
       r"layer 3 \(FanInSum\): branch outputs differ"),
  )
  def test_shape_errors_name_the_layer(self, make, pattern):
    net = make()
    x = jnp.ones((2, 4, 4, 2), jnp.float64)
    with self.assertRaisesRegex(ValueError, pattern):
      net.kernels(x)
    with self.assertRaisesRegex(ValueError, pattern):
      net.init(jax.random.key(0), x.shape) if "output" not in pattern else net.output_shape(x.shape)

  @parameterized.parameters(
      (lambda: L.Conv(4, (3, 3), padding="REFLECT"), r"layer 1 \(Conv\): padding"),
      (lambda: L.Dense(4, parametrization="mup"), r"layer 1 \(Dense\): parametrization.*muP"),
      (lambda: L.AvgPool((2, 2), padding="FULL"), r"layer 1 \(AvgPool\): padding"),
      (lambda: L.Conv(4, (3, 3), strides=(1,)), r"layer 1 \(Conv\): strides"),
      (lambda: L.Dense(0), r"layer 1 \(Dense\): out_dim"),
      (lambda: L.Elementwise("swish"), r"layer 1 \(Elementwise 'swish'\): activation"),
      (lambda: L.Dense(4, sigma_w=-1.0), r"layer 1 \(Dense\): sigma_w"),
  )
  def test_argument_errors_before_compute(self, make, pattern):
    net = L.serial(L.Dense(3), make())
    with self.assertRaisesRegex(ValueError, pattern):
      net.kernels(jnp.ones((2, 4, 4, 2)))
    with self.assertRaisesRegex(ValueError, pattern):
      net.init(jax.random.key(0), (2, 4, 4, 2))

  def test_nested_layers_are_named_by_path(self):
    net = L.serial(L.Dense(3), L.FanOut(2),
                   L.parallel(L.Identity(), L.serial(L.Relu(), L.Conv(3, (3,), padding="x"))))
    with self.assertRaisesRegex(ValueError, r"layer 2\.1\.1 \(Conv\): padding"):
      net.kernels(jnp.ones((2, 5, 3)))

  def test_legacy_key_refused(self):
    with self.assertRaisesRegex(ValueError, "key: expected a typed"):
      L.serial(L.Dense(3)).init(jax.random.PRNGKey(0), (1, 2))


if __name__ == "__main__":
  absltest.main()
