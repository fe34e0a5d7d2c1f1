"""The ntk launcher: bad config values fail before compiling; the recorded metrics are what they say."""

import functools
import importlib.util
import os
import tempfile
from unittest import mock

import jax
import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab import engine, ntk
from launch import experiment
from launch.experiments import ntk as ntk_builder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "launch", "configs", "ntk.py")


def load_config(variant="quick"):
  spec = importlib.util.spec_from_file_location("cfg_ntk", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


class ValidationTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("zero_width", dict(network=dict(width=0)), r"config.network.width must be an integer >= 1"),
      ("no_hidden_layer", dict(network=dict(depth=1)), r"config.network.depth must be an integer >= 2"),
      ("unknown_activation", dict(network=dict(activation="swish")),
       r"config.network.activation must be one of"),
      ("zero_sigma_w", dict(network=dict(sigma_w=0.0)), r"config.network.sigma_w must be .* > 0"),
      ("negative_sigma_b", dict(network=dict(sigma_b=-0.1)), r"config.network.sigma_b must be .* >= 0"),
      ("nan_sigma_b", dict(network=dict(sigma_b=float("nan"))), r"config.network.sigma_b"),
      ("unknown_task", dict(task=dict(name="mnist")), r"config.task.name must be one of"),
      ("no_train_points", dict(task=dict(num_train=0)), r"config.task.num_train must be an integer"),
      ("no_test_points", dict(task=dict(num_test=0)), r"config.task.num_test must be an integer"),
      ("too_many_digits", dict(task=dict(name="digits", num_train=1000, num_test=900)),
       r"num_train \+ num_test = 1900 exceeds the 1797"),
      ("bad_dtype", dict(task=dict(dtype="bfloat16")), r"config.task.dtype must be float32 or float64"),
      ("too_many_pcs", dict(measure=dict(num_pcs=5)), r"config.measure.num_pcs must be an integer in "
       r"\[0, 4\]"),
      ("negative_lr", dict(hp=dict(lr=(1.0, -0.5))), r"lr must be positive, got \[-0.5\]"),
      ("nan_lr", dict(hp=dict(lr=(float("nan"),))), r"config.hp.lr must hold finite numbers"),
      ("record_not_dividing", dict(sweep=dict(num_steps=105)), r"must be multiples of record_every"),
      ("zero_steps", dict(sweep=dict(num_steps=0)), r"config.sweep.num_steps must be >= 1 \(an integer\)"),
      ("no_seeds", dict(sweep=dict(num_seeds=0)), r"config.sweep.num_seeds must be >= 1 \(an integer\)"),
      ("negative_first_seed", dict(sweep=dict(first_seed=-1)), r"config.sweep.first_seed must be"),
  )
  def test_bad_value_fails_before_compiling(self, changes, message):
    config = load_config()
    for section, values in changes.items():
      config[section].update(values)
    with tempfile.TemporaryDirectory() as workdir, \
        mock.patch("launch.experiment.sweep", side_effect=AssertionError("compiled")), \
        mock.patch.object(ntk_builder.ntk, "mlp_kernels", side_effect=AssertionError("computed")):
      with self.assertRaisesRegex(ValueError, message):
        experiment.run_config(config, workdir)

  def test_unknown_hyperparameter(self):
    config = load_config()
    config.hp.momentum = 0.9
    with self.assertRaisesRegex(ValueError, r"config.hp takes only lr, got \['lr', 'momentum'\]"):
      ntk_builder.build(config)

  def test_variants(self):
    with self.assertRaisesRegex(ValueError, r"unknown variant\(s\) \['fast'\]"):
      load_config("fast")
    both = load_config("digits,quick")
    self.assertEqual((both.task.name, both.network.width, both.task.num_train), ("digits", 64, 64))
    self.assertEqual(load_config("").task.name, "circle")
    for variant in ("", "quick", "digits", "digits,quick"):
      ntk_builder.build(load_config(variant))  # every variant validates and builds


class MetricsTest(parameterized.TestCase):
  """One run of the tracked GD against a NumPy float64 reference of the kernel-regime trajectory."""

  @parameterized.parameters(("circle", 0.5), ("digits", 1.0))
  def test_metrics_match_numpy_reference(self, task, lr):
    config = load_config("quick" if task == "circle" else "digits,quick")
    config.task.update(dtype="float64", num_train=8 if task == "circle" else 24, num_test=5)
    config.network.width = 32
    config.measure.num_pcs = 3
    config.hp.lr = (lr,)
    spec = ntk_builder.build(config)
    steps, every = 20, 5
    state, metrics = jax.jit(functools.partial(engine.run, spec.algorithm, num_steps=steps,
                                               record_every=every))(
        jax.random.key(3), spec.problem, spec.hp)
    p = jax.tree.map(np.asarray, spec.problem)
    n = p.x.shape[0]
    widths = (p.x.shape[1], 32, 32, 32, p.y.shape[1])
    net = ntk.MLP(widths, "relu", sigma_w=1.0, sigma_b=0.1)
    params0 = net.init(jax.random.key(3), np.float64)
    f0, f0_test = np.asarray(net.apply(params0, p.x)), np.asarray(net.apply(params0, p.x_test))
    theta = np.asarray(ntk.mlp_kernels(p.x, depth=4, activation="relu", sigma_w=1.0,
                                       sigma_b=0.1).ntk)
    theta_test = np.asarray(ntk.mlp_kernels(p.x_test, p.x, depth=4, activation="relu",
                                            sigma_w=1.0, sigma_b=0.1).ntk)
    lam, v = np.linalg.eigh(theta)
    params = state.inner.gd.params
    f_t, f_t_test = np.asarray(net.apply(params, p.x)), np.asarray(net.apply(params, p.x_test))
    step_matrix = np.eye(n) - lr * theta / n
    power = np.linalg.matrix_power(step_matrix, steps)
    pred = p.y + power @ (f0 - p.y)
    # Test points: f_0 + Theta(x, X) sum_{s < t} (I - eta Theta / n)^s (eta / n) (Y - f_0(X)).
    acc = sum(np.linalg.matrix_power(step_matrix, s) for s in range(steps)) * lr / n
    pred_test = f0_test + theta_test @ acc @ (p.y - f0)
    rms = lambda a: np.sqrt(np.mean(a**2))
    np.testing.assert_allclose(metrics["step"], np.arange(every, steps + 1, every))
    np.testing.assert_allclose(metrics["gap_train"][-1], rms(f_t - pred) / rms(p.y), rtol=1e-9)
    np.testing.assert_allclose(metrics["gap_test"][-1], rms(f_t_test - pred_test) / rms(p.y),
                               rtol=1e-9)
    np.testing.assert_allclose(metrics["loss"][-1], 0.5 * np.sum((f_t - p.y)**2) / n, rtol=1e-12)
    np.testing.assert_allclose(metrics["test_loss"][-1],
                               0.5 * np.sum((f_t_test - p.y_test)**2) / p.x_test.shape[0],
                               rtol=1e-12)
    for k in range(3):  # k-th largest eigenvalue; each decays as |1 - eta lambda_k / n|^t
      vk = v[:, n - 1 - k]
      np.testing.assert_allclose(metrics[f"pc{k + 1}_residual"][-1],
                                 np.linalg.norm(vk @ (f_t - p.y)), rtol=1e-9)
      np.testing.assert_allclose(
          metrics[f"pc{k + 1}_predicted"][-1],
          np.linalg.norm(vk @ (f0 - p.y)) * abs(1 - lr * lam[n - 1 - k] / n)**steps, rtol=1e-8)
    theta_hat0 = np.asarray(ntk.empirical_ntk(net, params0, p.x, method="jacobian"))
    theta_hat = np.asarray(ntk.empirical_ntk(net, params, p.x, method="jacobian"))
    np.testing.assert_allclose(metrics["ntk_change"][-1],
                               np.linalg.norm(theta_hat - theta_hat0) / np.linalg.norm(theta_hat0),
                               rtol=1e-8)
    self.assertGreater(metrics["ntk_change"][-1], 0)  # a width-32 net's kernel moves

  def test_tracking_off_drops_its_metrics(self):
    config = load_config()
    config.measure.update(track_ntk=False, num_pcs=0)
    config.hp.lr = (1.0,)
    spec = ntk_builder.build(config)
    _, metrics = engine.run(spec.algorithm, jax.random.key(0), spec.problem, spec.hp,
                            num_steps=2, record_every=1)
    self.assertEqual(set(metrics), {"loss", "test_loss", "gap_train", "gap_test", "step"})
    self.assertEqual(spec.plot_metrics, ("loss", "test_loss", "gap_test"))


if __name__ == "__main__":
  absltest.main()
