"""Runs every ntk.* theory check on the quick preset and asserts it lands in its band."""

from absl.testing import absltest, parameterized

from theory_checks import (ntk_eigen_decay, ntk_init_convergence, ntk_kernel_change,  # noqa: F401
                           ntk_linearization, ntk_positive_definite, registry)

CHECKS = ("ntk.init_convergence", "ntk.init_limit_value", "ntk.kernel_change_during_training",
          "ntk.linearization_gap", "ntk.positive_definite", "ntk.identity_degenerate",
          "ntk.eigendirection_decay")
# Other seed offsets, where a check is cheap (launch.report --seeds=10 runs all of them: 10/10).
OTHER_OFFSETS = (("ntk.eigendirection_decay", 3), ("ntk.identity_degenerate", 7))


class NTKChecksTest(parameterized.TestCase):

  def test_all_ntk_checks_listed(self):
    registered = {c.id for c in registry.all_checks() if c.id.startswith("ntk.")}
    self.assertEqual(registered, set(CHECKS))

  @parameterized.parameters(*[(c, 0) for c in CHECKS], *OTHER_OFFSETS)
  def test_quick_check_passes(self, check_id, seed):
    result = registry.run_check(registry.get(check_id), "quick", seed=seed)
    self.assertIsNone(result.error)
    lo, hi = result.check.band
    self.assertTrue(result.passed, f"{check_id}: measured {result.measured} outside [{lo}, {hi}]; "
                    f"details {result.details}")


if __name__ == "__main__":
  absltest.main()
