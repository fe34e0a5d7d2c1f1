"""First-order MAML on a linear 1-hidden-layer net, its muP and NTK limits (jaxopt_lab.mup.maml)."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from jaxopt_lab.mup import maml
from jaxopt_lab.mup import word2vec as w2v

jax.config.update("jax_enable_x64", True)
KW = dict(inner_lr=0.05, learning_rate=0.02, num_steps=8, meta_batch=2, shots=1, queries=2)


def _traced(s):
  return w2v.Scalings(*(jnp.asarray(v, jnp.float64) for v in s))


class MamlTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.ep = maml.digits_episodes(dtype=jnp.float64)
    cls.tests = maml.test_episodes(jax.random.key(1), cls.ep, 10, shots=1, queries=2)

  def test_episode_uses_split_classes_and_balanced_labels(self):
    xs, ys, xq, yq = maml.sample_episode(jax.random.key(0), self.ep.x, self.ep.test_classes, ways=5,
                                         shots=2, queries=3)
    self.assertEqual(xs.shape, (10, 64))
    self.assertEqual(xq.shape, (15, 64))
    np.testing.assert_array_equal(np.bincount(np.asarray(ys)), [2] * 5)
    with self.assertRaisesRegex(ValueError, "disjoint"):
      maml.digits_episodes((0, 1, 2), (2, 3, 4, 5, 6))
    with self.assertRaisesRegex(ValueError, "parametrization"):
      maml.scalings("mfp", 16, 16, 64)

  def test_presets_agree_at_base_width(self):
    np.testing.assert_allclose(maml.scalings("mup", 16, 16, 64), maml.scalings("sp", 16, 16, 64))

  def test_finite_net_with_orthogonal_particles_is_the_limit(self):
    # Particles omega_a with Omega^T Omega / n = I exactly: the width-n muP network equals the limit
    # through meta-training and adaptation (the module docstring's derivation and scalings).
    d, ways, nb, n = 64, 5, 16, 4 * 69
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(2), (n, d + ways), jnp.float64))
    omega = q * jnp.sqrt(n)
    finite = w2v.Params(omega[:, :d].T / jnp.sqrt(d), (jnp.sqrt(nb) / n) * omega[:, d:].T)
    sc_n, sc_l = _traced(maml.scalings("mup", n, nb, d)), _traced(w2v.limit_scalings(nb))
    pf = maml.meta_train(finite, jax.random.key(3), self.ep, sc_n, **KW)
    pl = maml.meta_train(maml.limit_init(d, ways, dtype=jnp.float64), jax.random.key(3), self.ep,
                         sc_l, **KW)
    _, ff = maml.evaluate(pf, self.tests, sc_n, KW["inner_lr"])
    _, fl = maml.evaluate(pl, self.tests, sc_l, KW["inner_lr"])
    np.testing.assert_allclose(ff, fl, atol=1e-9)
    self.assertGreater(float(jnp.abs(pl.u - maml.limit_init(d, ways, dtype=jnp.float64).u).max()), 1e-4)

  def test_first_order_step_matches_manual_gradient(self):
    sc = _traced(maml.scalings("ntp", 32, 16, 64))
    p = maml.init(jax.random.key(4), 64, 5, 32, sc, dtype=jnp.float64)
    p1 = maml.meta_train(p, jax.random.key(5), self.ep, sc, **{**KW, "num_steps": 1, "meta_batch": 1})
    k = jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(jax.random.key(5), 0), j))(
        jnp.arange(1))[0]
    xs, ys, xq, yq = maml.sample_episode(k, self.ep.x, self.ep.train_classes, ways=5, shots=1, queries=2)
    adapted = maml.adapt(p, xs, ys, sc, KW["inner_lr"])
    g = jax.grad(maml._loss)(adapted, xq, yq, 1.0)  # first order: gradient at the adapted point
    np.testing.assert_allclose(p1.u, p.u - KW["learning_rate"] * sc.embedding_lr * g.u, atol=1e-12)
    np.testing.assert_allclose(p1.c, p.c - KW["learning_rate"] * sc.readout_lr * g.c, atol=1e-12)

  def test_sweep_widths_equals_separate_runs(self):
    keys, dk = jax.random.split(jax.random.key(7), 2), jax.random.key(8)
    kw = {k: v for k, v in KW.items() if k != "num_steps"}
    sw = maml.sweep_widths(self.ep, self.tests, dk, keys, parametrization="sp", widths=(8, 32),
                           base_width=8, num_steps=3, **kw)
    for i, n in enumerate((8, 32)):
      sc = _traced(maml.scalings("sp", n, 8, 64))
      for s in range(2):
        p = maml.meta_train(maml.init(keys[s], 64, 5, n, sc, dtype=jnp.float64), dk, self.ep, sc,
                            num_steps=3, **kw)
        acc, f = maml.evaluate(p, self.tests, sc, KW["inner_lr"])
        np.testing.assert_allclose(sw.logits[i, s], f, atol=1e-10)
        self.assertEqual(float(sw.accuracy[i, s]), float(acc))

  def test_ntk_limit_runs_and_centered_has_no_init_noise(self):
    a = [float(maml.ntk_limit(jax.random.key(s), jax.random.key(6), self.ep, self.tests, base_width=16,
                              centered=True, **KW)) for s in range(2)]
    self.assertEqual(a[0], a[1])
    self.assertTrue(0.0 <= a[0] <= 1.0)


if __name__ == "__main__":
  absltest.main()
