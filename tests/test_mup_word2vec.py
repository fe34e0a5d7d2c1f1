"""Word2Vec in the abc-parametrization, its exact muP limit and NTK limit (jaxopt_lab.mup.word2vec)."""

import importlib.util
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.mup import word2vec as w2v

jax.config.update("jax_enable_x64", True)
V = 60


def _problem(vocab=V, seed=0):
  return w2v.problem(w2v.load_dataset(vocab), jax.random.key(seed), negatives=3, num_test=200,
                     dtype=jnp.float64)


class DataTest(absltest.TestCase):

  def test_dataset(self):
    d = w2v.load_dataset(500)
    self.assertEqual(d.vocab_size, 500)
    self.assertTrue(np.all(np.diff(d.counts) <= 0))  # most frequent first
    self.assertEqual(d.train_pairs.shape[1], 2)
    self.assertGreater(d.test_pairs.shape[0], 0)
    self.assertLess(d.train_pairs.max(), 500)
    np.testing.assert_allclose(d.noise.sum(), 1.0)
    np.testing.assert_allclose(d.pair_weights.sum(), 1.0)
    self.assertEqual(d.analogies.shape[1], 4)
    self.assertEqual(d.wordsim.shape[0], d.wordsim_scores.shape[0])
    for q in d.analogies[:5]:  # every question's words are in the vocabulary (decoded back)
      self.assertLen({d.words[i] for i in q}, 4)

  def test_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, "vocab_size"):
      w2v.load_dataset(1)
    with self.assertRaisesRegex(ValueError, "corpus"):
      w2v.load_dataset(100, corpus="text8")
    with self.assertRaisesRegex(ValueError, "held_out"):
      w2v.load_dataset(100, held_out=1.0)
    with self.assertRaisesRegex(ValueError, "parametrization"):
      w2v.scalings("mfp", 64)
    with self.assertRaisesRegex(ValueError, "width"):
      w2v.scalings("mup", 0)

  def test_missing_gensim_is_one_clear_error(self):
    with mock.patch.object(importlib.util, "find_spec", return_value=None):
      with self.assertRaisesRegex(ImportError, "word2vec"):
        w2v.gensim_test_data("wordsim353.tsv")


class ScalingsTest(parameterized.TestCase):

  def test_all_presets_agree_at_base_width(self):
    ref = w2v.scalings("sp", 64, 64)
    for name in ("ntp", "mup"):
      np.testing.assert_allclose(w2v.scalings(name, 64, 64), ref)

  # Width exponents of (embedding std, readout std, embedding LR, readout LR): the docstring's table.
  @parameterized.parameters(("sp", (0, -0.5, -1, -1)), ("ntp", (0, -0.5, 0, -1)),
                            ("mup", (0, -1, 1, -1)))
  def test_width_exponents(self, name, expected):
    a, b = w2v.scalings(name, 64, 16), w2v.scalings(name, 256, 16)
    got = [np.log(y / x) / np.log(4.0) for x, y in zip(a[:4], b[:4])]
    np.testing.assert_allclose(got, expected, atol=1e-12)


class StepTest(absltest.TestCase):

  def test_step_is_sgd_on_the_loss(self):
    prob = _problem()
    scal = w2v.scalings("mup", 32, 8)
    p = w2v.init(jax.random.key(1), V, 32, scal, jnp.float64)
    batch = w2v._batch(jax.random.key(2), prob.cum_weights, prob.pairs, prob.cum_noise, 16, 3)
    new = w2v.step(p, *batch, learning_rate=0.3, scal=scal)
    g = jax.grad(lambda q: w2v.ns_loss(q, *batch))(p)
    np.testing.assert_allclose(new.u, p.u - 0.3 * scal.embedding_lr * g.u, atol=1e-12)
    np.testing.assert_allclose(new.c, p.c - 0.3 * scal.readout_lr * g.c, atol=1e-12)

  def test_padding_columns_stay_zero_and_change_nothing(self):
    prob = _problem()
    scal = w2v.scalings("mup", 24, 8)
    sc = w2v.Scalings(*(jnp.asarray(v) for v in scal))
    key = jax.random.key(3)
    plain = w2v.train_from(w2v.init(key, V, 24, scal, jnp.float64), key, prob, sc,
                           learning_rate=0.5, num_steps=20, batch_size=8, negatives=3)
    padded = w2v.train_from(w2v.padded_init(key, V, 24, 40, scal, jnp.float64), key, prob, sc,
                            learning_rate=0.5, num_steps=20, batch_size=8, negatives=3)
    np.testing.assert_allclose(padded[0].u[:, :24], plain[0].u, atol=1e-12)
    np.testing.assert_array_equal(padded[0].u[:, 24:], 0.0)
    np.testing.assert_allclose(padded[1], plain[1], atol=1e-12)


class SweepTest(absltest.TestCase):

  def test_sweep_widths_equals_separate_runs(self):
    prob, dk = _problem(), jax.random.key(8)
    keys = jax.random.split(jax.random.key(9), 2)
    kw = dict(vocab_size=V, learning_rate=0.5, num_steps=5, base_width=8, batch_size=8, negatives=3)
    sw = w2v.sweep_widths(prob, dk, keys, parametrization="ntp", widths=(8, 16), **kw)
    _, lim = w2v.train(None, dk, prob, parametrization="limit", width=1, **kw)
    np.testing.assert_allclose(sw.limit_loss, lim, rtol=1e-12)
    for i, n in enumerate((8, 16)):
      for s in range(2):
        p, loss = w2v.train(keys[s], dk, prob, parametrization="ntp", width=n, **kw)
        np.testing.assert_allclose(sw.loss[i, s], loss, rtol=1e-12)
        np.testing.assert_allclose(sw.params[i].u[s, :, :n], p.u, atol=1e-12)


class LimitTest(absltest.TestCase):

  def test_finite_net_with_orthogonal_particles_is_the_limit(self):
    # A width-n muP network whose initial particles omega_a (rows of Omega, n x 2V) satisfy
    # Omega^T Omega / n = I exactly stays (P_t omega_a, Q_t omega_a): its logits and embedding kernel
    # equal the limit's at every step (the module docstring's derivation, scalings included).
    prob, nb, n = _problem(), 16, 4 * V
    q, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(4), (n, 2 * V), jnp.float64))
    omega = q * jnp.sqrt(n)
    scal = w2v.scalings("mup", n, nb)
    finite = w2v.Params(omega[:, :V].T, (jnp.sqrt(nb) / n) * omega[:, V:].T)
    dk = jax.random.key(5)
    kw = dict(learning_rate=0.7, num_steps=60, batch_size=16, negatives=3)
    pf, lf = w2v.train_from(finite, dk, prob, w2v.Scalings(*map(jnp.asarray, scal)), **kw)
    pl, ll = w2v.train(None, dk, prob, parametrization="limit", width=1, vocab_size=V,
                       base_width=nb, **kw)
    np.testing.assert_allclose(lf, ll, rtol=1e-10)
    np.testing.assert_allclose(w2v.embedding_kernel(pf, n), w2v.embedding_kernel(pl), atol=1e-10)
    self.assertGreater(float(jnp.abs(w2v.embedding_kernel(pl) - jnp.eye(V)).max()), 1e-3)  # it moved

  def test_ntk_limit_is_ntp_at_large_width_one_step(self):
    # One SGD step of NTP changes the batch logits by -eta (1 + n_b) chi + O(n^-1/2): the NTK limit.
    prob, nb, lr = _problem(), 4, 0.5
    batch = w2v._batch(jax.random.key(6), prob.cum_weights, prob.pairs, prob.cum_noise, 8, 3)
    errs = []
    for n in (2**10, 2**14):
      scal = w2v.scalings("ntp", n, nb)
      p = w2v.init(jax.random.key(7), V, n, scal, jnp.float64)
      f0 = w2v.logits(p, batch[0], batch[1])
      chi = (jax.nn.sigmoid(f0) - batch[2]) / 8
      f1 = w2v.logits(w2v.step(p, *batch, learning_rate=lr, scal=scal), batch[0], batch[1])
      errs.append(float(jnp.abs((f1 - f0) + lr * (1 + nb) * chi).max() / jnp.abs(chi).max()))
    self.assertLess(errs[1], errs[0] / 2.0)  # 16x width: error / 4 expected
    self.assertLess(errs[1], 0.2)

  def test_ntk_limit_runs(self):
    prob = _problem()
    loss = w2v.ntk_limit(jax.random.key(0), jax.random.key(1), prob, learning_rate=1.0,
                         num_steps=10, batch_size=8, negatives=3, base_width=4)
    self.assertTrue(np.isfinite(float(loss)))


class MetricsTest(absltest.TestCase):

  def test_identity_kernel_scores_zero(self):
    q = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    self.assertEqual(w2v.analogy_accuracy(np.eye(10), q), 0.0)
    self.assertEqual(w2v.wordsim_spearman(np.eye(10), np.array([[0, 1], [2, 3], [4, 5]]),
                                          np.array([1.0, 2.0, 3.0])), 0.0)

  def test_exact_analogy_and_similarity(self):
    # king - man + woman = queen with embeddings built to satisfy it.
    e = np.array([[1.0, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [5, -3, 1]])  # man king woman queen x
    k = e @ e.T
    self.assertEqual(w2v.analogy_accuracy(k, np.array([[0, 1, 2, 3]])), 1.0)
    cos = np.asarray(w2v.cosines(k))
    pairs = np.array([[0, 1], [0, 2], [1, 3], [0, 4]])
    self.assertAlmostEqual(w2v.wordsim_spearman(k, pairs, cos[pairs[:, 0], pairs[:, 1]]), 1.0)


class AlgorithmTest(absltest.TestCase):

  def test_engine_algorithm(self):
    prob = _problem()
    alg = w2v.train_algorithm("mup", 16, V, base_width=8, batch_size=8, negatives=3,
                              dtype=jnp.float64)
    state = jax.jit(alg.init)(jax.random.key(0), prob)
    state, metrics = jax.jit(lambda s: alg.step(s, prob, learning_rate=0.5))(state)
    self.assertEqual(int(state.step), 1)
    self.assertTrue(np.isfinite(float(metrics["test_loss"])))


if __name__ == "__main__":
  absltest.main()
