"""muTransfer sweep: shapes, per-run divergence, best learning rate, tasks and plot."""

import jax
import numpy as np
from absl.testing import absltest
from matplotlib.figure import Figure

from jaxopt_lab.mup.parametrization import MLP, preset
from jaxopt_lab.mup.transfer import digits_task, plot_transfer, teacher_task, transfer_sweep


class TransferTest(absltest.TestCase):

  def test_sweep_shapes_divergence_and_best_lr(self):
    task = teacher_task(jax.random.key(0), num=32, d_in=4)
    lrs = [0.01, 0.1, 1.0, 100.0]
    res = {}
    for name, c in (("muP", None), ("SP", 0.0)):
      net = MLP(preset("mup" if name == "muP" else "sp", 1, c=c), 4, 16, 1, activation="relu",
                base_width=16)
      res[name] = transfer_sweep(net, [16, 64], task, lrs=lrs, seeds=[0, 1], num_steps=20,
                                 record_every=5, loss="mse", tail=2)
    r = res["muP"]
    self.assertEqual(r.loss.shape, (2, 2, 4, 4))
    self.assertEqual(list(r.steps), [5, 10, 15, 20])
    self.assertTrue(np.all(r.diverged[:, :, -1]))  # lr = 100 diverges, reported per run
    self.assertFalse(np.any(r.diverged[:, :, 0]))
    self.assertTrue(np.all(np.isinf(r.final_loss[:, -1])))
    np.testing.assert_array_equal(r.best_lr, np.asarray(lrs)[np.argmin(r.final_loss, axis=1)])
    # Base width 16: SP and muP are the same network there, so their curves coincide bit for bit.
    np.testing.assert_array_equal(res["SP"].loss[0], r.loss[0])
    fig = plot_transfer(res)
    self.assertIsInstance(fig, Figure)
    self.assertTrue(fig._repr_png_().startswith(b"\x89PNG"))  # IPython displays it inline
    with self.assertRaisesRegex(ValueError, "lrs"):
      transfer_sweep(MLP(preset("mup", 1), 4, 16, 1), [16], task, lrs=[0.0])

  def test_digits_task(self):
    task = digits_task(100)
    self.assertEqual(task.x.shape, (100, 64))
    np.testing.assert_allclose(np.asarray(digits_task().x).mean(0), 0.0, atol=1e-12)
    self.assertEqual(int(task.y.max()), 9)


if __name__ == "__main__":
  absltest.main()
