r"""The Dynamical Dichotomy: is an abc-parametrization unstable, trivial, kernel or feature learning?

For SGD (TP4, Theorem 3.3; :math:`\phi` = tanh or a smooth GeLU), with

.. math::
    r_l = \min(a_{L+1} + b_{L+1},\; 2a_{L+1} + c) + c - 1 + 2 a_l + \mathbb{1}[l = 1],
    \qquad r = \min_{1 \le l \le L} r_l,

(the feature update :math:`\Delta h^l` of layer :math:`l`'s own weights is :math:`\Theta(n^{-r_l})`,
so :math:`|\Delta h^l| = \Theta(n^{-\min_{k \le l} r_k})`), the parametrization is

1. stable iff :math:`a_1 + b_1 = 0`, :math:`a_l + b_l = 1/2` for :math:`2 \le l \le L`,
   :math:`a_{L+1} + b_{L+1} \ge 1/2`, :math:`r \ge 0`, :math:`2a_{L+1} + c \ge 1` and
   :math:`a_{L+1} + b_{L+1} + r \ge 1`;
2. stable and nontrivial iff moreover :math:`a_{L+1} + b_{L+1} + r = 1` or :math:`2a_{L+1} + c = 1`;
3. then feature learning iff :math:`r = 0`, kernel regime iff :math:`r > 0`.

For Adam the same argument with an update whose entries are :math:`\Theta(\eta n^{-c})` whatever the
gradient's size (TP5, Appendix on abc-parametrizations for Adam) gives
:math:`r_l = a_l + c - 1 + \mathbb{1}[l = 1]` and the readout-update condition
:math:`a_{L+1} + c \ge 1` in place of :math:`2a_{L+1} + c \ge 1`; the rest is unchanged. Both are
invariant under the respective symmetries (:meth:`jaxopt_lab.mup.parametrization.ABC.shift`).

:func:`predicted_exponents` gives the width exponents a coordinate check measures after step
:math:`t` (at :math:`t = 1` the readout has not moved yet, so :math:`a_{L+1} + b_{L+1}` replaces the
min in :math:`r_l`).

Reference: Yang & Hu, arXiv:2011.14522, Definition 3.2 and Theorem 3.3; Yang et al.,
arXiv:2203.03466 (Adam).
"""

from __future__ import annotations

from typing import NamedTuple

from jaxopt_lab.mup.parametrization import ABC

TOL = 1e-9
REGIMES = ("unstable", "trivial", "kernel", "feature_learning")


class Condition(NamedTuple):
  """One condition of the classification: its formula, the value of its left side, and if it holds."""

  name: str
  value: float
  holds: bool


class Verdict(NamedTuple):
  """The regime of an abc-parametrization and why.

  Attributes:
    regime: ``"unstable"``, ``"trivial"``, ``"kernel"`` or ``"feature_learning"``.
    r: :math:`r = \\min_l r_l`.
    r_l: per-layer :math:`r_l`, :math:`l = 1..L`.
    reason: a sentence naming the failing (or deciding) condition.
    conditions: every stability condition with its value.
  """

  regime: str
  r: float
  r_l: tuple[float, ...]
  reason: str
  conditions: tuple[Condition, ...]


def _eq(x: float, y: float) -> bool:
  return abs(x - y) <= TOL


def _ge(x: float, y: float) -> bool:
  return x >= y - TOL


def layer_r(abc: ABC, *, first_step: bool = False) -> tuple[float, ...]:
  r"""Per-layer :math:`r_l` (module docstring); ``first_step`` uses :math:`a_{L+1} + b_{L+1}` for
  the backward signal (SGD's step 1, before the readout has moved)."""
  a, b, c = abc.a, abc.b, abc.c
  L = abc.depth
  if abc.optimizer == "adam":
    return tuple(a[l] + c - 1 + (1.0 if l == 0 else 0.0) for l in range(L))
  out = a[L] + b[L]
  back = out if first_step else min(out, 2 * a[L] + c)
  return tuple(back + c - 1 + 2 * a[l] + (1.0 if l == 0 else 0.0) for l in range(L))


def classify(abc: ABC) -> Verdict:
  r"""Classifies an abc-parametrization by the Dynamical Dichotomy (module docstring).

  Args:
    abc: the :class:`~jaxopt_lab.mup.parametrization.ABC` (any depth; SGD or Adam).

  Returns:
    A :class:`Verdict`; ``reason`` names the first failing stability condition for ``"unstable"``,
    both nontriviality conditions for ``"trivial"``, and the value of :math:`r` otherwise.

  Example:
    >>> classify(preset("mup", 2)).regime
    'feature_learning'
    >>> classify(preset("sp", 2, c=0.0)).reason
    'unstable: r >= 0 fails (r = -0.5)'

  Reference: arXiv:2011.14522, Theorem 3.3.
  """
  a, b, c = abc.a, abc.b, abc.c
  L = abc.depth
  r_l = layer_r(abc)
  r = min(r_l)
  out = a[L] + b[L]
  if abc.optimizer == "adam":
    upd_name, upd = "a_{L+1} + c >= 1", a[L] + c
  else:
    upd_name, upd = "2 a_{L+1} + c >= 1", 2 * a[L] + c
  conds = [Condition("a_1 + b_1 = 0", a[0] + b[0], _eq(a[0] + b[0], 0.0))]
  for l in range(1, L):
    conds.append(Condition(f"a_{l + 1} + b_{l + 1} = 1/2", a[l] + b[l], _eq(a[l] + b[l], 0.5)))
  conds += [
      Condition("a_{L+1} + b_{L+1} >= 1/2", out, _ge(out, 0.5)),
      Condition("r >= 0", r, _ge(r, 0.0)),
      Condition(upd_name, upd, _ge(upd, 1.0)),
      Condition("a_{L+1} + b_{L+1} + r >= 1", out + r, _ge(out + r, 1.0)),
  ]
  conds = tuple(conds)
  failing = [cd for cd in conds if not cd.holds]
  if failing:
    cd = failing[0]
    lhs = cd.name.split(" >=")[0].split(" =")[0]
    return Verdict("unstable", r, r_l, f"unstable: {cd.name} fails ({lhs} = {cd.value:g})", conds)
  if not (_eq(out + r, 1.0) or _eq(upd, 1.0)):
    return Verdict("trivial", r, r_l,
                   f"trivial: neither a_{{L+1}} + b_{{L+1}} + r = 1 (it is {out + r:g}) nor "
                   f"{upd_name.replace(' >= ', ' = ')} (it is {upd:g}): f does not move", conds)
  if _eq(r, 0.0):
    return Verdict("feature_learning", r, r_l, "feature learning: stable, nontrivial and r = 0",
                   conds)
  return Verdict("kernel", r, r_l, f"kernel regime: stable, nontrivial and r = {r:g} > 0", conds)


def require_stable(abc: ABC) -> Verdict:
  """:func:`classify`, raising ``ValueError`` with the failing condition when ``abc`` is unstable."""
  v = classify(abc)
  if v.regime == "unstable":
    raise ValueError(f"abc-parametrization {abc} is {v.reason}")
  return v


class Exponents(NamedTuple):
  r"""Predicted width exponents :math:`p` (size :math:`\propto n^p`) after step :math:`t`.

  Attributes:
    dh: :math:`|\Delta h^l|`, :math:`l = 1..L`.
    f0: :math:`|f_0|`.
    df: :math:`|\Delta f|`.
  """

  dh: tuple[float, ...]
  f0: float
  df: float


def predicted_exponents(abc: ABC, t: int = 1) -> Exponents:
  r"""Width exponents of :math:`|h^l_t - h^l_0|`, :math:`|f_0|`, :math:`|f_t - f_0|` (coordinate sizes).

  .. math::
      |\Delta h^l| \sim n^{-\min_{k \le l} r_k}, \quad |f_0| \sim n^{1/2 - a_{L+1} - b_{L+1}}, \quad
      |\Delta f| \sim n^{\max(1 - 2a_{L+1} - c,\; 1 - a_{L+1} - b_{L+1} - r)}

  (Adam: :math:`1 - a_{L+1} - c`). Valid for stable parametrizations and generic inputs; an unstable
  one's blow-up is cut by the activation's nonlinearity (tanh saturates).

  Reference: arXiv:2011.14522, Section 3 (the heuristic behind Theorem 3.3).
  """
  if t < 1:
    raise ValueError(f"t must be >= 1, got {t}")
  a, b, c = abc.a, abc.b, abc.c
  L = abc.depth
  r_l = layer_r(abc, first_step=(t == 1))
  dh = tuple(-min(r_l[:l + 1]) for l in range(L))
  out = a[L] + b[L]
  upd = 1 - (a[L] + c if abc.optimizer == "adam" else 2 * a[L] + c)
  return Exponents(dh, 0.5 - out, max(upd, 1 - out - min(r_l)))


__all__ = ["Condition", "Exponents", "REGIMES", "Verdict", "classify", "layer_r",
           "predicted_exponents", "require_stable"]
