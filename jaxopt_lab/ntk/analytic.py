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

Expectations: closed forms for ``relu`` (arc-cosine kernel in the atan2 form), ``erf`` and
``identity``; any other elementwise activation (a name of :data:`ACTIVATIONS` or a callable) by a
tensor-product Gauss-Hermite rule of order ``quadrature_order`` on the bivariate normal (Cholesky of
the 2x2 covariance). Quadrature accuracy (float64, asserted in ``tests/test_ntk_analytic.py``)
depends on the smoothness of the activation and on the pre-activation variance q. erf at q ~ 1:
1e-11 (one layer) to 1e-8 (two layers) relative at order 32, machine precision at order 64. tanh,
E[tanh(u)^2] at order 32 / 64: 7e-10 / 3e-15 at q = 0.33, 4e-5 / 1e-7 at q = 1.3, 8e-3 / 5e-4 at q =
5.3 (its complex poles approach the real axis as q grows): raise ``quadrature_order`` for large
variances. relu is the bad case: its kink makes the NNGP error fall only like 1/order (~1e-2 at
order 32) and its step derivative the NTK error like order^{-1/2} (~3e-2 at order 32): use the
closed forms for relu. The default order is 64 (4096 evaluations of phi and phi' per entry and
layer).

On the diagonal of the kernel of a set with itself the angle is set to exactly zero (the 2x2
covariance is singular there), so the float32 diagonal is as accurate as the off-diagonal entries.
That kernel is symmetric to rounding (exactly where ``x @ x.T`` is, as on XLA:CPU; quadrature
outputs are symmetrized); :func:`mlp_kernels_blocked` mirrors tiles and is exactly symmetric on
every backend. Off the diagonal, two distinct but nearly parallel inputs lose about
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

#: Named activations. ``relu``, ``erf`` and ``identity`` have closed-form kernels; the others use
#: Gauss-Hermite quadrature. ``gelu`` is the exact (erf) GeLU.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
    "identity": lambda x: x,
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
  quadrature_order: int


def _check_arch(depth, activation, sigma_w, sigma_b, parametrization, hidden_widths,
                quadrature_order) -> _Arch:
  if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
    raise ValueError(f"depth: expected an integer >= 1 (number of dense layers), got {depth!r}")
  activation_fn(activation)
  _check_scale("sigma_w", sigma_w)
  _check_scale("sigma_b", sigma_b)
  if parametrization not in ("ntk", "standard"):
    raise ValueError(f"parametrization: expected 'ntk' or 'standard', got {parametrization!r}")
  if (isinstance(quadrature_order, bool) or not isinstance(quadrature_order, (int, np.integer))
      or quadrature_order < 2):
    raise ValueError(f"quadrature_order: expected an integer >= 2, got {quadrature_order!r}")
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
  return _Arch(int(depth), activation, parametrization, hidden_widths, int(quadrature_order))


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


def _atan2_nonneg(y: jax.Array, x: jax.Array) -> jax.Array:
  r""":math:`\operatorname{atan2}(y, x) \in [0, \pi]` for :math:`y \ge 0`.

  float32: by octant reduction (:math:`t = \min(y, |x|) / \max(y, |x|) \in [0, 1]`) and the
  polynomial :data:`_ATAN_COEFFS`, then :math:`\pi/2 - a` where :math:`y > |x|` and
  :math:`\pi - a` where :math:`x < 0` (sign bit, as atan2 treats -0): plain arithmetic that XLA
  vectorizes and fuses, where its float32 ``atan2`` on CPU is a scalar call costing about 15
  elementwise adds. Exactly 0 for y = 0 <= x (the diagonal), pi for y = 0 > x. Other dtypes:
  ``jnp.arctan2``.
  """
  if x.dtype != jnp.float32:
    return jnp.arctan2(y, x)
  ax = jnp.abs(x)
  hi = jnp.maximum(y, ax)
  t = jnp.minimum(y, ax) / jnp.where(hi > 0, hi, 1)
  z = t * t
  p = jnp.asarray(_ATAN_COEFFS[-1], x.dtype)
  for c in _ATAN_COEFFS[-2::-1]:
    p = p * z + c
  a = t * p
  a = jnp.where(y > ax, jnp.pi / 2 - a, a)
  return jnp.where(jnp.signbit(x), jnp.pi - a, a)


def _relu(q11, q22, q12, det):
  del q11, q22
  s = _safe_sqrt(det)
  theta = _atan2_nonneg(s, q12)  # exactly 0 where det == 0 and q12 >= 0 (the diagonal)
  return (s + (jnp.pi - theta) * q12) / (2 * jnp.pi), (jnp.pi - theta) / (2 * jnp.pi)


def _erf(q11, q22, q12, det):
  e = (2 / jnp.pi) * jnp.arcsin(jnp.clip(2 * q12 / jnp.sqrt((1 + 2 * q11) * (1 + 2 * q22)), -1, 1))
  # (1 + 2 q11)(1 + 2 q22) - 4 q12^2, written without the cancellation.
  ed = (4 / jnp.pi) / jnp.sqrt(1 + 2 * (q11 + q22) + 4 * det)
  return e, ed


def _identity(q11, q22, q12, det):
  del q11, q22, det
  return q12, jnp.ones_like(q12)


_CLOSED = {"relu": _relu, "erf": _erf, "identity": _identity}
#: Activations with closed-form expectations.
CLOSED_FORM = tuple(_CLOSED)


def _gauss_hermite(order: int, dtype) -> tuple[jax.Array, jax.Array]:
  """Nodes and weights of :math:`E_{z \\sim N(0,1)} f(z) \\approx \\sum_k w_k f(z_k)`."""
  nodes, weights = np.polynomial.hermite_e.hermegauss(order)
  return jnp.asarray(nodes, dtype), jnp.asarray(weights / np.sqrt(2 * np.pi), dtype)


def _quadrature(phi, order, q11, q22, q12, det, on_diag):
  r"""Gauss-Hermite on :math:`u = a z_1,\ v = c z_1 + r z_2`, :math:`a^2 = q_{11}`,
  :math:`c = q_{12}/a`, :math:`r^2 = q_{22} - c^2 = \det / q_{11}` (and :math:`r^2 = q_{22}` when
  :math:`q_{11} = 0`).

  Both sums are scans (the inner one over chunks of at most 8 nodes), so the memory is a few
  kernel-sized arrays, not ``order**2`` of them.
  """
  dphi = lambda z: jax.jvp(phi, (z,), (jnp.ones_like(z),))[1]
  nodes, weights = _gauss_hermite(order, q12.dtype)
  a = _safe_sqrt(q11)
  pos = q11 > 0
  c = jnp.where(on_diag, a, jnp.where(pos, q12 / jnp.where(pos, a, 1), 0))
  r = jnp.where(pos, _safe_sqrt(det / jnp.where(pos, q11, 1)), _safe_sqrt(q22))
  r = jnp.where(on_diag, 0, r)
  shape = jnp.broadcast_shapes(a.shape, c.shape, r.shape)
  c, r = jnp.broadcast_to(c, shape)[..., None], jnp.broadcast_to(r, shape)[..., None]
  chunk = max(k for k in range(1, 9) if order % k == 0)
  lift = (1,) * len(shape) + (chunk,)
  zero = jnp.zeros(shape, q12.dtype)

  def outer(acc, node_weight):
    z1, w1 = node_weight

    def inner(acc_in, chunk_nodes_weights):
      z2, w2 = (t.reshape(lift) for t in chunk_nodes_weights)
      v = c * z1 + r * z2
      return (acc_in[0] + jnp.sum(w2 * phi(v), axis=-1),
              acc_in[1] + jnp.sum(w2 * dphi(v), axis=-1)), None

    (e_v, ed_v), _ = jax.lax.scan(inner, (zero, zero), (nodes.reshape(-1, chunk),
                                                        weights.reshape(-1, chunk)))
    u = a * z1
    return (acc[0] + w1 * phi(u) * e_v, acc[1] + w1 * dphi(u) * ed_v), None

  (e, ed), _ = jax.lax.scan(outer, (zero, zero), (nodes, weights))
  return e, ed


def _closed_form(arch: _Arch) -> bool:
  return isinstance(arch.activation, str) and arch.activation in _CLOSED


def _expectations(arch: _Arch, q11, q22, q12, on_diag):
  """Layer expectations; where ``on_diag`` the pair is one point: q12 = q11 and det = 0 exactly."""
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

  # x x^T is not symmetrized (a transposed add costs more than the whole recursion on a CPU): it is
  # bitwise symmetric on XLA:CPU, and the closed forms keep that symmetry exactly.
  gram = jnp.matmul(x1, x2.T, precision=HIGHEST)
  if same is False:
    on_diag = jnp.zeros(gram.shape, bool)
  elif isinstance(diag_offset, int) and diag_offset == 0:
    on_diag = jnp.eye(gram.shape[0], gram.shape[1], dtype=bool) & same
  else:
    rows = jax.lax.broadcasted_iota(jnp.int32, gram.shape, 0)
    on_diag = (jax.lax.broadcasted_iota(jnp.int32, gram.shape, 1) == rows + diag_offset) & same
  e11 = jnp.sum(x1 * x1, axis=1, keepdims=True) / n0
  e22 = jnp.sum(x2 * x2, axis=1, keepdims=True).T / n0
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
    e_diag, _ = _expectations(arch, q_diag, q_diag, q_diag, jnp.ones(q_diag.shape, bool))
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
    return _recursion(arch, x1, x2, same, sigma_w, sigma_b)
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
    return _recursion(arch, x1, x2, same, sigma_w, sigma_b)
  return _strips(arch, x1, x2, same, sigma_w, sigma_b, strip_rows)


def _diag_recursion(arch: _Arch, x, sigma_w, sigma_b) -> tuple[jax.Array, jax.Array]:
  n0 = x.shape[1]
  sw2, sb2, cw, cb = _coefficients(arch, n0, sigma_w, sigma_b, x.dtype)
  e = jnp.sum(x * x, axis=1) / n0
  q = sw2 * e + sb2
  ntk = cw(0) * e + cb
  true = jnp.ones(q.shape, bool)
  for l in range(1, arch.depth):
    e, ed = _expectations(arch, q, q, q, true)
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
    quadrature_order: int = 64,
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
    quadrature_order: Gauss-Hermite nodes per dimension for activations without a closed form.

  Returns:
    ``Kernels(nngp, ntk)``, each of shape ``(n1, n2)`` (``(n1, n1)`` when ``x2`` is None).

  Raises:
    ValueError: naming the argument, for non-2-D, empty or non-finite inputs, mismatched feature
      dimensions, negative scales, unknown activations or parametrizations, bad widths.

  Example:
    >>> x = jnp.array([[1.0, 0.0], [0.6, 0.8]])
    >>> mlp_kernels(x, depth=3, activation="relu", sigma_w=1.0, sigma_b=0.1).ntk.shape
    (2, 2)

  Reference: Jacot et al. 2018, arXiv:1806.07572, Theorem 1 and Proposition 1.
  """
  arch = _check_arch(depth, activation, sigma_w, sigma_b, parametrization, hidden_widths,
                     quadrature_order)
  _check_pair(x1, x2)
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
    quadrature_order: int = 64,
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
    quadrature_order: int = 64,
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
    x1, x2, depth, activation, sigma_w, sigma_b, parametrization, hidden_widths, quadrature_order:
      as in :func:`mlp_kernels` (here ``sigma_w`` and ``sigma_b`` are concrete numbers).
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
