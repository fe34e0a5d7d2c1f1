"""The GPU suite at tiny sizes on CPU: one JSON line per entry, errors and time caps recorded, and it
runs without the packages the GPU machine lacks (ml_collections, scikit-learn, pandas, nbclient)."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from benchmarks import gpu_suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MISSING_ON_GPU_MACHINE = ("ml_collections", "sklearn", "pandas", "nbclient")
# A None entry in sys.modules makes `import name` raise ImportError, as on the GPU machine.
RUN_WITHOUT = ("import sys\n"
               "for name in {missing!r}:\n"
               "  sys.modules[name] = None\n"
               "from benchmarks import gpu_suite\n"
               "gpu_suite.main(['--out', {out!r}, '--preset', 'tiny'])\n"
               "leaked = [m for m in sys.modules if m.split('.')[0] in {missing!r}\n"
               "          and sys.modules[m] is not None]\n"
               "assert not leaked, leaked\n")


def _lines(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


class TinySuiteTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.TemporaryDirectory()
    code = RUN_WITHOUT.format(missing=MISSING_ON_GPU_MACHINE, out=cls.tmp.name)
    cls.proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, check=False,
                              env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"))
    path = os.path.join(cls.tmp.name, "results.jsonl")
    cls.records = _lines(path) if os.path.exists(path) else []

  @classmethod
  def tearDownClass(cls):
    cls.tmp.cleanup()
    super().tearDownClass()

  def test_runs_without_the_packages_the_gpu_machine_lacks(self):
    self.assertEqual(self.proc.returncode, 0, self.proc.stderr[-3000:])
    self.assertEqual(self.records[-1]["kind"], "done")

  def test_every_section_has_costed_entries_and_no_errors(self):
    errors = [r for r in self.records if "error" in r]
    self.assertEmpty(errors, errors and errors[0].get("traceback"))
    entries = [r for r in self.records if "entry" in r]
    sections = {r["section"] for r in entries}
    self.assertContainsSubset(set(gpu_suite.SECTIONS) - {"torch_peers"}, sections)
    for r in entries:
      self.assertEqual(r["device"], "cpu")
      self.assertTrue(r["jax"])
      self.assertGreater(r["time_s"], 0, r["entry"])
      self.assertGreater(r["flops"], 0, r["entry"])
      self.assertGreater(r["bytes"], 0, r["entry"])
      self.assertGreater(r["roofline_fraction"], 0, r["entry"])

  def test_peers_are_timed_or_skipped_with_a_reason(self):
    peers = [r for r in self.records if r.get("section") == "torch_peers" and "kind" not in r]
    self.assertLen(peers, 2)  # microsoft/mup and PyHessian: an entry or a skip line each
    for r in peers:
      self.assertTrue("entry" in r or "not importable" in r["skipped"], r)
    analytic = [r for r in self.records if r.get("section") == "ntk_analytic" and "entry" in r]
    self.assertNotEmpty(analytic)
    for r in analytic:  # the plain recursion runs in the same run, at stated accuracies
      self.assertGreater(r["peer_ratio"], 0)
      # float32 kernels against float64: a few ulps of the entries' sums (the plain arccos loses
      # more near the diagonal, ~sqrt(eps)); both must be float32-accurate, not loose.
      self.assertLess(r["ours_max_rel_err"], 1e-5)
      self.assertLess(r["plain_max_rel_err"], 1e-2)

  def test_matrix_sensing_reports_per_seed_cost(self):
    ms = [r for r in self.records if r.get("section") == "matrix_sensing" and "entry" in r]
    self.assertNotEmpty(ms)
    for r in ms:
      self.assertAlmostEqual(r["ms_per_seed"], 1e3 * r["time_s"] / r["seeds"])


class IsolationTest(absltest.TestCase):

  def test_a_failing_section_and_a_time_cap_are_recorded_and_the_rest_runs(self):
    def failing(sec):
      raise RuntimeError("boom")

    ran = []

    def capped(sec):
      sec.cfg = dict(sec.cfg, cap_s=0.0)
      for size in sec.sizes([1, 2, 3]):
        ran.append(size)

    fns = {"matrix_sensing": failing, "ntk_analytic": capped}
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
      path = gpu_suite.run_suite(tmp, "tiny", ["matrix_sensing", "ntk_analytic"], stream=devnull,
                                 section_fns=fns)
      records = _lines(path)
    errors = [r for r in records if "error" in r]
    self.assertLen(errors, 1)
    self.assertEqual(errors[0]["section"], "matrix_sensing")
    self.assertIn("RuntimeError: boom", errors[0]["error"])
    self.assertEqual(ran, [1])  # the first size always runs; the cap stops the rest
    skipped = [r for r in records if "skipped" in r]
    self.assertEqual(skipped[0]["skipped"], ["2", "3"])
    self.assertEqual(records[-1]["kind"], "done")

  def test_unknown_section_is_refused(self):
    with self.assertRaises(SystemExit):
      gpu_suite.main(["--out", "/tmp/x", "--sections", "matrix_sensing,nope"])


if __name__ == "__main__":
  absltest.main()
