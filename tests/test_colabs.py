"""Executes every notebook in colabs/ on quick settings, so none can rot; they carry no outputs."""

import glob
import json
import os

import nbformat
from absl.testing import absltest, parameterized
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colabs", "*.ipynb")))


class ColabTest(parameterized.TestCase):

  def test_there_are_notebooks(self):
    self.assertNotEmpty(NOTEBOOKS)

  @parameterized.named_parameters(*[(os.path.basename(p)[:-6], p) for p in NOTEBOOKS])
  def test_committed_without_outputs(self, path):
    with open(path) as f:
      nb = json.load(f)
    for cell in nb["cells"]:
      if cell["cell_type"] == "code":
        self.assertEqual(cell.get("outputs", []), [], f"{path} has outputs: strip them")

  @parameterized.named_parameters(*[(os.path.basename(p)[:-6], p) for p in NOTEBOOKS])
  def test_runs_on_quick_settings(self, path):
    nb = nbformat.read(path, as_version=4)
    os.environ["JAXOPT_LAB_QUICK"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    pythonpath = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = REPO + (os.pathsep + pythonpath if pythonpath else "")
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": REPO}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback


if __name__ == "__main__":
  absltest.main()
