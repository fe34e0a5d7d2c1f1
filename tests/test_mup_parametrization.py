"""abc-parametrized MLPs: presets vs the fact sheet, base width, symmetry, practical form, training."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest, parameterized

from jaxopt_lab.engine import run
from jaxopt_lab.engine.sweep import sweep
from jaxopt_lab.mup import dichotomy
from jaxopt_lab.mup.parametrization import (ABC, MLP, Task, init_params, practical_mlp, preset,
                                            scale_by_tree, train_algorithm)


def _task(n=6, d=3, d_out=2, seed=0):
  kx, ky = jax.random.split(jax.random.key(seed))
  return Task(jax.random.normal(kx, (n, d), jnp.float64), jax.random.normal(ky, (n, d_out), jnp.float64))


def _trajectory(net, task, lr, steps=4, optimizer=None, adam_eps=1e-8, key=0):
  alg = train_algorithm(net, optimizer=optimizer, adam_eps=adam_eps)
  state, metrics = run(alg, jax.random.key(key), task, {"lr": lr}, num_steps=steps)
  return state.inner.params, metrics["loss"]


class PresetTest(parameterized.TestCase):

  @parameterized.parameters(1, 2, 4)
  def test_sgd_tables_of_the_fact_sheet(self, L):
    h = L - 1
    self.assertEqual(preset("sp", L), ABC((0.0,) * (L + 1), (0.0,) + (0.5,) * L, 1.0, "sgd", "sp"))
    self.assertEqual(preset("ntp", L), ABC((0.0,) + (0.5,) * L, (0.0,) * (L + 1), 0.0, "sgd", "ntp"))
    self.assertEqual(preset("mup", L),
                     ABC((-0.5,) + (0.0,) * h + (0.5,), (0.5,) * (L + 1), 0.0, "sgd", "mup"))
    self.assertEqual(preset("SP", L, c=0.0).c, 0.0)
    if L == 1:
      self.assertEqual(preset("mfp", 1), ABC((0.0, 1.0), (0.0, 0.0), -1.0, "sgd", "mfp"))

  @parameterized.parameters("sgd", "adam")
  def test_mup_practical_form_is_tp5_table(self, optimizer):
    # TP5 Table 3 with m = width / base: init variances 1/d, 1/n, 1/(n m) (readout 1/fan_in^2 in
    # base units); LR multipliers SGD (m, 1, 1/m), Adam (1, 1/m, 1/m).
    base, n, d = 16, 64, 5
    m = n / base
    net = MLP(preset("mup", 2, optimizer), d_in=d, width=n, d_out=3, base_width=base)
    eff_std = [s * k for s, k in zip(net.init_stds(), net.multipliers())]
    np.testing.assert_allclose(np.square(eff_std), [1 / d, 1 / n, 1 / (n * m)], rtol=1e-12)
    lrs = [layer["w"] for layer in net.practical_lr_multipliers()]
    want = [m, 1.0, 1 / m] if optimizer == "sgd" else [1.0, 1 / m, 1 / m]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)

  def test_adam_presets_land_in_their_sgd_counterparts_regime(self):
    for name, L in (("ntp", 2), ("mup", 2), ("mfp", 1), ("mup", 3)):
      self.assertEqual(dichotomy.classify(preset(name, L, "adam")).regime,
                       dichotomy.classify(preset(name, L)).regime, name)
    # Adam SP keeps a width-independent LR (c = 0): unstable, like SGD SP with c = 0.
    self.assertEqual(dichotomy.classify(preset("sp", 2, "adam")).regime, "unstable")

  @parameterized.parameters("sgd", "adam")
  def test_mup_equals_sp_at_base_width(self, optimizer):
    task = _task()
    mup = MLP(preset("mup", 2, optimizer), 3, 32, 2, base_width=32, bias=True)
    sp = MLP(preset("sp", 2, optimizer, c=0.0), 3, 32, 2, base_width=32, bias=True)
    pm, lm = _trajectory(mup, task, 0.05, optimizer=optimizer)
    ps, ls = _trajectory(sp, task, 0.05, optimizer=optimizer)
    np.testing.assert_array_equal(lm, ls)  # bit-equal: every multiplier is exactly 1
    chex.assert_trees_all_equal(pm, ps)

  def test_validation_errors(self):
    with self.assertRaisesRegex(ValueError, "unknown preset"):
      preset("muq", 2)
    with self.assertRaisesRegex(ValueError, "depth"):
      preset("mup", 0)
    with self.assertRaisesRegex(ValueError, "MFP"):
      preset("mfp", 2)
    with self.assertRaisesRegex(ValueError, "optimizer"):
      preset("mup", 2, "lion")
    with self.assertRaisesRegex(ValueError, "one entry per layer"):
      ABC((0.0, 0.0), (0.0,), 0.0)
    with self.assertRaisesRegex(ValueError, "L \\+ 1 >= 2"):
      ABC((0.0,), (0.0,), 0.0)
    with self.assertRaisesRegex(ValueError, "finite"):
      ABC((0.0, np.nan), (0.0, 0.0), 0.0)
    for kw in (dict(width=0), dict(d_in=0), dict(d_out=-1), dict(base_width=0), dict(width=2.5)):
      with self.assertRaisesRegex(ValueError, "must be an int >= 1"):
        MLP(preset("mup", 1), **{**dict(d_in=1, width=4, d_out=1), **kw})
    with self.assertRaisesRegex(ValueError, "unknown activation"):
      MLP(preset("mup", 1), 1, 4, 1, activation="swish")
    with self.assertRaisesRegex(ValueError, "unknown loss"):
      train_algorithm(MLP(preset("mup", 1), 1, 4, 1), loss="hinge")
    with self.assertRaisesRegex(ValueError, "unstable: r >= 0 fails"):
      dichotomy.require_stable(preset("sp", 2, c=0.0))


class SymmetryTest(parameterized.TestCase):

  @parameterized.parameters(("mup", 0.25), ("ntp", -0.5), ("sp", 0.75), ("mup", -1.0))
  def test_sgd_trajectory_invariant(self, name, theta):
    task = _task()
    net = MLP(preset(name, 2), 3, 64, 2, bias=True)
    moved = dataclasses.replace(net, abc=net.abc.shift(theta))
    p0, l0 = _trajectory(net, task, 0.1)
    p1, l1 = _trajectory(moved, task, 0.1)
    # Float64 round-off of powers of the width multiplier: relative 1e-12.
    np.testing.assert_allclose(l1, l0, rtol=1e-12)
    chex.assert_trees_all_close(net.effective_params(p0), moved.effective_params(p1), rtol=1e-11,
                                atol=1e-14)
    self.assertEqual(dichotomy.classify(moved.abc).regime, dichotomy.classify(net.abc).regime)

  @parameterized.parameters(0.5, -0.25)
  def test_adam_trajectory_invariant(self, theta):
    task = _task()
    net = MLP(preset("mup", 2, "adam"), 3, 64, 2)
    moved = dataclasses.replace(net, abc=net.abc.shift(theta))
    # eps = 0: Adam's epsilon is the one term that is not scale-free.
    _, l0 = _trajectory(net, task, 0.01, adam_eps=0.0)
    _, l1 = _trajectory(moved, task, 0.01, adam_eps=0.0)
    np.testing.assert_allclose(l1, l0, rtol=1e-11)

  @parameterized.parameters("sgd", "adam")
  def test_practical_form_trains_identically(self, optimizer):
    task = _task()
    net = MLP(preset("mup", 2, optimizer), 3, 48, 2, base_width=8, bias=True)
    prac = practical_mlp(net)
    params = net.init(jax.random.key(1), jnp.float64)
    eff = net.effective_params(params)
    np.testing.assert_allclose(net.apply(params, task.x), prac.apply(eff, task.x), rtol=1e-13)
    base = optax.sgd(0.05) if optimizer == "sgd" else optax.adam(0.01, eps=0.0)
    tx_abc = optax.chain(base, optax.scale(net.lr_scale))
    tx_prac = optax.chain(base, scale_by_tree(net.practical_lr_multipliers()))
    loss = lambda mdl, p: 0.5 * jnp.sum(jnp.square(mdl.apply(p, task.x) - task.y))
    sa, sp_ = tx_abc.init(params), tx_prac.init(eff)
    for _ in range(3):
      ua, sa = tx_abc.update(jax.grad(functools.partial(loss, net))(params), sa, params)
      up, sp_ = tx_prac.update(jax.grad(functools.partial(loss, prac))(eff), sp_, eff)
      params, eff = optax.apply_updates(params, ua), optax.apply_updates(eff, up)
    chex.assert_trees_all_close(net.effective_params(params), eff, rtol=1e-10, atol=1e-13)


class InitDrawTest(parameterized.TestCase):

  @parameterized.product(dtype=(jnp.float32, jnp.float64), distribution=("normal", "uniform"))
  def test_init_params_draws_equal_jax_random_bit_for_bit(self, dtype, distribution):
    # init_params hashes threefry keys itself (unrolled rounds; jax's CPU lowering is a rolled
    # loop): its draws must be jax.random's exactly, under jit and vmap, for odd sizes too.
    shapes, total = ((5, 7), (7, 3)), 5 * 7 + 7 + 7 * 3 + 3
    scal = MLP(preset("mup", 1), 5, 7, 3, bias=True).scalings()

    def reference(key):
      if distribution == "normal":
        z = jax.random.normal(key, (total,), dtype)
      else:
        z = jax.random.uniform(key, (total,), dtype, -np.sqrt(3.0), np.sqrt(3.0))
      w1, b1, w2, b2 = jnp.split(z, np.cumsum([35, 7, 21]))
      return ({"w": scal.stds[0] * w1.reshape(5, 7), "b": scal.bias_stds[0] * b1},
              {"w": scal.stds[1] * w2.reshape(7, 3), "b": scal.bias_stds[1] * b2})

    draw = jax.jit(jax.vmap(lambda k: init_params(k, shapes, scal, bias=True, dtype=dtype,
                                                  distribution=distribution)))
    keys = jax.vmap(jax.random.key)(jnp.array([0, 1, 2 ** 31 + 5]))
    ours, ref = draw(keys), jax.vmap(reference)(keys)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
      self.assertEqual(a.dtype, dtype)
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

  def test_other_key_implementations_use_jax_random(self):
    key = jax.random.key(4, impl="rbg")
    z = init_params(key, ((3, 4),), MLP(preset("sp", 1), 3, 4, 1).scalings(), bias=False,
                    dtype=jnp.float32)[0]["w"]
    std = MLP(preset("sp", 1), 3, 4, 1).scalings().stds[0]
    np.testing.assert_array_equal(np.asarray(z),
                                  np.asarray(std * jax.random.normal(key, (12,), jnp.float32)
                                             .reshape(3, 4)))


class TrainingTest(parameterized.TestCase):

  def test_vmap_equals_loop_and_traces_once(self):
    task = _task()
    alg = train_algorithm(MLP(preset("mup", 2), 3, 16, 2), batch_size=3)
    single = jax.jit(chex.assert_max_traces(
        lambda k, lr: run(alg, k, task, {"lr": lr}, num_steps=5)[1]["loss"], n=1))
    keys = jax.random.split(jax.random.key(0), 3)
    batched = jax.jit(jax.vmap(lambda k: run(alg, k, task, {"lr": 0.1}, num_steps=5)[1]["loss"]))(keys)
    for i in range(3):
      np.testing.assert_allclose(batched[i], single(keys[i], 0.1), rtol=1e-12)
    single(keys[0], 0.3)  # a new learning rate does not retrace

  def test_unstable_parametrization_diverges_per_run_without_crashing(self):
    task = _task(n=4, d=1, d_out=1)
    net = MLP(preset("sp", 2, c=0.0), 1, 512, 1, activation="relu")
    res = sweep(train_algorithm(net), task, seeds=[0, 1], hp={"lr": [1e-4, 50.0]}, num_steps=30,
                on_chunk=None)
    self.assertTrue(np.all(res.diverged_at[:, 0] == -1))
    self.assertTrue(np.all(res.diverged_at[:, 1] > 0), res.diverged_at)

  def test_xent_and_adam_reduce_the_loss(self):
    kx = jax.random.key(3)
    task = Task(jax.random.normal(kx, (32, 4), jnp.float64), jnp.arange(32) % 3)
    for opt in ("sgd", "adam"):
      net = MLP(preset("mup", 2, opt), 4, 64, 3, activation="gelu", base_width=16)
      lr = 0.5 if opt == "sgd" else 0.01
      alg = train_algorithm(net, loss="xent")
      _, m = run(alg, jax.random.key(0), task, {"lr": lr}, num_steps=30)
      self.assertLess(float(m["loss"][-1]), 0.9 * float(np.log(3)), opt)


if __name__ == "__main__":
  absltest.main()
