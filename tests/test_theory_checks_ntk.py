"""Runs every ntk.* theory check on the quick preset and asserts it lands in its band."""

from absl.testing import absltest, parameterized

from theory_checks import (ntk_eigen_decay, ntk_init_convergence, ntk_kernel_change,  # noqa: F401
                           ntk_linearization, ntk_positive_definite, registry)

CHECKS = ("ntk.init_convergence", "ntk.kernel_change_during_training", "ntk.linearization_gap",
          "ntk.positive_definite", "ntk.identity_degenerate", "ntk.eigendirection_decay")


class NTKChecksTest(parameterized.TestCase):

  def test_all_ntk_checks_listed(self):
    registered = {c.id for c in registry.all_checks() if c.id.startswith("ntk.")}
    self.assertEqual(registered, set(CHECKS))

  @parameterized.parameters(*CHECKS)
  def test_quick_check_passes(self, check_id):
    result = registry.run_check(registry.get(check_id), "quick")
    self.assertIsNone(result.error)
    lo, hi = result.check.band
    self.assertTrue(result.passed, f"{check_id}: measured {result.measured} outside [{lo}, {hi}]; "
                    f"details {result.details}")


if __name__ == "__main__":
  absltest.main()
