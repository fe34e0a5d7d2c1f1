r"""Infinite-width NNGP and NTK of fully connected networks (Jacot, Gabriel & Hongler 2018).

A depth-:math:`L` MLP (``depth`` = number of dense layers, so ``depth - 1`` hidden layers) in the
NTK parametrization, with :math:`W, b` entries iid :math:`N(0, 1)`,

.. math::
    h^1 = \tfrac{\sigma_w}{\sqrt{n_0}} W^1 x + \sigma_b b^1, \qquad
    h^{l+1} = \tfrac{\sigma_w}{\sqrt{n_l}} W^{l+1} \phi(h^l) + \sigma_b b^{l+1},

has at infinite width the NNGP kernel :math:`\Sigma^L` and the NTK :math:`\Theta^L` of the recursion

.. math::
    \Sigma^1 = \sigma_w^2 \tfrac{\langle x, x'\rangle}{n_0} + \sigma_b^2, \quad
    \Sigma^{l+1} = \sigma_w^2\, \mathbb{E}[\phi(u)\phi(v)] + \sigma_b^2, \quad
    \dot\Sigma^{l+1} = \sigma_w^2\, \mathbb{E}[\phi'(u)\phi'(v)],

.. math::
    \Theta^1 = \Sigma^1, \qquad \Theta^{l+1} = \Sigma^{l+1} + \dot\Sigma^{l+1}\, \Theta^l,

with :math:`(u, v) \sim N(0, [[\Sigma^l(x,x), \Sigma^l(x,x')], [\Sigma^l(x,x'), \Sigma^l(x',x')]])`.
In the standard parametrization (:math:`W \sim N(0, \sigma_w^2/n_l)`,
:math:`b \sim N(0, \sigma_b^2)`, ``h = W a + b``; the biases are trainable even when
:math:`\sigma_b = 0`) the NNGP is the same and the NTK carries the finite widths :math:`n_l`
(``hidden_widths``):
:math:`\Theta^1 = \langle x, x' \rangle + 1`,
:math:`\Theta^{l+1} = n_l\, \mathbb{E}[\phi(u)\phi(v)] + 1 + \dot\Sigma^{l+1} \Theta^l`.

The kernels are per output unit: a network with :math:`n_L` outputs has
:math:`\Theta^L \otimes I_{n_L}`.

Expectations: closed forms for ``relu`` (arc-cosine kernel in the atan2 form), ``erf``,
``identity``, ``leaky_relu`` and ``abs`` (:func:`_piecewise_linear`), ``sin`` and ``cos``
(:func:`_sinusoid`); any other elementwise activation (a name of :data:`ACTIVATIONS` or a
callable) by a Gauss-Legendre rule on the conditional decomposition of the bivariate normal, in
the variable :math:`\tau = \operatorname{asinh}(u)` (nodes dense at the activation's unit scale
around 0 and spread geometrically to the Gaussian's tails, so the accuracy does not degrade as the
pre-activation variance q grows, as Gauss-Hermite's does: erf by 6e-2 at q = 10 and 0.86 at q = 100
at order 64).
By default the order is chosen from an error estimate (orders n and 2n on a probe of the inputs,
:func:`_resolve_order`) to reach ``quadrature_rtol`` (1e-6 of the kernel scale in float64, 1e-5 in
float32), and a clear error names the accuracy reached when no order up to 256 does. Measured
(float64, depth 2, asserted in ``tests/test_ntk_analytic.py``): erf as a callable against its
closed form within 1e-6 for q from 1e-2 to 1e4 (order 32 at q ~ 1, 128 at q = 1e4); tanh, GeLU,
softplus and sigmoid at order 128 within 1e-12 of adaptive 1-D quadrature up to q = 1e4. A kink
(relu as a callable) converges only algebraically (4e-4 at order 128) and is refused by the
automatic order: use the closed forms. Under tracing (inputs or scales traced, e.g. vmapped) the
order cannot be probed and is :data:`TRACED_QUADRATURE_ORDER` (128).

On the diagonal of the kernel of a set with itself the angle is set to exactly zero (the 2x2
covariance is singular there), so the float32 diagonal is as accurate as the off-diagonal entries.
That kernel is exactly symmetric on every path (the whole matrix and the diagonal tiles of
:func:`mlp_kernels_blocked` are mirrored from their upper triangle, strips are written with their
transposes, quadrature outputs are symmetrized). Off the diagonal, two distinct but nearly parallel inputs lose about
:math:`\sqrt{\epsilon}` of their angle in float32 (the Gram matrix cannot resolve it); use float64
for such inputs. Inner products run at precision HIGHEST.

Speed (same formulas, same accuracy). float32 angles use an octant-reduced polynomial arctangent
(:func:`_atan2_nonneg`, within 2 ulps of pi of libm's) that XLA vectorizes, where its float32
``atan2`` on CPU is a scalar call. On CPU the closed-form kernel of a set with itself is computed in
strips of about 128 rows, each against the cyclically next half of the points and written with its
transpose: half the Gram products and half the recursion, every intermediate in cache, the result
exactly symmetric; cross kernels go by strips too. On a 2-core CPU the depth-3 ReLU NNGP and NTK
of 2000 and 4000 inputs of 784 dims take 0.07 s and 0.28 s, 1.6-2.0x less than neural-tangents
0.6.5 on jax 0.4.25 (``python -m benchmarks.ntk_kernels`` prints the ratios on its machine).

Reference: Jacot, Gabriel & Hongler, "Neural Tangent Kernel", NeurIPS 2018, arXiv:1806.07572;
Lee et al. 2018 (arXiv:1711.00165) for the NNGP; Cho & Saul 2009 for the arc-cosine kernel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, ArrayLike, Float

HIGHEST = jax.lax.Precision.HIGHEST

Activation = str | Callable[[jax.Array], jax.Array]
Parametrization = Literal["ntk", "standard"]

#: Named activations. ``relu``, ``erf``, ``identity``, ``leaky_relu``, ``abs``, ``sin`` and ``cos``
#: have closed-form kernels; the others use quadrature (see the module docstring). ``gelu`` is the
#: exact (erf) GeLU.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "identity": lambda x: x,
    "leaky_relu": jax.nn.leaky_relu,  # negative slope 0.01
    "abs": jnp.abs,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tanh": jnp.tanh,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
}


class Kernels(NamedTuple):
  r"""The NNGP kernel :math:`\Sigma^L` and the NTK :math:`\Theta^L` (``None`` when not
  requested)."""

  nngp: jax.Array | np.ndarray | None
  ntk: jax.Array | np.ndarray | None


def activation_fn(activation: Activation) -> Callable[[jax.Array], jax.Array]:
  """The elementwise function of a name of :data:`ACTIVATIONS`, or a callable returned as is."""
  if callable(activation):
    return activation
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation: unknown name {activation!r}; known: {sorted(ACTIVATIONS)}, "
                     "or pass an elementwise callable")
  return ACTIVATIONS[activation]


# ----------------------------------------------------------------------------------------------
# Validation: host side, before any compute.


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_inputs(name: str, x) -> None:
  shape = np.shape(x)
  if len(shape) != 2:
    raise ValueError(f"{name}: expected a 2-D array (num_points, num_features), got shape {shape}")
  if shape[0] == 0 or shape[1] == 0:
    raise ValueError(f"{name}: empty input of shape {shape}")
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise ValueError(f"{name}: expected a floating dtype, got {jnp.result_type(x)}")
  if _is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
    raise ValueError(f"{name}: contains NaN or infinite values")


def _check_scale(name: str, value) -> None:
  if np.ndim(value) != 0:
    raise ValueError(f"{name}: expected a scalar, got shape {np.shape(value)}")
  if _is_concrete(value):
    v = float(value)
    if not math.isfinite(v) or v < 0:
      raise ValueError(f"{name}: must be finite and >= 0, got {v}")


class _Arch(NamedTuple):
  """The static (hashable) part of an architecture; sigma_w and sigma_b stay traced."""

  depth: int
  activation: Activation
  parametrization: str
  hidden_widths: tuple[int, ...] | None
  quadrature_order: int | None  # None: chosen by _resolve_order


def _check_arch(depth, activation, sigma_w, sigma_b, parametrization, hidden_widths,
                quadrature_order) -> _Arch:
  if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
    raise ValueError(f"depth: expected an integer >= 1 (number of dense layers), got {depth!r}")
  activation_fn(activation)
  _check_scale("sigma_w", sigma_w)
  _check_scale("sigma_b", sigma_b)
  if parametrization not in ("ntk", "standard"):
    raise ValueError(f"parametrization: expected 'ntk' or 'standard', got {parametrization!r}")
  if quadrature_order is not None and (
      isinstance(quadrature_order, bool) or not isinstance(quadrature_order, (int, np.integer))
      or quadrature_order < 2):
    raise ValueError(f"quadrature_order: expected None (automatic) or an integer >= 2, got "
                     f"{quadrature_order!r}")
  if parametrization == "standard" and hidden_widths is None:
    raise ValueError(f"hidden_widths: the standard parametrization's NTK needs the {depth - 1} "
                     "hidden widths")
  if hidden_widths is not None:
    hidden_widths = tuple(int(n) for n in hidden_widths)
    if len(hidden_widths) != depth - 1 or any(n < 1 for n in hidden_widths):
      raise ValueError(f"hidden_widths: expected {depth - 1} positive widths, got {hidden_widths}")
  if parametrization == "ntk":
    hidden_widths = None  # unused: one compiled program for every width
  if isinstance(activation, str) and activation in CLOSED_FORM:
    quadrature_order = 2  # unused
  return _Arch(int(depth), activation, parametrization, hidden_widths,
               None if quadrature_order is None else int(quadrature_order))


def _check_pair(x1, x2) -> None:
  _check_inputs("x1", x1)
  if x2 is not None:
    _check_inputs("x2", x2)
    if np.shape(x1)[1] != np.shape(x2)[1]:
      raise ValueError(f"x2: feature dimension {np.shape(x2)[1]} does not match x1's "
                       f"{np.shape(x1)[1]}")
    if jnp.result_type(x1) != jnp.result_type(x2):
      raise ValueError(f"x2: dtype {jnp.result_type(x2)} does not match x1's {jnp.result_type(x1)}")


# ----------------------------------------------------------------------------------------------
# Gaussian expectations E[phi(u) phi(v)] and E[phi'(u) phi'(v)] of one layer.


def _safe_sqrt(x: jax.Array) -> jax.Array:
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1)), 0)


#: Coefficients c_k of atan(t) ~ t * sum_k c_k t^{2k} on [0, 1]: a weighted least-squares fit
#: (iteratively reweighted towards the max error, on 40,001 Chebyshev points) rounded to float32.
#: Max error 5.8e-9 in exact arithmetic, 9.3e-8 (1.6 ulp of pi/4) evaluated in float32 by Horner's
#: rule (asserted in ``tests/test_ntk_analytic.py``); libm's atanf is within 1 ulp.
_ATAN_COEFFS = (0.9999998807907104, -0.33332598209381104, 0.19985906779766083,
                -0.14161229133605957, 0.10498946905136108, -0.07234857976436615,
                0.039781227707862854, -0.014401358552277088, 0.0024567244108766317)


#: Taylor coefficients (-1)^k / (2k + 1) of atan(t) = t * sum_k c_k t^{2k}; 14 terms reach 1.1e-16
#: relative on |t| <= tan(pi/12) = 0.268, the range left by :func:`_atan_unit`'s reduction.
_ATAN_TAYLOR = tuple((-1) ** k / (2 * k + 1) for k in range(14))
_TAN_PI_12 = 2 - math.sqrt(3)


def _atan_unit(t: jax.Array) -> jax.Array:
  r""":math:`\arctan t` for :math:`t \in [0, 1]` by plain arithmetic (no transcendental call).

  float32: the polynomial :data:`_ATAN_COEFFS`. float64: for :math:`t > \tan(\pi/12)`,
  :math:`\arctan t = \pi/6 + \arctan\frac{\sqrt3\, t - 1}{\sqrt3 + t}` (the argument then lies in
  :math:`[-\tan(\pi/12), \tan(\pi/12)]`), and the Taylor series :data:`_ATAN_TAYLOR` by Horner's
  rule: within 4 ulps of libm's (asserted in ``tests/test_ntk_analytic.py``).
  """
  if t.dtype == jnp.float32:
    coeffs, big = _ATAN_COEFFS, None
  else:
    coeffs = _ATAN_TAYLOR
    s3 = math.sqrt(3.0)
    big = t > _TAN_PI_12
    t = jnp.where(big, (s3 * t - 1) / (s3 + t), t)
  z = t * t
  p = jnp.asarray(coeffs[-1], t.dtype)
  for c in coeffs[-2::-1]:
    p = p * z + c
  a = t * p
  return a if big is None else jnp.where(big, jnp.pi / 6, 0) + a


def _atan2_nonneg(y: jax.Array, x: jax.Array) -> jax.Array:
  r""":math:`\operatorname{atan2}(y, x) \in [0, \pi]` for :math:`y \ge 0`, by plain arithmetic.

  Octant reduction (:math:`t = \min(y, |x|) / \max(y, |x|) \in [0, 1]`), :func:`_atan_unit`, then
  :math:`\pi/2 - a` where :math:`y > |x|` and :math:`\pi - a` where :math:`x < 0` (sign bit, as
  atan2 treats -0). Exactly 0 for y = 0 <= x (the diagonal), pi for y = 0 > x.

  Why not ``jnp.arctan2``: on XLA:CPU its float64 code, fused into the kernel recursion, returned
  wrong angles for some inputs (an NTK of two equal rows came back [[0.93, 1.73], [1.73, 0.93]],
  non-PSD, at depth 5; right under ``--xla_cpu_max_isa=SSE4_2``, with jit or a different fusion); its
  float32 version is a scalar call costing about 15 elementwise adds. Adds, multiplies, a divide and
  selects are compiled right everywhere and vectorize.
  """
  ax = jnp.abs(x)
  hi = jnp.maximum(y, ax)
  a = _atan_unit(jnp.minimum(y, ax) / jnp.where(hi > 0, hi, 1))
  a = jnp.where(y > ax, jnp.pi / 2 - a, a)
  return jnp.where(jnp.signbit(x), jnp.pi - a, a)


def _relu(q11, q22, q12, det):
  del q11, q22
  s = _safe_sqrt(det)
  theta = _atan2_nonneg(s, q12)  # exactly 0 where det == 0 and q12 >= 0 (the diagonal)
  return (s + (jnp.pi - theta) * q12) / (2 * jnp.pi), (jnp.pi - theta) / (2 * jnp.pi)


def _erf(q11, q22, q12, det):
  # (2/pi) arcsin(2 q12 / sqrt((1 + 2 q11)(1 + 2 q22))) as an angle: (1 + 2 q11)(1 + 2 q22) - 4 q12^2
  # = 1 + 2 (q11 + q22) + 4 det, written without the cancellation.
  rest = jnp.sqrt(1 + 2 * (q11 + q22) + 4 * det)
  e = (2 / jnp.pi) * jnp.sign(q12) * _atan2_nonneg(2 * jnp.abs(q12), rest)
  ed = (4 / jnp.pi) / rest
  return e, ed


def _identity(q11, q22, q12, det):
  del q11, q22, det
  return q12, jnp.ones_like(q12)


def _piecewise_linear(pos_slope: float, neg_slope: float):
  r"""Expectations of :math:`\phi(x) = a x` for :math:`x > 0`, :math:`b x` for :math:`x < 0`
  (leaky ReLU, abs): with :math:`\phi(u) = a\,\mathrm{relu}(u) - b\,\mathrm{relu}(-u)`,

  .. math::
      E[\phi(u)\phi(v)] = (a^2 + b^2) \frac{s + (\pi - \theta) q_{12}}{2\pi}
      - 2ab \frac{s - \theta q_{12}}{2\pi}, \qquad
      E[\phi'(u)\phi'(v)] = (a^2 + b^2) \frac{\pi - \theta}{2\pi} + 2ab \frac{\theta}{2\pi},

  :math:`s = \sqrt{\det}`, :math:`\theta = \operatorname{atan2}(s, q_{12})` (Cho & Saul 2009's
  arc-cosine kernel of degree 1 and 0, and the same at the reflected covariance :math:`-q_{12}`)."""
  aa, ab = pos_slope**2 + neg_slope**2, 2 * pos_slope * neg_slope

  def expectations(q11, q22, q12, det):
    del q11, q22
    s = _safe_sqrt(det)
    theta = _atan2_nonneg(s, q12)
    e = (aa * (s + (jnp.pi - theta) * q12) - ab * (s - theta * q12)) / (2 * jnp.pi)
    return e, (aa * (jnp.pi - theta) + ab * theta) / (2 * jnp.pi)

  return expectations


def _sinusoid(freq: float, phase: float):
  r"""Expectations of :math:`\phi(x) = \sin(a x + b)` (``phase`` :math:`b = \pi/2`: cosine):

  .. math::
      E[\phi(u)\phi(v)] = \tfrac12 e^{-a^2 D/2}\big(1 - \cos(2b)\, e^{-2a^2 q_{12}}\big),
      \qquad E[\phi'(u)\phi'(v)] = \tfrac{a^2}{2} e^{-a^2 D/2}\big(1 + \cos(2b)\,
      e^{-2a^2 q_{12}}\big),

  :math:`D = q_{11} + q_{22} - 2 q_{12}` (the variance of :math:`u - v`), from
  :math:`\sin x \sin y = \tfrac12[\cos(x - y) - \cos(x + y)]` and
  :math:`E \cos(w) = e^{-\operatorname{Var} w / 2}`. The bracket is written
  :math:`-\mathrm{expm1}(-2a^2 q_{12}) + 2 \sin^2 b\, e^{-2a^2 q_{12}}` (no cancellation at small
  variance)."""
  a2, c2b, s2b = freq**2, math.cos(2 * phase), 2 * math.sin(phase) ** 2

  def expectations(q11, q22, q12, det):
    del det
    d = jnp.maximum(q11 + q22 - 2 * q12, 0)
    envelope = jnp.exp(-a2 * d / 2) / 2
    t = -2 * a2 * q12
    e = envelope * (-jnp.expm1(t) + s2b * jnp.exp(t))
    return e, a2 * envelope * (1 + c2b * jnp.exp(t))

  return expectations


_CLOSED = {"relu": _relu, "erf": _erf, "identity": _identity,
           "leaky_relu": _piecewise_linear(1.0, 0.01), "abs": _piecewise_linear(1.0, -1.0),
           "sin": _sinusoid(1.0, 0.0), "cos": _sinusoid(1.0, math.pi / 2)}
#: Activations with closed-form expectations.
CLOSED_FORM = tuple(_CLOSED)


#: Truncation of the Gaussian at |z| <= 9 standard deviations (the mass beyond is 2e-19).
_TAIL_SIGMAS = 9.0


def _legendre(order: int, dtype) -> tuple[jax.Array, jax.Array]:
  """Gauss-Legendre nodes and weights on [-1, 1]."""
  nodes, weights = np.polynomial.legendre.leggauss(order)
  return jnp.asarray(nodes, dtype), jnp.asarray(weights, dtype)


def _sinh_rule(lo, hi, nodes, weights):
  r"""Points :math:`x = \sinh\tau` and weights :math:`w\,\cosh\tau\,d\tau` of Gauss-Legendre in
  :math:`\tau \in [\operatorname{asinh} lo, \operatorname{asinh} hi]` (``lo``, ``hi`` with a
  trailing node axis of size 1): nodes dense near 0, at the activation's unit scale, and
  geometrically spread out to the Gaussian's tails."""
  lead = (1,) * (jnp.ndim(lo) - 1)
  nodes, weights = nodes.reshape(lead + (-1,)), weights.reshape(lead + (-1,))
  t0, t1 = jnp.arcsinh(lo), jnp.arcsinh(hi)
  mid, half = (t0 + t1) / 2, (t1 - t0) / 2
  tau = mid + half * nodes
  # d tau / d node = half is left out: every sum is divided by the rule's own mass.
  return jnp.sinh(tau), weights * jnp.cosh(tau)


def _quadrature(phi, order, q11, q22, q12, det, on_diag):
  r""":math:`E[\phi(u)\phi(v)]` and :math:`E[\phi'(u)\phi'(v)]` by a sinh-mapped Gauss-Legendre
  rule on the conditional decomposition of the bivariate normal.

  Outer: :math:`u \sim N(0, q_{11})` on :math:`[-9\sqrt{q_{11}}, 9\sqrt{q_{11}}]`; inner:
  :math:`v \mid u \sim N(m, r^2)`, :math:`m = (q_{12}/q_{11})\, u`, :math:`r^2 = \det/q_{11}`, on
  :math:`[m - 9r, m + 9r]`; both in the variable :math:`\tau = \operatorname{asinh}(\cdot)`, so
  the nodes resolve the activation at its unit scale around 0 whatever the variance (Gauss-Hermite
  in :math:`z = u/\sqrt q` does not: a saturating activation's step at :math:`|z| \lesssim
  1/\sqrt q` falls between its nodes, 0.86 wrong for erf at q = 100). Each sum is normalized by the
  rule's own Gaussian mass, so truncation and weight errors cancel to first order and the limits
  :math:`r \to 0` (parallel inputs, the diagonal) and :math:`q_{11} \to 0` are exact: the inner
  average becomes :math:`\phi(m)`. ``order`` nodes per dimension; the inner sum runs over chunks of
  at most 8 nodes in a scan, so memory is a few kernel-sized arrays.
  """
  dphi = lambda z: jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
  nodes, weights = _legendre(order, q12.dtype)
  shape = jnp.broadcast_shapes(q11.shape, q22.shape, q12.shape)
  q11, q22, q12, det = (jnp.broadcast_to(t, shape) for t in (q11, q22, q12, det))
  a = _safe_sqrt(q11)
  pos = q11 > 0
  slope = jnp.where(pos, q12 / jnp.where(pos, q11, 1), 0)  # m = slope * u
  r = jnp.where(pos, _safe_sqrt(det / jnp.where(pos, q11, 1)), _safe_sqrt(q22))
  r = jnp.where(on_diag, 0, r)
  lift = lambda t: t[..., None]
  chunk = max(k for k in range(1, 9) if order % k == 0)
  zero = jnp.zeros(shape, q12.dtype)
  u_all, wu_all = _sinh_rule(lift(-_TAIL_SIGMAS * a), lift(_TAIL_SIGMAS * a), nodes, weights)
  # Gaussian weight exp(-u^2 / 2 q11); where q11 == 0 every node is u = 0 and the weights are equal.
  zu = jnp.where(lift(pos), u_all / lift(jnp.where(pos, a, 1)), 0)
  wu_all = wu_all * jnp.exp(-zu * zu / 2)
  rpos = lift(r > 0)
  rsafe = lift(jnp.where(r > 0, r, 1))

  def outer(acc, k):
    u = jnp.take(u_all, k, axis=-1)
    wu = jnp.take(wu_all, k, axis=-1)
    m = lift(slope * u)
    lo, hi = m - _TAIL_SIGMAS * lift(r), m + _TAIL_SIGMAS * lift(r)

    def inner(acc_in, chunk_nodes_weights):
      y, wy = chunk_nodes_weights
      v, wv = _sinh_rule(lo, hi, y, wy)
      zv = jnp.where(rpos, (v - m) / rsafe, 0)
      wv = wv * jnp.exp(-zv * zv / 2)
      return (acc_in[0] + jnp.sum(wv * phi(v), axis=-1), acc_in[1] + jnp.sum(wv * dphi(v), axis=-1),
              acc_in[2] + jnp.sum(wv, axis=-1)), None

    (e_v, ed_v, mass_v), _ = jax.lax.scan(inner, (zero, zero, zero),
                                          (nodes.reshape(-1, chunk), weights.reshape(-1, chunk)))
    wu_n = wu / mass_v
    return (acc[0] + wu_n * phi(u) * e_v, acc[1] + wu_n * dphi(u) * ed_v, acc[2] + wu), None

  (e, ed, mass), _ = jax.lax.scan(outer, (zero, zero, zero), jnp.arange(order))
  return e / mass, ed / mass


def _quadrature_diag(phi, order, q):
  r""":math:`E[\phi(u)^2]` and :math:`E[\phi'(u)^2]`, :math:`u \sim N(0, q)`: the outer rule of
  :func:`_quadrature` alone (its inner average is :math:`\phi(u)` when :math:`r = 0`)."""
  dphi = lambda z: jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
  nodes, weights = _legendre(order, q.dtype)
  a = _safe_sqrt(q)[..., None]
  u, w = _sinh_rule(-_TAIL_SIGMAS * a, _TAIL_SIGMAS * a, nodes, weights)
  z = jnp.where(a > 0, u / jnp.where(a > 0, a, 1), 0)
  w = w * jnp.exp(-z * z / 2)
  mass = jnp.sum(w, axis=-1)
  return jnp.sum(w * phi(u) ** 2, axis=-1) / mass, jnp.sum(w * dphi(u) ** 2, axis=-1) / mass


def _closed_form(arch: _Arch) -> bool:
  return isinstance(arch.activation, str) and arch.activation in _CLOSED


def _expectations(arch: _Arch, q11, q22, q12, on_diag):
  """Layer expectations; where ``on_diag`` the pair is one point: q12 = q11 and det = 0 exactly.

  ``on_diag=True`` (the Python constant): every pair is one point, and only q11 is read.
  """
  if on_diag is True:
    if _closed_form(arch):
      return _CLOSED[arch.activation](q11, q11, q11, jnp.zeros_like(q11))
    return _quadrature_diag(activation_fn(arch.activation), arch.quadrature_order, q11)
  q12 = jnp.where(on_diag, q11, q12)
  det = jnp.where(on_diag, 0, jnp.maximum(q11 * q22 - q12 * q12, 0))
  if _closed_form(arch):
    return _CLOSED[arch.activation](q11, q22, q12, det)
  return _quadrature(activation_fn(arch.activation), arch.quadrature_order, q11, q22, q12, det,
                     on_diag)


# ----------------------------------------------------------------------------------------------
# The recursion.


def _symmetrize(k: jax.Array, same) -> jax.Array:
  if same is False:
    return k
  return jnp.where(same, (k + k.T) / 2, k)


def _coefficients(arch: _Arch, n0: int, sigma_w, sigma_b, dtype):
  """sigma_w^2, sigma_b^2 and the NTK's weight / bias factors c_w(l), c_b of layer l + 1."""
  sw2 = jnp.asarray(sigma_w, dtype) ** 2
  sb2 = jnp.asarray(sigma_b, dtype) ** 2
  if arch.parametrization == "ntk":
    return sw2, sb2, (lambda l: sw2), sb2
  widths = (n0,) + arch.hidden_widths
  return sw2, sb2, (lambda l: jnp.asarray(widths[l], dtype)), jnp.ones((), dtype)


def _recursion(arch: _Arch, x1, x2, same, sigma_w, sigma_b, diag_offset=0,
               symmetrize: bool = True) -> tuple[jax.Array, jax.Array]:
  """NNGP and NTK of rows x1 against rows x2; ``same`` (bool or traced bool) says x1 is x2.

  With ``diag_offset`` (int or traced), entry (r, c) is a point with itself where
  ``c == r + diag_offset`` and ``same`` holds (rows of a strip of a kernel of a set with itself);
  ``symmetrize=False`` skips the quadrature outputs' symmetrization (the caller mirrors instead).
  """
  n0 = x1.shape[1]
  sw2, sb2, cw, cb = _coefficients(arch, n0, sigma_w, sigma_b, x1.dtype)

  gram = jnp.matmul(x1, x2.T, precision=HIGHEST)

  if same is False:
    on_diag = jnp.zeros(gram.shape, bool)
  elif isinstance(diag_offset, int) and diag_offset == 0:
    on_diag = jnp.eye(gram.shape[0], gram.shape[1], dtype=bool) & same
  else:
    rows = jax.lax.broadcasted_iota(jnp.int32, gram.shape, 0)
    on_diag = (jax.lax.broadcasted_iota(jnp.int32, gram.shape, 1) == rows + diag_offset) & same
  e11 = jnp.sum(x1 * x1, axis=1, keepdims=True) / n0
  # For a set with itself, x2's norms are x1's: two reductions may round differently.
  e22 = e11.T if same is True else jnp.sum(x2 * x2, axis=1, keepdims=True).T / n0
  e12 = jnp.where(on_diag, e11, gram / n0)
  q11, q22, q12 = (sw2 * e + sb2 for e in (e11, e22, e12))
  ntk = cw(0) * e12 + cb
  n1 = q11.shape[0]
  for l in range(1, arch.depth):
    e12, ed12 = _expectations(arch, q11, q22, q12, on_diag)
    if symmetrize and not _closed_form(arch):  # the closed forms are symmetric in (x, x')
      e12, ed12 = _symmetrize(e12, same), _symmetrize(ed12, same)
    # Both diagonals in one call (one quadrature program, not two); x2's is x1's when same is True.
    q_diag = q11[:, 0] if same is True else jnp.concatenate([q11[:, 0], q22[0]])
    e_diag, _ = _expectations(arch, q_diag, q_diag, q_diag, True)
    e11 = e_diag[:n1, None]
    e22 = e11.T if same is True else e_diag[None, n1:]
    ntk = cw(l) * e12 + cb + sw2 * ed12 * ntk
    q11, q22, q12 = (sw2 * e + sb2 for e in (e11, e22, e12))
  return q12, ntk


#: Rows per strip of :func:`_strips` on CPU (about; the exact count divides the number of points
#: when it can): a strip's recursion (a dozen (rows, n) intermediates) stays in cache, where the
#: whole-matrix recursion writes each intermediate to freshly allocated memory. None on other
#: backends, whose compilers fuse the whole-matrix recursion into one pass.
CPU_STRIP_ROWS = 128


def _strip_rows_for(x) -> int | None:
  try:  # a concrete array knows its devices; a tracer (mlp_kernels under jit/vmap) does not
    platforms = {d.platform for d in x.devices()} if isinstance(x, jax.Array) else set()
  except jax.errors.ConcretizationTypeError:
    platforms = set()
  return CPU_STRIP_ROWS if (platforms or {jax.default_backend()}) == {"cpu"} else None


def _strip_layout(n: int, rows: int, even: bool) -> tuple[int, int]:
  """(number of strips B, rows per strip b) with B * b >= n, b near ``rows``, B even if asked;
  B * b == n whenever a divisor of n in [rows / 2, 3 rows / 2] allows (then no padding)."""
  for b in sorted(range(max(1, rows // 2), rows * 3 // 2 + 1), key=lambda b: abs(b - rows)):
    if n % b == 0 and (not even or (n // b) % 2 == 0):
      return n // b, b
  strips = -(-n // rows)
  strips += strips % 2 if even else 0
  return strips, -(-n // strips)


def _pad_rows(x, n: int):
  return x if x.shape[0] == n else jnp.concatenate([x, jnp.zeros((n - x.shape[0],) + x.shape[1:],
                                                                 x.dtype)])


def _strips(arch: _Arch, x1, x2, same, sigma_w, sigma_b, rows: int):
  """:func:`_recursion` one strip of rows per ``lax.scan`` step, written in place into the result.

  ``same=True`` (static, x1 is x2): with B (even) strips of b rows, strip i is computed against the
  cyclically next ``(B/2 + 1) b`` points only; its (b, b) blocks are written with their transposes.
  That covers every block pair once (the pair at distance B/2 twice, each time with its
  transpose), so it does about half the Gram products and half the recursion, and the result is
  exactly symmetric (diagonal blocks are mirrored from their upper triangle). Otherwise (x2 given,
  or a traced ``same``: tiles of :func:`mlp_kernels_blocked`), strip i is computed against all of
  x2. Inputs are zero-padded to whole strips when needed (the result is then sliced).
  """
  n1, n2 = x1.shape[0], x2.shape[0]
  symmetric = same is True
  num, b = _strip_layout(n1, rows, even=symmetric)
  if symmetric and num < 4:  # too few strips for the half to pay
    return _mirrored(_recursion(arch, x1, x2, same, sigma_w, sigma_b), same)
  x1p = _pad_rows(x1, num * b)
  m1 = num * b
  half = num // 2
  width = (half + 1) * b
  x2p = jnp.concatenate([x1p, x1p[:width]]) if symmetric else x2
  m2 = m1 if symmetric else n2
  lower = np.tril(np.ones((b, b), bool), -1)

  def step(carry, i):
    r = i * b
    xs = jax.lax.dynamic_slice_in_dim(x1p, r, b)
    if symmetric:
      k = _recursion(arch, xs, jax.lax.dynamic_slice_in_dim(x2p, r, width), np.bool_(True),
                     sigma_w, sigma_b, symmetrize=False)
    else:
      k = _recursion(arch, xs, x2p, same, sigma_w, sigma_b, diag_offset=r, symmetrize=False)
    out = []
    for acc, strip in zip(carry, k):
      if not symmetric:
        out.append(jax.lax.dynamic_update_slice(acc, strip, (r, jnp.zeros_like(r))))
        continue
      first = strip[:, :b]
      strip = jnp.concatenate([jnp.where(lower, first.T, first), strip[:, b:]], axis=1)
      strip_t = strip.T  # one transpose per strip, not one per block
      for d in range(half + 1):
        c = ((i + d) % num) * b
        acc = jax.lax.dynamic_update_slice(acc, strip_t[d * b:(d + 1) * b], (c, r))
        acc = jax.lax.dynamic_update_slice(acc, strip[:, d * b:(d + 1) * b], (r, c))
      out.append(acc)
    return tuple(out), None

  zeros = jnp.zeros((m1, m2), x1.dtype)
  (nngp, ntk), _ = jax.lax.scan(step, (zeros, zeros), jnp.arange(num, dtype=jnp.int32))
  if m1 != n1:
    cols = n1 if symmetric else n2
    nngp, ntk = nngp[:n1, :cols], ntk[:n1, :cols]
  return nngp, ntk


def _kernels(arch: _Arch, x1, x2, same, sigma_w, sigma_b, strip_rows: int | None):
  """Whole-matrix recursion, or by strips when ``strip_rows`` is given and x1 spans several.

  A kernel of a set with itself by quadrature stays whole: its symmetrization (k + k^T) / 2 averages
  the quadrature's asymmetry away, where mirroring strips would keep one side's.
  """
  quadrature_self = not _closed_form(arch) and same is not False
  if strip_rows is None or x1.shape[0] < 2 * strip_rows or quadrature_self:
    return _mirrored(_recursion(arch, x1, x2, same, sigma_w, sigma_b), same)
  return _strips(arch, x1, x2, same, sigma_w, sigma_b, strip_rows)


def _mirrored(kernels, same):
  """A kernel of a set with itself (``same is True``) with its strict lower triangle replaced by
  the upper one's transpose: exactly symmetric.

  The recursion is symmetric in exact arithmetic but not to the bit (XLA:CPU rounds (i, j) and
  (j, i) differently: 1-ulp asymmetric kernels for sigma_b != 0 below 256 points). A plain
  ``where(lower, k.T, k)`` is fused with the recursion, which is then recomputed at the transposed
  index with other roundings; as the carry of a loop the kernels are materialized first. The loop
  runs twice (mirroring is idempotent) because XLA inlines loops of one trip.
  """
  if same is not True:
    return kernels
  n = kernels[0].shape[0]
  lower = np.tril(np.ones((n, n), bool), -1)
  mirror = lambda _, ks: tuple(jnp.where(lower, k.T, k) for k in ks)
  return jax.lax.fori_loop(0, 2, mirror, tuple(kernels))



def _diag_recursion(arch: _Arch, x, sigma_w, sigma_b) -> tuple[jax.Array, jax.Array]:
  n0 = x.shape[1]
  sw2, sb2, cw, cb = _coefficients(arch, n0, sigma_w, sigma_b, x.dtype)
  e = jnp.sum(x * x, axis=1) / n0
  q = sw2 * e + sb2
  ntk = cw(0) * e + cb
  for l in range(1, arch.depth):
    e, ed = _expectations(arch, q, q, q, True)
    ntk = cw(l) * e + cb + sw2 * ed * ntk
    q = sw2 * e + sb2
  return q, ntk


@functools.partial(jax.jit, static_argnames=("arch", "same", "strip_rows"))
def _kernels_jit(x1, x2, sigma_w, sigma_b, *, arch: _Arch, same: bool,
                 strip_rows: int | None = None):
  return Kernels(*_kernels(arch, x1, x2, same, sigma_w, sigma_b, strip_rows))


@functools.partial(jax.jit, static_argnames=("arch",))
def _diag_jit(x, sigma_w, sigma_b, *, arch: _Arch):
  return Kernels(*_diag_recursion(arch, x, sigma_w, sigma_b))


#: Orders :func:`_resolve_order` tries, and the order used when the inputs are traced.
QUADRATURE_ORDERS = (32, 64, 128, 256)
TRACED_QUADRATURE_ORDER = 128


def _default_rtol(dtype) -> float:
  return 1e-6 if jnp.dtype(dtype) == jnp.float64 else 1e-5


def _probe_rows(x: np.ndarray, count: int = 4) -> np.ndarray:
  """Indices of the ``count`` largest-norm rows (the largest variances, the hardest integrands)
  and ``count`` evenly spaced ones."""
  norms = np.sum(np.asarray(x, np.float64) ** 2, axis=1)
  spread = np.linspace(0, x.shape[0] - 1, min(count, x.shape[0])).astype(int)
  return np.unique(np.concatenate([np.argsort(norms)[-count:], spread]))


def _resolve_order(arch: _Arch, x1, x2, sigma_w, sigma_b, rtol: float | None) -> _Arch:
  """Fix an automatic quadrature order from an error estimate on a probe of the inputs.

  For n in :data:`QUADRATURE_ORDERS`, the NNGP and NTK of up to 16 probe points (the largest-norm
  rows and a spread of the others, of x1 and x2) are computed at orders n and 2n; the first n whose
  kernels move by at most ``rtol`` of the kernel scale is used (the rule converges exponentially
  for analytic activations, so order 2n is far more accurate than n and the difference estimates
  n's error). Traced inputs or scales cannot be probed: :data:`TRACED_QUADRATURE_ORDER`.

  Raises:
    ValueError: naming ``activation``, with the accuracy reached at the largest order, when no
      order meets ``rtol``.
  """
  if _closed_form(arch) or arch.quadrature_order is not None:
    return arch
  if not all(_is_concrete(t) for t in (x1, x2, sigma_w, sigma_b)):
    return arch._replace(quadrature_order=TRACED_QUADRATURE_ORDER)
  x1 = np.asarray(x1)
  probe = x1[_probe_rows(x1)]
  if x2 is not None:
    probe = np.concatenate([probe, np.asarray(x2)[_probe_rows(np.asarray(x2))]])
  rtol = _default_rtol(probe.dtype) if rtol is None else float(rtol)
  probe = jnp.asarray(probe)

  def kernels(order):
    return _kernels_jit(probe, probe, sigma_w, sigma_b, arch=arch._replace(quadrature_order=order),
                        same=True)

  prev, err = kernels(QUADRATURE_ORDERS[0]), math.inf
  for n, n2 in zip(QUADRATURE_ORDERS, QUADRATURE_ORDERS[1:] + (2 * QUADRATURE_ORDERS[-1],)):
    nxt = kernels(n2)
    err = max(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))
              for a, b in zip(prev, nxt))
    if err <= rtol:
      return arch._replace(quadrature_order=n)
    prev = nxt
  q_in = float(jnp.max(jnp.asarray(sigma_w) ** 2 * jnp.sum(probe**2, 1) / probe.shape[1]
                       + jnp.asarray(sigma_b) ** 2))
  q_out = float(jnp.max(jnp.diag(nxt.nngp)))
  raise ValueError(
      f"activation: quadrature reaches only {err:.1e} relative accuracy at order "
      f"{QUADRATURE_ORDERS[-1]} on these inputs (quadrature_rtol={rtol:.0e}; pre-activation "
      f"variances up to {max(q_in, q_out):.3g}); use a closed-form activation {CLOSED_FORM}, "
      "smaller inputs or scales, or a larger quadrature_rtol")


# ----------------------------------------------------------------------------------------------
# Public API.


def mlp_kernels(
    x1: Float[ArrayLike, "n1 d"],
    x2: Float[ArrayLike, "n2 d"] | None = None,
    *,
    depth: int,
    activation: Activation = "relu",
    sigma_w: float | ArrayLike = 1.0,
    sigma_b: float | ArrayLike = 0.0,
    parametrization: Parametrization = "ntk",
    hidden_widths: Sequence[int] | None = None,
    quadrature_order: int | None = None,
    quadrature_rtol: float | None = None,
) -> Kernels:
  r"""Infinite-width NNGP :math:`\Sigma^L(x_1, x_2)` and NTK :math:`\Theta^L(x_1, x_2)` of an MLP.

  .. math::
      \Theta^{l+1}(x, x') = \Sigma^{l+1}(x, x') + \dot\Sigma^{l+1}(x, x')\,\Theta^l(x, x'),
      \qquad \Theta^1 = \Sigma^1 = \sigma_w^2 \langle x, x' \rangle / n_0 + \sigma_b^2

  (NTK parametrization; see the module docstring for the standard one).

  Args:
    x1: inputs, one per row; float32 or float64 (the kernels have the same dtype).
    x2: second set of inputs, or ``None`` for the kernel of ``x1`` with itself (symmetric, with an
      exact diagonal).
    depth: number of dense layers :math:`L` (``depth - 1`` hidden layers; 1 is a linear model).
    activation: a name of :data:`ACTIVATIONS` or an elementwise callable (by quadrature).
    sigma_w: weight scale :math:`\sigma_w` (may be traced, e.g. vmapped).
    sigma_b: bias scale :math:`\sigma_b` (may be traced).
    parametrization: ``"ntk"`` or ``"standard"``.
    hidden_widths: the ``depth - 1`` hidden widths; only the standard parametrization's NTK uses
      them.
    quadrature_order: Gauss-Legendre nodes per dimension for activations without a closed form
      (see the module docstring), or ``None`` to choose it from an error estimate on a probe of the
      inputs (:func:`_resolve_order`; :data:`TRACED_QUADRATURE_ORDER` under tracing).
    quadrature_rtol: the accuracy the automatic order must reach, relative to the kernel scale
      (default 1e-6 in float64, 1e-5 in float32); ignored for closed forms and explicit orders.

  Returns:
    ``Kernels(nngp, ntk)``, each of shape ``(n1, n2)`` (``(n1, n1)`` when ``x2`` is None).

  Raises:
    ValueError: naming the argument, for non-2-D, empty or non-finite inputs, mismatched feature
      dimensions, negative scales, unknown activations or parametrizations, bad widths, and when
      no quadrature order reaches ``quadrature_rtol``.

  Example:
    >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    >>> mlp_kernels(x, depth=3, activation="relu", sigma_w=1.0, sigma_b=0.1).ntk.shape
    (2, 2)

  Reference: Jacot et al. 2018, arXiv:1806.07572, Theorem 1 and Proposition 1.
  """
  arch = _check_arch(depth, activation, sigma_w, sigma_b, parametrization, hidden_widths,
                     quadrature_order)
  _check_pair(x1, x2)
  arch = _resolve_order(arch, x1, x2, sigma_w, sigma_b, quadrature_rtol)
  x1 = jnp.asarray(x1)
  same = x2 is None
  x2 = x1 if same else jnp.asarray(x2)
  return _kernels_jit(x1, x2, sigma_w, sigma_b, arch=arch, same=same,
                      strip_rows=_strip_rows_for(x1))


def mlp_kernels_diag(
    x: Float[ArrayLike, "n d"],
    *,
    depth: int,
    activation: Activation = "relu",
    sigma_w: float | ArrayLike = 1.0,
    sigma_b: float | ArrayLike = 0.0,
    parametrization: Parametrization = "ntk",
    hidden_widths: Sequence[int] | None = None,
    quadrature_order: int | None = None,
    quadrature_rtol: float | None = None,
) -> Kernels:
  r"""The diagonals :math:`\Sigma^L(x, x)` and :math:`\Theta^L(x, x)` alone, in :math:`O(n)`.

  Same arguments as :func:`mlp_kernels`; equal (to rounding) to the diagonal of ``mlp_kernels(x)``.

  Returns:
    ``Kernels(nngp, ntk)``, each of shape ``(n,)``.

  Example:
    >>> mlp_kernels_diag(jnp.ones((3, 2)), depth=2).ntk.shape
    (3,)

  Reference: Jacot et al. 2018, arXiv:1806.07572.
  """
  arch = _check_arch(depth, activation, sigma_w, sigma_b, parametrization, hidden_widths,
                     quadrature_order)
  _check_inputs("x", x)
  arch = _resolve_order(arch, x, None, sigma_w, sigma_b, quadrature_rtol)
  return _diag_jit(jnp.asarray(x), sigma_w, sigma_b, arch=arch)


@functools.lru_cache(maxsize=64)
def _tile_program(arch: _Arch, block_size: int, symmetric: bool, which: str,
                  devices: tuple[jax.Device, ...] | None):
  """One compiled program computing a group of (block_size, block_size) tiles, one per device.

  On CPU each tile is itself computed in strips (:func:`_strips`); diagonal tiles of a
  symmetric kernel are mirrored from their upper triangle (exactly symmetric on every backend).
  """
  platforms = {d.platform for d in devices} if devices else {jax.default_backend()}
  inner = CPU_STRIP_ROWS if platforms == {"cpu"} else None
  lower = np.tril(np.ones((block_size, block_size), bool), -1)

  def tile(x1p, x2p, sigma_w, sigma_b, i, j):
    b1 = jax.lax.dynamic_slice_in_dim(x1p, i * block_size, block_size)
    b2 = jax.lax.dynamic_slice_in_dim(x2p, j * block_size, block_size)
    same = (i == j) if symmetric else False
    kernels = _kernels(arch, b1, b2, same, sigma_w, sigma_b, inner)
    if symmetric:
      kernels = tuple(jnp.where(same & lower, k.T, k) for k in kernels)
    return tuple(k for name, k in zip(("nngp", "ntk"), kernels) if which in (name, "both"))

  group = jax.vmap(tile, in_axes=(None, None, None, None, 0, 0))
  if devices is None:
    return jax.jit(group)
  mesh = Mesh(np.asarray(devices), ("tiles",))
  rep = NamedSharding(mesh, PartitionSpec())
  split = NamedSharding(mesh, PartitionSpec("tiles"))
  return jax.jit(group, in_shardings=(rep, rep, rep, rep, split, split), out_shardings=split)


def mlp_kernels_blocked(
    x1: Float[ArrayLike, "n1 d"],
    x2: Float[ArrayLike, "n2 d"] | None = None,
    *,
    depth: int,
    activation: Activation = "relu",
    sigma_w: float = 1.0,
    sigma_b: float = 0.0,
    parametrization: Parametrization = "ntk",
    hidden_widths: Sequence[int] | None = None,
    quadrature_order: int | None = None,
    quadrature_rtol: float | None = None,
    block_size: int = 4096,
    which: Literal["both", "nngp", "ntk"] = "both",
    devices: Sequence[jax.Device] | None = None,
    out: Kernels | None = None,
) -> Kernels:
  r""":func:`mlp_kernels` computed in ``(block_size, block_size)`` tiles and assembled on the host.

  Device memory is bounded by one tile's recursion (plus the inputs), whatever the number of points:
  a float32 depth-3 ReLU NTK of N = 50,000 inputs needs 10 GB of host memory for the result and,
  with ``block_size=4096``, well under 2 GB of device memory (asserted in
  ``tests/test_ntk_analytic.py``). For the kernel of a set with itself only the tiles on and above
  the diagonal are computed and the others are mirrored, so the result is exactly symmetric. Every
  tile has the same shape (the inputs are zero-padded), so the tile program compiles once.

  Args:
    x1, x2, depth, activation, sigma_w, sigma_b, parametrization, hidden_widths, quadrature_order,
    quadrature_rtol: as in :func:`mlp_kernels` (here ``sigma_w`` and ``sigma_b`` are concrete numbers).
    block_size: tile side.
    which: ``"both"``, ``"nngp"`` or ``"ntk"``: which kernels to bring back to the host.
    devices: ``None`` to run on the default device; a sequence of devices (e.g.
      ``jax.local_devices()``) to run one tile per device at a time, sharded with ``jax.sharding``.
    out: optional preallocated writable arrays (e.g. ``np.memmap``) of shape ``(n1, n2)`` to fill,
      for results larger than host memory; the entries not requested by ``which`` may be ``None``.

  Returns:
    ``Kernels(nngp, ntk)`` as NumPy arrays (``None`` for a kernel not requested).

  Example:
    >>> k = mlp_kernels_blocked(x, depth=3, block_size=2048, which="ntk",
    ...                         devices=jax.local_devices())

  Reference: Jacot et al. 2018, arXiv:1806.07572; neural-tangents' ``batch`` (Novak et al. 2020,
  arXiv:1912.02803) tiles kernels the same way.
  """
  arch = _check_arch(depth, activation, sigma_w, sigma_b, parametrization, hidden_widths,
                     quadrature_order)
  _check_pair(x1, x2)
  arch = _resolve_order(arch, x1, x2, sigma_w, sigma_b, quadrature_rtol)
  if (isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
      or block_size < 1):
    raise ValueError(f"block_size: expected a positive integer, got {block_size!r}")
  if which not in ("both", "nngp", "ntk"):
    raise ValueError(f"which: expected 'both', 'nngp' or 'ntk', got {which!r}")
  if devices is not None:
    devices = tuple(devices)
    if not devices:
      raise ValueError("devices: empty sequence")
  symmetric = x2 is None
  x1 = np.asarray(x1)
  x2 = x1 if symmetric else np.asarray(x2)
  n1, n2 = x1.shape[0], x2.shape[0]
  names = ("nngp", "ntk") if which == "both" else (which,)
  if out is None:
    out = Kernels(*(np.empty((n1, n2), x1.dtype) if name in names else None
                    for name in Kernels._fields))
  for name in names:
    arr = getattr(out, name)
    if arr is None or arr.shape != (n1, n2):
      raise ValueError(f"out: {name} must be a writable array of shape {(n1, n2)}")

  bs = int(min(block_size, max(n1, n2)))
  nb1, nb2 = -(-n1 // bs), -(-n2 // bs)
  pad = lambda x, nb: np.concatenate([x, np.zeros((nb * bs - x.shape[0], x.shape[1]), x.dtype)])
  program = _tile_program(arch, bs, symmetric, which, devices)
  x1p = jnp.asarray(pad(x1, nb1))
  x2p = x1p if symmetric else jnp.asarray(pad(x2, nb2))
  sw, sb = np.asarray(sigma_w, x1.dtype), np.asarray(sigma_b, x1.dtype)
  tiles = [(i, j) for i in range(nb1) for j in range(nb2) if not symmetric or j >= i]
  per_group = 1 if devices is None else len(devices)
  groups = [tiles[g:g + per_group] for g in range(0, len(tiles), per_group)]

  def write(group, results):
    for t, (i, j) in enumerate(group):
      r0, r1, c0, c1 = i * bs, min((i + 1) * bs, n1), j * bs, min((j + 1) * bs, n2)
      for name, res in zip(names, results):
        block = res[t, :r1 - r0, :c1 - c0]
        getattr(out, name)[r0:r1, c0:c1] = block
        if symmetric and i != j:
          getattr(out, name)[c0:c1, r0:r1] = block.T

  pending = None
  for group in groups:
    padded = group + [group[-1]] * (per_group - len(group))
    ii = np.asarray([i for i, _ in padded], np.int32)
    jj = np.asarray([j for _, j in padded], np.int32)
    results = program(x1p, x2p, sw, sb, ii, jj)  # dispatched asynchronously
    if pending is not None:
      write(pending[0], [np.asarray(r) for r in pending[1]])
    pending = (group, results)
  write(pending[0], [np.asarray(r) for r in pending[1]])
  return out
