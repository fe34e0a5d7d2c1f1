"""The stability launcher: bad config values fail in one line before compiling; what a run records."""

import os
import tempfile
from unittest import mock

import jax
import numpy as np
import pandas as pd
from absl.testing import absltest, parameterized

from launch import experiment
from launch.configs import stability as stability_config
from launch.experiments import stability as stability_builder


def config(variant="quick", **changes):
  c = stability_config.get_config(variant)
  for section, values in changes.items():
    c[section].update(values)
  return c


class ValidationTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("unknown_model", dict(model=dict(name="resnet")), r"unknown model config.model.name = 'resnet'"),
      ("batch_above_n", dict(algorithm=dict(batch_size=61)),
       r"config.algorithm.batch_size = 61 must be in \[1, n = 60\]"),
      ("zero_batch", dict(algorithm=dict(batch_size=0)), r"batch_size = 0 must be in \[1, n = 60\]"),
      ("negative_eta", dict(hp=dict(eta=(0.04, -0.1))), r"eta must be positive, got \[-0.1\]"),
      ("unknown_algorithm", dict(algorithm=dict(name="adam")), "unknown algorithm config.algorithm.name"),
      ("unknown_sampling", dict(algorithm=dict(sampling="stratified")),
       "unknown config.algorithm.sampling = 'stratified'"),
      ("negative_clip", dict(algorithm=dict(clip=-1.0)), "config.algorithm.clip must be >= 0"),
      ("sparsity_above_d", dict(diagonal_net=dict(sparsity=201)),
       r"config.diagonal_net.sparsity must be in \[1, d = 200\]"),
      ("zero_init", dict(diagonal_net=dict(init_scale=0.0)), "config.diagonal_net.init_scale must be > 0"),
      ("bad_dtype", dict(data=dict(dtype="bfloat16")), "config.data.dtype must be float32 or float64"),
      ("no_data", dict(data=dict(n=0)), r"config.data.n \(training examples\) must be >= 1"),
      ("negative_probes", dict(monitor=dict(frobenius_probes=-1)),
       "config.monitor.frobenius_probes must be >= 0"),
      ("zero_record_every", dict(sweep=dict(record_every=0)), "config.sweep.record_every must be >= 1"),
      ("extra_hp", dict(hp=dict(momentum=0.9)), r"config.hp takes only eta .* \['momentum'\]"),
      ("no_seeds", dict(sweep=dict(num_seeds=0)), "num_seeds must be >= 1"),
  )
  def test_bad_value_fails_before_compiling(self, changes, message):
    c = config()
    for section, values in changes.items():
      c[section].update(values)
    with tempfile.TemporaryDirectory() as workdir, \
        mock.patch("launch.experiment.sweep", side_effect=AssertionError("compiled")):
      with self.assertRaisesRegex(ValueError, message):
        experiment.run_config(c, workdir)

  @parameterized.named_parameters(
      ("relu_zero_width", "relu", dict(relu_net=dict(width=0)), "config.relu_net.d and .width must be >= 1"),
      ("relu_batch_above_n", "relu", dict(algorithm=dict(batch_size=100), data=dict(n=50)),
       r"batch_size = 100 must be in \[1, n = 50\]"),
      ("digits_too_many", "eos", dict(data=dict(n=1500, n_test=500)),
       "n_test = 1500 \\+ 500 exceeds the 1797 examples"),
      ("mlp_zero_width", "eos", dict(tanh_mlp=dict(hidden=(64, 0))),
       r"config.tanh_mlp.hidden must list positive layer widths, got \(64, 0\)"),
  )
  def test_other_models_validate_their_section(self, variant, changes, message):
    with self.assertRaisesRegex(ValueError, message):
      stability_builder.build(config(variant, **changes))

  def test_gd_ignores_sgd_batch_size(self):
    spec = stability_builder.build(config("gd", algorithm=dict(batch_size=10_000)))
    self.assertStartsWith(spec.algorithm.name, "gd_")

  def test_unknown_variant(self):
    with self.assertRaisesRegex(ValueError, "unknown variant 'huge'"):
      stability_config.get_config("huge")


class BuildTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("sgd_diagonal", "quick", "sgd1_with_replacement_diagonal_net_d200", {"eta", "clip"},
       {"loss", "test_loss", "sharpness", "gn_trace", "frob_sq", "l1", "param_norm"}),
      ("gd_diagonal", "gd", "gd_diagonal_net_d200", {"eta"}, {"gn_trace", "frob_sq", "l1"}),
      ("sgd_relu", "relu", "sgd1_with_replacement_relu_net_d20_m50", {"eta", "clip"},
       {"gn_trace", "path_norm", "test_loss"}),
      ("gd_tanh_digits", "eos", "gd_tanh_mlp_64-32-32-10", {"eta"}, {"sharpness", "loss"}),
  )
  def test_variant_builds_the_paper_setting(self, variant, name, hp_names, metric_names):
    spec = stability_builder.build(config(variant))
    self.assertEqual(spec.algorithm.name, name)
    self.assertEqual(set(spec.hp), hp_names)
    shapes = jax.eval_shape(lambda: spec.algorithm.call_init(jax.random.key(0), spec.problem,
                                                             spec.hp)).monitor
    self.assertContainsSubset(metric_names, set(shapes))
    if variant == "eos":
      self.assertNotIn("gn_trace", shapes)

  def test_without_replacement_and_batch_size(self):
    spec = stability_builder.build(config(algorithm=dict(batch_size=4, sampling="without_replacement")))
    self.assertEqual(spec.algorithm.name, "sgd4_without_replacement_diagonal_net_d200")


class RunTest(absltest.TestCase):

  def test_divergent_step_size_is_reported_per_run(self):
    # GD: eta = 5 is far above 2 / lambda_max ~ 0.23 at the init of the diagonal net (lambda_max ~
    # 8-9), eta = 0.04 far below.
    c = config(hp=dict(eta=(0.04, 5.0)), algorithm=dict(name="gd", clip=0.0),
               monitor=dict(power_iters=2, frobenius_probes=0, gn_trace=False),
               sweep=dict(num_seeds=1, num_steps=200, record_every=100, chunk_steps=200))
    with tempfile.TemporaryDirectory() as workdir:
      res = experiment.run_config(c, workdir)
      np.testing.assert_array_equal(res.diverged, [[False, True]])
      runs = pd.read_csv(os.path.join(workdir, "runs.csv"))
      bad = runs[runs.diverged_at >= 0]
      self.assertEqual(bad.eta.tolist(), [5.0])


if __name__ == "__main__":
  absltest.main()
