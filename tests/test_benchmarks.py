"""Benchmarks run end to end on their tiny presets (so they cannot rot) and print JSON lines."""

import contextlib
import io
import json

from absl.testing import absltest, parameterized

from benchmarks import matrix_sensing_sweep, neural_collapse_flows


class BenchmarkSmokeTest(parameterized.TestCase):

  @parameterized.named_parameters(("matrix_sensing", matrix_sensing_sweep),
                                  ("neural_collapse", neural_collapse_flows))
  def test_tiny_preset_prints_machine_and_timings(self, module):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
      module.main(["--preset", "tiny", "--repeats", "1"])
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = {r["kind"] for r in records}
    self.assertTrue({"machine", "timing"} <= kinds, kinds)
    for r in records:
      if r["kind"] == "timing":
        self.assertGreater(r["median"], 0)


if __name__ == "__main__":
  absltest.main()
