"""Runs every ntk_layers.* theory check on the quick preset and asserts it lands in its band."""

from absl.testing import absltest, parameterized

from theory_checks import ntk_layers_convergence, ntk_layers_identities, registry  # noqa: F401

FAMILIES = ("conv", "pool", "residual", "layernorm")
CHECKS = (*(f"ntk_layers.{f}_{k}" for f in FAMILIES for k in ("rate", "value")),
          "ntk_layers.cnn_gp_equals_lcn_gp", "ntk_layers.gap_changes_cnn_gp")


class NTKLayersChecksTest(parameterized.TestCase):

  def test_all_ntk_layers_checks_listed(self):
    registered = {c.id for c in registry.all_checks() if c.id.startswith("ntk_layers.")}
    self.assertEqual(registered, set(CHECKS))

  @parameterized.parameters(*CHECKS)
  def test_quick_check_passes(self, check_id):
    result = registry.run_check(registry.get(check_id), "quick", seed=0)
    self.assertIsNone(result.error)
    lo, hi = result.check.band
    self.assertTrue(result.passed, f"{check_id}: measured {result.measured} outside [{lo}, {hi}]; "
                    f"details {result.details}")


if __name__ == "__main__":
  absltest.main()
