"""Executes every notebook in colabs/ on quick settings, so none can rot; they carry no outputs.

Each notebook runs in a plain Jupyter kernel, as a user would open it: the kernel's environment has no
``MPLBACKEND`` (``.ci/run`` exports ``MPLBACKEND=Agg`` for the test process), so matplotlib uses the
inline backend, and every cell that draws a figure must emit an ``image/png`` output. Every figure is
also saved to ``JAXOPT_LAB_FIG_DIR``: one file per figure shown.
"""

import glob
import json
import os
import re
import tempfile

import nbformat
from absl.testing import absltest, parameterized
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colabs", "*.ipynb")))
# A cell draws a figure if it makes one (pyplot or a library plot helper) or saves one (a call, not
# the definition of a helper).
_DRAWS = re.compile(r"plt\.(subplots|figure)\(|\bplot_\w+\(|^(?!\s*def\b).*\bsave\(", re.M)


def kernel_env(fig_dir: str) -> dict[str, str]:
  """The test process's environment for a plain kernel: quick settings, no forced backend."""
  env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
  pythonpath = env.get("PYTHONPATH", "")
  env.update(JAXOPT_LAB_QUICK="1", JAXOPT_LAB_FIG_DIR=fig_dir,
             PYTHONPATH=REPO + (os.pathsep + pythonpath if pythonpath else ""))
  return env


def png_outputs(cell) -> int:
  return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


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
  def test_runs_on_quick_settings_and_shows_every_figure(self, path):
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as fig_dir:
      client = NotebookClient(nb, timeout=300, kernel_name="python3",
                              resources={"metadata": {"path": REPO}})
      client.execute(env=kernel_env(fig_dir))  # raises CellExecutionError with the cell's traceback
      saved = sorted(os.listdir(fig_dir))
    drawing = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and _DRAWS.search(c.source)]
    self.assertNotEmpty(drawing, f"{path} draws no figure")
    for i, cell in drawing:
      self.assertGreater(png_outputs(cell), 0, f"{path}: cell {i} draws a figure but shows no image/png:\n"
                         + cell.source[:300])
    shown = sum(png_outputs(c) for c in nb.cells if c.cell_type == "code")
    self.assertLen(saved, shown, f"{path}: {shown} figures shown, {len(saved)} saved to "
                   f"JAXOPT_LAB_FIG_DIR: {saved}")


if __name__ == "__main__":
  absltest.main()
