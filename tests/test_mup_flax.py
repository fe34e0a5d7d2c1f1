"""muP for Flax linen and nnx: inferred tensor kinds, and training equal to the abc-parametrized MLP."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized
from flax import nnx

from jaxopt_lab.mup.flax_mup import TensorKind, infer_kinds, linen_mup, lr_multipliers, nnx_mup
from jaxopt_lab.mup.parametrization import MLP, preset

D_IN, D_OUT, BASE, WIDTH = 3, 2, 8, 32


class LinenMLP(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    h = jnp.tanh(nn.Dense(self.width, param_dtype=jnp.float64)(x))
    h = jnp.tanh(nn.Dense(self.width, param_dtype=jnp.float64)(h))
    return nn.Dense(D_OUT, param_dtype=jnp.float64)(h)


class NnxMLP(nnx.Module):

  def __init__(self, width, rngs):
    kw = dict(rngs=rngs, param_dtype=jnp.float64)
    self.l1, self.l2 = nnx.Linear(D_IN, width, **kw), nnx.Linear(width, width, **kw)
    self.l3 = nnx.Linear(width, D_OUT, **kw)

  def __call__(self, x):
    return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))


def _data():
  kx, ky = jax.random.split(jax.random.key(0))
  return jax.random.normal(kx, (5, D_IN), jnp.float64), jax.random.normal(ky, (5, D_OUT), jnp.float64)


def _abc_reference(layers, optimizer, lr, steps, x, y):
  """The same muP network as an abc MLP: w^l = m^{a_l} W^l (biases likewise), trained by optax."""
  net = MLP(preset("mup", 2, optimizer), D_IN, WIDTH, D_OUT, base_width=BASE, bias=True)
  params = tuple({"w": W / k, "b": b / kb} for (W, b), k, kb in
                 zip(layers, net.multipliers(), net.bias_multipliers()))
  base = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr, eps=0.0)
  tx = optax.chain(base, optax.scale(net.lr_scale))
  state = tx.init(params)
  loss = lambda p: 0.5 * jnp.sum(jnp.square(net.apply(p, x) - y))
  for _ in range(steps):
    u, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, u)
  return net.apply(params, x)


class FlaxMupTest(parameterized.TestCase):

  def test_kinds_from_shapes(self):
    x, _ = _data()
    base = jax.eval_shape(LinenMLP(BASE).init, jax.random.key(0), x)["params"]
    target = LinenMLP(WIDTH).init(jax.random.key(0), x)["params"]
    kinds = infer_kinds(base, target)
    m = WIDTH / BASE
    self.assertEqual(kinds["Dense_0"]["kernel"], TensorKind("input", 1.0, m))
    self.assertEqual(kinds["Dense_0"]["bias"], TensorKind("input", 1.0, m))
    self.assertEqual(kinds["Dense_1"]["kernel"], TensorKind("hidden", m, m))
    self.assertEqual(kinds["Dense_2"]["kernel"], TensorKind("output", m, 1.0))
    self.assertEqual(kinds["Dense_2"]["bias"], TensorKind("fixed"))
    self.assertEqual(lr_multipliers(kinds, "sgd")["Dense_0"]["kernel"], m)
    self.assertEqual(lr_multipliers(kinds, "adam")["Dense_1"]["kernel"], 1 / m)
    same = infer_kinds(base, base)
    self.assertTrue(all(v == 1.0 for v in jax.tree.leaves(lr_multipliers(same, "adam"))))
    with self.assertRaisesRegex(ValueError, "structure"):
      infer_kinds(base, {"Dense_0": target["Dense_0"]})
    with self.assertRaisesRegex(ValueError, "base_width"):
      linen_mup(LinenMLP, base_width=0, width=8, key=jax.random.key(0), x=x)

  @parameterized.parameters(("sgd", 0.05), ("adam", 0.01))
  def test_linen_mup_trains_like_the_abc_mlp(self, optimizer, lr):
    x, y = _data()
    setup = linen_mup(LinenMLP, base_width=BASE, width=WIDTH, key=jax.random.key(1), x=x,
                      optimizer=optimizer)
    params = setup.variables["params"]
    layers = [(params[f"Dense_{i}"]["kernel"], params[f"Dense_{i}"]["bias"]) for i in range(3)]
    base = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr, eps=0.0)
    tx = optax.chain(base, setup.transform)
    state = tx.init(params)
    loss = lambda p: 0.5 * jnp.sum(jnp.square(setup.model.apply({"params": p}, x) - y))
    for _ in range(3):
      u, state = tx.update(jax.grad(loss)(params), state, params)
      params = optax.apply_updates(params, u)
    ref = _abc_reference(layers, optimizer, lr, 3, x, y)
    np.testing.assert_allclose(setup.model.apply({"params": params}, x), ref, rtol=1e-10, atol=1e-13)
    # Without a named optimizer: setup.sgd / setup.adam build the matching chain, and the bare
    # transform refuses to be chained (it once silently applied SGD's table after Adam).
    plain = linen_mup(LinenMLP, base_width=BASE, width=WIDTH, key=jax.random.key(1), x=x)
    tx = plain.sgd(lr) if optimizer == "sgd" else plain.adam(lr, eps=0.0)
    params, state = plain.variables["params"], None
    state = tx.init(params)
    for _ in range(3):
      u, state = tx.update(jax.grad(loss)(params), state, params)
      params = optax.apply_updates(params, u)
    np.testing.assert_allclose(setup.model.apply({"params": params}, x), ref, rtol=1e-10, atol=1e-13)
    with self.assertRaisesRegex(ValueError, r"^optimizer: this muP setup was built without"):
      optax.chain(optax.adam(lr), plain.transform).init(params)

  @parameterized.parameters(("sgd", 0.05), ("adam", 0.01))
  def test_nnx_mup_trains_like_the_abc_mlp(self, optimizer, lr):
    x, y = _data()
    setup = nnx_mup(NnxMLP, base_width=BASE, width=WIDTH, seed=3, optimizer=optimizer)
    model = setup.model
    layers = [(l.kernel[...], l.bias[...]) for l in (model.l1, model.l2, model.l3)]
    # Readout init rescaled by m^-1/2 relative to a plain SP model of the same seed.
    plain = NnxMLP(WIDTH, nnx.Rngs(3))
    np.testing.assert_allclose(model.l3.kernel[...], plain.l3.kernel[...] * (WIDTH / BASE) ** -0.5)
    base = optax.sgd(lr) if optimizer == "sgd" else optax.adam(lr, eps=0.0)
    opt = nnx.Optimizer(model, optax.chain(base, setup.transform), wrt=nnx.Param)
    loss = lambda mdl: 0.5 * jnp.sum(jnp.square(mdl(x) - y))
    for _ in range(3):
      opt.update(model, nnx.grad(loss)(model))
    ref = _abc_reference(layers, optimizer, lr, 3, x, y)
    np.testing.assert_allclose(model(x), ref, rtol=1e-10, atol=1e-13)


if __name__ == "__main__":
  absltest.main()
