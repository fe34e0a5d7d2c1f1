"""A matplotlib Figure that shows itself in Jupyter and Colab without pyplot or a chosen backend.

The lab's plot helpers return an :class:`InlineFigure`: a plain ``matplotlib.figure.Figure`` (no pyplot
state, nothing to close, safe in loops and in scripts that only ``savefig``) that IPython renders as a
PNG whenever it is displayed, whatever the matplotlib backend, because it defines ``_repr_png_``.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class InlineFigure(Figure):
  """A ``Figure`` that IPython displays as a PNG (``display(fig)`` or a cell's last expression).

  Example:
    >>> fig = InlineFigure(figsize=(3, 2))
    >>> _ = fig.subplots().plot([0, 1], [1, 0])
    >>> fig._repr_png_()[:4]
    b'\\x89PNG'
  """

  def _repr_png_(self) -> bytes:
    buf = io.BytesIO()
    self.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


__all__ = ["InlineFigure"]
