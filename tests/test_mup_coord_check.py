"""Coordinate check on tiny sizes: exponents, seed batching, one compile per shape, plot, errors."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from matplotlib.figure import Figure

from jaxopt_lab.mup import coord_check as cc_mod
from jaxopt_lab.mup.coord_check import coord_check, plot_coord_check
from jaxopt_lab.mup.parametrization import MLP, Task, preset

WIDTHS = (32, 64, 128, 256)
TASK = Task(jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float64)[:, None],
            jnp.sin(2.0 * jnp.linspace(-1.0, 1.0, 4, dtype=jnp.float64))[:, None])


def _cc(name, c=None, seeds=range(8), widths=WIDTHS, **kw):
  return coord_check(MLP(preset(name, 2, c=c), 1, 32, 1), widths, TASK, seeds=seeds, lr=1.0,
                     num_steps=2, **kw)


class CoordCheckTest(absltest.TestCase):

  def test_exponents_on_tiny_widths(self):
    mup, ntp, sp = _cc("mup"), _cc("ntp"), _cc("sp", c=0.0)
    self.assertEqual(mup.size.shape, (4, 8, 3, 3))
    # Widths 32..256 and 8 seeds: finite-width and seed noise of the fit ~0.1 (the theory check
    # uses 16 seeds and 2^6..2^10 for its +-0.1 band).
    np.testing.assert_allclose(mup.exponents("change")[1], 0.0, atol=0.15)
    np.testing.assert_allclose(ntp.exponents("change")[1, :2], -0.5, atol=0.15)
    self.assertGreater(sp.exponents("change")[1, -1], 0.5)
    self.assertTrue(np.all(np.isnan(mup.exponents("change")[0])))  # no change at step 0
    fig = plot_coord_check(mup)
    self.assertIsInstance(fig, Figure)
    self.assertTrue(fig._repr_png_().startswith(b"\x89PNG"))  # IPython displays it inline

  def test_seed_batches_equal_vmap_and_single_seeds(self):
    a = _cc("mup", seeds=range(5), widths=(16, 32))  # one seed at a time (the default)
    for batch in (None, 2):  # all vmapped; vmapped pairs with a remainder of one
      b = _cc("mup", seeds=range(5), widths=(16, 32), seed_batch=batch)
      np.testing.assert_allclose(a.change, b.change, rtol=1e-12)
      np.testing.assert_allclose(a.size, b.size, rtol=1e-12)
    one = _cc("mup", seeds=[2], widths=(16, 32))
    np.testing.assert_allclose(one.size[:, 0], a.size[:, 2], rtol=1e-12)

  def test_key_impl_changes_draws_not_statistics(self):
    seeds = range(16)
    a = _cc("mup", seeds=seeds)
    b = _cc("mup", seeds=seeds, key_impl="rbg")
    self.assertFalse(np.allclose(a.size[:, :, 0], b.size[:, :, 0]))  # other networks
    # Same law: seed-mean step-0 sizes agree to a few standard errors of the seed mean
    # (16 seeds), and the change exponents agree within the 0.15 of the tiny-width fit above.
    mean_a, mean_b = a.size[:, :, 0].mean(1), b.size[:, :, 0].mean(1)
    sem = np.sqrt(a.size[:, :, 0].var(1) / 16 + b.size[:, :, 0].var(1) / 16)
    self.assertTrue(np.all(np.abs(mean_a - mean_b) < 4 * sem + 1e-12), (mean_a, mean_b, sem))
    np.testing.assert_allclose(a.exponents("change")[1], b.exponents("change")[1], atol=0.15)

  def test_one_compile_per_shape_across_parametrizations(self):
    _cc("mup", widths=(16, 32))
    before = cc_mod._one_width._cache_size()
    _cc("ntp", widths=(16, 32))
    _cc("sp", widths=(16, 32), c=0.5)
    self.assertEqual(cc_mod._one_width._cache_size(), before)

  def test_validation(self):
    net = MLP(preset("mup", 2), 1, 32, 1)
    with self.assertRaisesRegex(ValueError, "widths"):
      coord_check(net, [0, 32], TASK)
    with self.assertRaisesRegex(ValueError, "num_steps"):
      coord_check(net, [32], TASK, num_steps=0)
    with self.assertRaisesRegex(ValueError, "loss"):
      coord_check(net, [32], TASK, loss="l1")
    with self.assertRaisesRegex(ValueError, "seed_batch"):
      coord_check(net, [32], TASK, seed_batch=0)
    with self.assertRaisesRegex(ValueError, "key_impl"):
      coord_check(net, [32], TASK, key_impl="mersenne")
    with self.assertRaisesRegex(ValueError, "which"):
      _cc("mup", seeds=[0]).exponents("grad")


if __name__ == "__main__":
  absltest.main()
