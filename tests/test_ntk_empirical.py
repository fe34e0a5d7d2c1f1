"""Tests of jaxopt_lab.ntk.empirical: the three NTK methods against an explicit Jacobian product."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from jax.flatten_util import ravel_pytree

from jaxopt_lab.ntk import MLP, empirical, empirical_ntk, mlp_kernels


def _reference(apply, params, x1, x2):
  """(n1, n2, O, O) NTK from the dense Jacobian of the flattened parameters (jacfwd, NumPy
  product)."""

  @jax.jit
  def jacobians(params):
    flat, unravel = ravel_pytree(params)
    jac = lambda x: jax.jacfwd(lambda p: apply(unravel(p), x).reshape(x.shape[0], -1))(flat)
    return jac(x1), jac(x2)

  j1, j2 = (np.asarray(j) for j in jacobians(params))
  return np.einsum("nap,mbp->nmab", j1, j2)


class _FlaxMLP(nn.Module):
  width: int = 16
  outputs: int = 3

  @nn.compact
  def __call__(self, x):
    dense = lambda n: nn.Dense(n, param_dtype=jnp.float64)
    x = nn.tanh(dense(self.width)(x))
    x = nn.relu(dense(self.width)(x))
    return dense(self.outputs)(x)


def _data(n1=5, n2=4, d=3):
  rng = np.random.default_rng(42)
  return rng.normal(size=(n1, d)), rng.normal(size=(n2, d))


class MethodsAgreeTest(parameterized.TestCase):

  @parameterized.parameters(("ntk", "relu", 3), ("standard", "tanh", 2))
  def test_mlp_methods_match_dense_jacobian(self, parametrization, activation, outputs):
    net = MLP((3, 7, 6, outputs), activation, sigma_w=1.4, sigma_b=0.3,
              parametrization=parametrization)
    params = jax.jit(net.init)(jax.random.key(0))
    x1, x2 = _data()
    ref = _reference(net.apply, params, x1, x2)
    for method in ("jacobian", "jacobian_batch", "ntvp", "structured"):
      full = empirical_ntk(net, params, x1, x2, method=method, output="full")
      # float64 sums of a few hundred products: 1e-12 relative is ~1e4 ulps of headroom.
      np.testing.assert_allclose(full, ref, rtol=1e-12, atol=1e-12, err_msg=method)

  def test_trace_is_the_output_diagonal(self):
    net = MLP((3, 7, 6, 2), "erf", sigma_w=1.4, sigma_b=0.3)
    params = jax.jit(net.init)(jax.random.key(0))
    x1, x2 = _data()
    ref = np.einsum("nmaa->nm", _reference(net.apply, params, x1, x2))
    for method in ("jacobian", "jacobian_batch", "ntvp", "structured"):
      trace = empirical_ntk(net, params, x1, x2, method=method, output="trace")
      np.testing.assert_allclose(trace, ref, rtol=1e-12, atol=1e-12, err_msg=method)
      # The default averages over the O = 2 outputs: the analytic kernel's (per-output) convention.
      mean = empirical_ntk(net, params, x1, x2, method=method)
      np.testing.assert_allclose(mean, ref / 2, rtol=1e-12, atol=1e-12, err_msg=method)

  def test_default_matches_the_analytic_kernel_for_many_outputs(self):
    # A wide net with O = 5 outputs: the default kernel is within the finite-width error of
    # mlp_kernels (the sum would be 5x off; ported neural-tangents code relies on the average).
    net = MLP((3, 2048, 5), "relu", sigma_w=1.0, sigma_b=0.1)
    x1, _ = _data()
    k = np.asarray(empirical_ntk(net, jax.jit(net.init)(jax.random.key(3)), x1))
    ref = np.asarray(mlp_kernels(x1, **net.kernel_kwargs()).ntk)
    self.assertLess(np.linalg.norm(k - ref) / np.linalg.norm(ref), 0.1)

  def test_self_kernel_and_bound_apply(self):
    net = MLP((3, 8, 2), "tanh", sigma_b=0.5)
    params = jax.jit(net.init)(jax.random.key(1))
    x1, _ = _data()
    ref = np.einsum("nmaa->nm", _reference(net.apply, params, x1, x1)) / 2  # mean of 2 outputs
    for method in ("jacobian", "jacobian_batch", "ntvp", "structured"):
      np.testing.assert_allclose(empirical_ntk(net, params, x1, method=method), ref, rtol=1e-12,
                                 err_msg=method)
    # The bound apply of an MLP gets the structured path too (same compiled program).
    np.testing.assert_allclose(empirical_ntk(net.apply, params, x1), ref, rtol=1e-12)
    np.testing.assert_allclose(empirical_ntk(net, params, x1, method="ntvp", batch_size=3), ref,
                               rtol=1e-12)

  def test_flax_module_apply(self):
    module = _FlaxMLP()
    x1, x2 = _data()
    variables = jax.jit(module.init)(jax.random.key(2), x1)
    ref = _reference(module.apply, variables, x1, x2)
    for method in ("jacobian", "ntvp", "auto"):
      got = empirical_ntk(module.apply, variables, x1, x2, method=method, output="full")
      np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, err_msg=method)
    with self.assertRaisesRegex(ValueError, "^method: 'structured' needs"):
      empirical_ntk(module.apply, variables, x1, method="structured")

  def test_auto_choice(self):
    net = MLP((3, 4, 2))
    params = jax.jit(net.init)(jax.random.key(0))
    x1, _ = _data()
    self.assertEqual(empirical._choose(*empirical._resolve(net.apply), params, x1, None, "trace",
                                       None)[0], "structured")
    generic = lambda p, x: net.apply(p, x)
    self.assertEqual(empirical._choose(generic, None, params, x1, None, "trace", None)[0],
                     "jacobian")
    # Full output with O > 1 and Jacobians over the memory budget: NTK-vector products, batched.
    old = empirical.AUTO_JACOBIAN_BYTES
    try:
      empirical.AUTO_JACOBIAN_BYTES = 100
      method, batch = empirical._choose(generic, None, params, x1, None, "full", None)
      self.assertEqual(method, "ntvp")
      self.assertGreaterEqual(batch, 1)
    finally:
      empirical.AUTO_JACOBIAN_BYTES = old

  def test_float32_structured(self):
    net = MLP((3, 64, 64, 1), "relu", sigma_b=0.1)
    params = jax.jit(net.init)(jax.random.key(3))
    x1, _ = _data(8)
    k64 = empirical_ntk(net, params, x1)
    k32 = empirical_ntk(net, jax.tree.map(lambda p: np.asarray(p, np.float32), params),
                        x1.astype(np.float32))
    self.assertEqual(k32.dtype, jnp.float32)
    # Sums of ~1e4 float32 products at precision HIGHEST: ~1e-6 relative.
    np.testing.assert_allclose(k32, k64, rtol=1e-5)

  def test_vmap_over_seeds_equals_loop_and_compiles_once(self):
    net = MLP((3, 16, 16, 1))
    x1, _ = _data()
    keys = jax.random.split(jax.random.key(4), 3)
    fn = jax.jit(jax.vmap(lambda k: empirical_ntk(net, net.init(k), x1)))
    batched = fn(keys)
    init = jax.jit(net.init)
    for i, k in enumerate(keys):
      np.testing.assert_allclose(batched[i], empirical_ntk(net, init(k), x1), rtol=1e-13)
    before = empirical._empirical_jit._cache_size()
    for k in keys:
      empirical_ntk(net, init(k), x1)
    self.assertEqual(empirical._empirical_jit._cache_size(), before)

  def test_validation(self):
    net = MLP((3, 4, 1))
    params = jax.jit(net.init)(jax.random.key(0))
    x1, _ = _data()
    for kwargs, name in [(dict(method="fast"), "method"), (dict(output="diag"), "output"),
                         (dict(batch_size=0), "batch_size")]:
      with self.assertRaisesRegex(ValueError, f"^{name}"):
        empirical_ntk(net, params, x1, **kwargs)
    with self.assertRaisesRegex(ValueError, "^x2"):
      empirical_ntk(net, params, x1, jnp.ones((2, 5)))
    with self.assertRaisesRegex(ValueError, "^x1"):
      empirical_ntk(net, params, jnp.ones((0, 3)))
    with self.assertRaisesRegex(ValueError, "^model"):
      empirical_ntk(3, params, x1)


if __name__ == "__main__":
  absltest.main()
