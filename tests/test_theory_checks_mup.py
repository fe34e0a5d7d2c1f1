"""Every mup.* theory check passes on the quick preset (through the registry, which decides pass)."""

from absl.testing import absltest, parameterized

import theory_checks
from theory_checks import registry

theory_checks.load_all()
MUP_CHECKS = sorted(c.id for c in registry.all_checks() if c.id.startswith("mup."))


class MupTheoryChecksTest(parameterized.TestCase):

  def test_all_claims_are_registered(self):
    self.assertContainsSubset(
        {"mup.coord_check_mup", "mup.coord_check_ntp", "mup.coord_check_sp_blowup",
         "mup.kernel_vs_feature_ntp", "mup.kernel_vs_feature_mup", "mup.limit_convergence_linear",
         "mup.limit_convergence_tanh", "mup.transfer_mup", "mup.transfer_sp", "mup.dichotomy_table",
         "mup.dichotomy_measured"}, set(MUP_CHECKS))

  @parameterized.named_parameters(*[(cid.replace(".", "_"), cid) for cid in MUP_CHECKS])
  def test_quick(self, check_id):
    result = registry.run_check(registry.get(check_id), "quick")
    self.assertIsNone(result.error)
    self.assertTrue(result.passed, f"{check_id}: measured {result.measured}, band "
                                   f"{result.check.band}, details {result.details}")

  def test_dichotomy_measured_at_another_offset(self):
    # Another offset draws another sample (same compilations as offset 0).
    result = registry.run_check(registry.get("mup.dichotomy_measured"), "quick", seed=1)
    self.assertTrue(result.passed, f"measured {result.measured}; {result.error}")


if __name__ == "__main__":
  absltest.main()
