"""The Dynamical Dichotomy classifier: the paper's table, reasons, symmetry, predicted exponents."""

import numpy as np
from absl.testing import absltest, parameterized

from jaxopt_lab.mup.dichotomy import classify, predicted_exponents, require_stable
from jaxopt_lab.mup.parametrization import ABC, preset


class ClassifierTest(parameterized.TestCase):

  @parameterized.parameters(
      ("sp", 2, 0.0, "unstable", -1.0), ("sp", 2, 1.0, "kernel", 0.5),
      ("ntp", 2, 0.0, "kernel", 0.5), ("ntp", 2, 1.0, "trivial", 1.5),
      ("mfp", 1, None, "feature_learning", 0.0), ("mup", 2, None, "feature_learning", 0.0),
      ("mup", 5, None, "feature_learning", 0.0), ("ntp", 4, 0.0, "kernel", 0.5))
  def test_paper_table(self, name, depth, c, regime, r):
    v = classify(preset(name, depth, c=c))
    self.assertEqual(v.regime, regime)
    self.assertAlmostEqual(v.r, r)
    self.assertLen(v.r_l, depth)

  def test_reasons_name_the_failing_condition(self):
    self.assertEqual(classify(preset("sp", 2, c=0.0)).reason, "unstable: r >= 0 fails (r = -1)")
    bad_hidden = ABC((-0.5, 0.25, 0.5), (0.5, 0.5, 0.5), 0.0)
    self.assertIn("a_2 + b_2 = 1/2 fails", classify(bad_hidden).reason)
    bad_input = ABC((0.0, 0.0, 0.5), (0.5, 0.5, 0.5), 0.0)
    self.assertIn("a_1 + b_1 = 0 fails", classify(bad_input).reason)
    big_readout_lr = ABC((-0.25, 0.0, 0.125), (0.25, 0.5, 0.875), 0.5)  # r = 1/4, 2 a_3 + c = 3/4
    self.assertIn("2 a_{L+1} + c >= 1 fails", classify(big_readout_lr).reason)
    self.assertIn("trivial", classify(preset("ntp", 2, c=1.0)).reason)
    self.assertIn("r = 0.5", classify(preset("ntp", 2)).reason)
    with self.assertRaisesRegex(ValueError, "unstable"):
      require_stable(bad_hidden)
    self.assertEqual(require_stable(preset("mup", 2)).regime, "feature_learning")

  def test_symmetry_leaves_verdict_unchanged(self):
    rng = np.random.default_rng(0)
    for _ in range(200):
      q = lambda lo, hi: float(rng.integers(lo * 4, hi * 4 + 1)) / 4
      opt = "sgd" if rng.random() < 0.5 else "adam"
      abc = ABC((q(-1, 1), q(-1, 1), q(-1, 1)), (q(-1, 1), q(-1, 1), q(-1, 1)), q(-2, 2), opt)
      v, w = classify(abc), classify(abc.shift(q(-2, 2)))
      self.assertEqual(v.regime, w.regime)
      np.testing.assert_allclose(w.r_l, v.r_l, atol=1e-12)

  def test_predicted_exponents_match_fact_sheet_measurements(self):
    # Fact sheet (tanh, one SGD step): muP dh ~ 0, f0 ~ -0.45, df ~ 0; NTP dh ~ -0.5, f0 ~ 0, df ~ 0.
    mup, ntp = predicted_exponents(preset("mup", 2)), predicted_exponents(preset("ntp", 2))
    self.assertEqual((mup.dh, mup.f0, mup.df), ((0.0, 0.0), -0.5, 0.0))
    self.assertEqual((ntp.dh, ntp.f0, ntp.df), ((-0.5, -0.5), 0.0, 0.0))
    sp0 = predicted_exponents(preset("sp", 2, c=0.0))  # identity: +0.94 measured, predicted 1
    self.assertEqual((sp0.dh, sp0.df), ((-0.5, 0.5), 1.0))
    with self.assertRaises(ValueError):
      predicted_exponents(preset("mup", 2), t=0)


if __name__ == "__main__":
  absltest.main()
