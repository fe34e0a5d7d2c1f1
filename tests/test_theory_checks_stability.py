"""Every stability.* theory check passes on the quick preset (the registry decides, from the band).

Checks that share runs (module caches) are grouped in one test, so a parallel runner keeps each
group's shared sweeps in one process.
"""

import importlib

import jax
from absl.testing import absltest, parameterized

from theory_checks import registry

# Only this paper's modules (importing every check module would tie this test to the others).
MODULES = ("stability_exact_criterion", "stability_trace_bound", "stability_norms",
           "stability_edge_of_stability", "stability_estimators")

GROUPS = {
    "exact_criterion": ("stability.exact_monotone_in_batch", "stability.exact_gd_limit",
                        "stability.exact_orthogonal_trace", "stability.exact_recursion_threshold"),
    "monte_carlo": ("stability.sgd_second_moment_monte_carlo",),
    "trained_end_points": ("stability.sgd_trace_bound", "stability.gd_sharpness_bound",
                           "stability.sgd_norm_decreases"),
    "edge_of_stability": ("stability.eos_sharpness_hovers", "stability.eos_loss_decreases"),
    "estimators": ("stability.estimators_accuracy", "stability.hutchinson_rate"),
}


class StabilityChecksTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    for name in MODULES:
      importlib.import_module(f"theory_checks.{name}")

  def test_groups_cover_every_stability_check(self):
    ids = {c.id for c in registry.all_checks() if c.id.startswith("stability.")}
    self.assertEqual(ids, {i for g in GROUPS.values() for i in g})

  @parameterized.named_parameters(*GROUPS.items())
  def test_checks_pass_on_quick(self, ids):
    self.assertTrue(jax.config.jax_enable_x64)
    for check_id in ids:
      with self.subTest(check_id):
        result = registry.run_check(registry.get(check_id), "quick")
        self.assertTrue(result.passed, f"{check_id}: measured {result.measured} not in "
                        f"{result.check.band}; error={result.error}; details={result.details}")

  def test_other_seed_offset(self):
    # One more offset for the cheap exact checks: a different problem instance must pass too.
    for check_id in ("stability.exact_recursion_threshold", "stability.exact_gd_limit"):
      result = registry.run_check(registry.get(check_id), "quick", seed=1)
      self.assertTrue(result.passed, f"{check_id} at seed 1: {result.measured}; {result.error}")


if __name__ == "__main__":
  absltest.main()
