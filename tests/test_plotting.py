"""The lab's figures display as PNGs in IPython whatever the matplotlib backend."""

import matplotlib
from absl.testing import absltest
from IPython.core.formatters import PNGFormatter
from matplotlib.figure import Figure

from jaxopt_lab.plotting import InlineFigure


class InlineFigureTest(absltest.TestCase):

  def test_ipython_formats_it_as_png_under_any_backend(self):
    fig = InlineFigure(figsize=(2, 1.5))
    fig.subplots().plot([0, 1], [1, 0])
    self.assertIsInstance(fig, Figure)
    png = PNGFormatter()(fig)  # what display(fig) emits as image/png
    self.assertIsNotNone(png, f"no PNG under backend {matplotlib.get_backend()}")
    self.assertTrue(png.startswith(b"\x89PNG"))

  def test_a_plain_figure_is_not_shown_without_pyplot(self):  # why InlineFigure exists
    self.assertIsNone(PNGFormatter()(Figure()))


if __name__ == "__main__":
  absltest.main()
