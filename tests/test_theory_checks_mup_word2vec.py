"""The mup_word2vec.* and mup_maml.* theory checks pass on the quick preset (through the registry)."""

from absl.testing import absltest, parameterized

import theory_checks
from theory_checks import registry

theory_checks.load_all()
CHECKS = sorted(c.id for c in registry.all_checks()
                if c.id.startswith(("mup_word2vec.", "mup_maml.")))


class MupWord2VecTheoryChecksTest(parameterized.TestCase):

  def test_registered(self):
    self.assertContainsSubset({"mup_word2vec.limit_convergence", "mup_word2vec.limit_beats_ntk",
                               "mup_word2vec.wider_is_better"}, set(CHECKS))

  @parameterized.named_parameters(*[(cid.replace(".", "_"), cid) for cid in CHECKS])
  def test_quick(self, check_id):
    result = registry.run_check(registry.get(check_id), "quick")
    self.assertIsNone(result.error)
    self.assertTrue(result.passed, f"{check_id}: measured {result.measured}, band "
                                   f"{result.check.band}, details {result.details}")


if __name__ == "__main__":
  absltest.main()
