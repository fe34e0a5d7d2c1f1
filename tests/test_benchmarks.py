"""Benchmarks run end to end on their tiny presets (so they cannot rot) and print JSON lines."""

import contextlib
import io
import json

from absl.testing import absltest, parameterized

from benchmarks import (matrix_sensing_sweep, mup_coord_check, mup_limits, neural_collapse_flows,
                        ntk_kernels, stability_curvature, stability_pyhessian)

ONE_REPEAT = ["--preset", "tiny", "--repeats", "1"]


class BenchmarkSmokeTest(parameterized.TestCase):

  # Peer libraries (neural-tangents, PyHessian, microsoft/mup) live in venvs the tiny presets skip.
  @parameterized.named_parameters(("matrix_sensing", matrix_sensing_sweep, ONE_REPEAT),
                                  ("neural_collapse", neural_collapse_flows, ONE_REPEAT),
                                  ("stability_pyhessian", stability_pyhessian, ONE_REPEAT),
                                  ("ntk_kernels", ntk_kernels, ONE_REPEAT),
                                  ("mup_limits", mup_limits, ONE_REPEAT),
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


if __name__ == "__main__":
  absltest.main()
