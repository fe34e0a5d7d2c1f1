"""Benchmarks run end to end on their tiny presets (so they cannot rot) and print JSON lines."""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

from benchmarks import harness
from benchmarks import (matrix_sensing_sweep, mup_coord_check, mup_limits, mup_word2vec,
                        neural_collapse_flows, ntk_kernels, stability_curvature, stability_pyhessian)

ONE_REPEAT = ["--preset", "tiny", "--repeats", "1"]


class BenchmarkSmokeTest(parameterized.TestCase):

  # Peer libraries (neural-tangents, PyHessian, microsoft/mup) live in venvs the tiny presets skip.
  @parameterized.named_parameters(("matrix_sensing", matrix_sensing_sweep, ONE_REPEAT),
                                  ("neural_collapse", neural_collapse_flows, ONE_REPEAT),
                                  ("stability_pyhessian", stability_pyhessian, ONE_REPEAT),
                                  ("ntk_kernels", ntk_kernels, ONE_REPEAT),
                                  ("mup_limits", mup_limits, ONE_REPEAT),
                                  ("mup_word2vec", mup_word2vec, ONE_REPEAT),
                                  ("mup_coord_check", mup_coord_check,
                                   ["--preset", "tiny", "--skip-mup"]),
                                  ("stability_curvature", stability_curvature, ["--preset", "tiny"]))
  def test_tiny_preset_prints_machine_and_timings(self, module, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      module.main(argv)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = {r["kind"] for r in records}
    self.assertTrue({"machine", "timing"} <= kinds, kinds)
    for r in records:
      if r["kind"] == "timing":
        self.assertGreater(r["median"], 0)
    # Every benchmark states its work against the roofline measured in the same run.
    self.assertEqual([r["kind"] for r in records[:2]], ["machine", "roofline"])
    costed = [r for r in records if r["kind"] == "timing" and "roofline_fraction" in r]
    self.assertNotEmpty(costed)
    for r in costed:
      self.assertGreater(r["flops"] + r["bytes"], 0, r["name"])
      self.assertGreater(r["roofline_fraction"], 0, r["name"])


class RooflineTest(absltest.TestCase):

  def test_peaks_has_every_precision_and_a_bandwidth(self):
    pk = harness.peaks("tiny")
    self.assertContainsSubset({"float32", "float32_highest", "float64"}, pk["flops_per_s"])
    self.assertTrue(all(v > 0 for v in pk["flops_per_s"].values()))
    self.assertGreater(pk["bytes_per_s"], 0)
    self.assertIs(pk, harness.peaks("tiny"))  # measured once per process

  def test_a_fraction_above_one_measures_the_peaks_again(self):
    pk = harness.peaks("tiny")
    saved = dict(harness._PEAKS)  # pylint: disable=protected-access
    try:  # as if the peaks had been measured under a load that made them 1000x too low
      low = dict(pk, flops_per_s={k: v / 1000 for k, v in pk["flops_per_s"].items()}, refreshes=0)
      harness._PEAKS["tiny"] = low  # pylint: disable=protected-access
      rec = harness.roofline(1.0, harness.Cost(0.01 * pk["flops_per_s"]["float32"], 0.0), "tiny")
      self.assertEqual(rec["peak_refreshes"], 1)
      self.assertLess(rec["roofline_fraction"], 1.0)
      self.assertGreaterEqual(rec["peak_flops_per_s"], 100 * low["flops_per_s"]["float32"])
    finally:
      harness._PEAKS.clear()  # pylint: disable=protected-access
      harness._PEAKS.update(saved)  # pylint: disable=protected-access

  def test_xla_cost_counts_a_matmul(self):
    a = jnp.ones((64, 32), jnp.float32)
    b = jnp.ones((32, 16), jnp.float32)
    cost = harness.xla_cost(jnp.matmul, a, b)
    self.assertEqual(cost.flops, 2 * 64 * 32 * 16)
    self.assertGreaterEqual(cost.bytes, 4 * (64 * 32 + 32 * 16 + 64 * 16))

  def test_fraction_is_the_slower_bound_over_the_time(self):
    pk = harness.peaks("tiny")
    f32, bw = pk["flops_per_s"]["float32"], pk["bytes_per_s"]
    rec = harness.roofline(2.0, harness.Cost(0.2 * f32, 0.6 * bw), "tiny")
    self.assertAlmostEqual(rec["compute_fraction"], 0.1)
    self.assertAlmostEqual(rec["memory_fraction"], 0.3)
    self.assertAlmostEqual(rec["roofline_fraction"], 0.3)
    self.assertEqual(rec["bound"], "memory")
    f64 = pk["flops_per_s"]["float64"]
    rec = harness.roofline(1.0, harness.Cost(0.5 * f64, 0.0, "float64"), "tiny")
    self.assertAlmostEqual(rec["roofline_fraction"], 0.5)
    self.assertEqual(rec["bound"], "compute")

  def test_unknown_peak_is_refused(self):
    with self.assertRaisesRegex(ValueError, "cost.peak"):
      harness.roofline(1.0, harness.Cost(1.0, 1.0, "float16"), "tiny")
    with self.assertRaisesRegex(ValueError, "size"):
      harness.peaks("huge")

  def test_run_cost_counts_every_step(self):
    from tests.toy import TOY  # pylint: disable=g-import-not-at-top
    keys = jax.random.split(jax.random.key(0), 3)
    problem = jnp.linspace(0.5, 1.5, 256)
    cost = lambda steps: harness.run_cost(TOY, keys, problem, {"scale": 1.0, "lr": 0.1},
                                          num_steps=steps, record_every=steps)
    one_step = harness.xla_cost(
        jax.vmap(lambda s, p: TOY.call_step(s, p, {"scale": 1.0, "lr": 0.1})[0], in_axes=(0, None)),
        jax.eval_shape(jax.vmap(lambda k: TOY.call_init(k, problem, {"scale": 1.0})), keys),
        problem)
    self.assertGreater(one_step.flops, 0)
    self.assertAlmostEqual(cost(20).flops - cost(10).flops, 10 * one_step.flops)

  def test_compare_carries_both_roofline_fractions(self):
    out = io.StringIO()
    bench = harness.Bench("t", out=out, roofline="tiny")
    ours = harness.Timing("ours", 1.0, 1.0, 1.0, 1, 1.0)
    base = harness.Timing("base", 2.0, 2.0, 2.0, 1, 2.0)
    bench.record(ours, cost=harness.Cost(1e6, 1e6))
    bench.record(base, cost=harness.Cost(1e6, 1e6))
    bench.compare(ours, base)
    ratio = json.loads(out.getvalue().splitlines()[-1])
    self.assertEqual(ratio["speedup"], 2.0)
    self.assertAlmostEqual(ratio["ours_roofline_fraction"], 2 * ratio["baseline_roofline_fraction"])


if __name__ == "__main__":
  absltest.main()
