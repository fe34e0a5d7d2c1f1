r"""A layer algebra: one description of a network gives its finite twin and its infinite-width
kernels.

.. code-block:: python

    net = layers.serial(layers.Conv(64, (3, 3), padding="SAME"), layers.Relu(),
                        layers.AvgPool((2, 2)), layers.Flatten(), layers.Dense(1))
    params = net.init(jax.random.key(0), x.shape)   # the finite network (any width)
    y = net.apply(params, x)
    k = net.kernels(x1, x2)                          # Kernels(nngp, ntk): the infinite-width limit

Inputs are rows first: ``(N, d)``, ``(N, L, C)`` (1-D) or ``(N, H, W, C)`` (2-D), channels last.
Every layer with weights has ``sigma_w``, ``sigma_b`` and ``parametrization``: ``"ntk"``
(:math:`h = \tfrac{\sigma_w}{\sqrt{n}} W a + \sigma_b b`, entries :math:`N(0, 1)`) or ``"standard"``
(:math:`W \sim N(0, \sigma_w^2/n)`, :math:`b \sim N(0, \sigma_b^2)`, :math:`h = W a + b`), with
:math:`n` the fan-in (channels times filter size for a convolution).

**The kernels** (Novak et al. 2019, arXiv:1810.05148; Arora et al. 2019, arXiv:1904.11955;
neural-tangents' ``stax``, arXiv:1912.02803). At infinite width every channel of a pre-activation is
an independent Gaussian process over (input, position); the layers map its covariance
:math:`K(x, x')_{s s'}` and the NTK :math:`\Theta(x, x')_{s s'}` (per channel) as

- ``Dense`` (per position) / ``Conv`` with filter :math:`k` and stride :math:`t`, with
  :math:`\mathcal A[K]_{o o'} = \tfrac{1}{|k|}\sum_{d \in k} K_{t o + d,\, t o' + d}`
  (the identity for ``Dense``; padded positions of SAME are zero, of CIRCULAR wrapped):
  :math:`K \mapsto \sigma_w^2 \mathcal A[K] + \sigma_b^2`,
  :math:`\Theta \mapsto K_{\rm new} + \sigma_w^2 \mathcal A[\Theta]` (NTK parametrization) or
  :math:`n\, \mathcal A[K] + 1 + \sigma_w^2 \mathcal A[\Theta]` (standard);
- an elementwise :math:`\phi`: :math:`K \mapsto E[\phi(u)\phi(v)]`,
  :math:`\Theta \mapsto E[\phi'(u)\phi'(v)]\,\Theta`, with :math:`(u, v)` centred Gaussian of
  covariance :math:`[[K_{ss}(x, x), K_{ss'}(x, x')], [\cdot, K_{s's'}(x', x')]]` (closed forms and
  error-controlled quadrature of :mod:`jaxopt_lab.ntk.analytic`);
- ``AvgPool`` / ``GlobalAvgPool``: the same average over both position indices of :math:`K` and
  :math:`\Theta`, :math:`\tfrac{1}{|w|^2}\sum_{d, d' \in w} K_{t o + d,\, t o' + d'}`;
- ``Flatten`` then ``Dense``: :math:`\tfrac{1}{P}\sum_s K_{ss}` (fan-in :math:`P C`);
- ``LayerNorm`` (over channels, or over all features after ``Flatten``): :math:`K_{ss'}(x, x')
  \mapsto K_{ss'}(x,x') / \sqrt{v_s(x) v_{s'}(x')}` and the same for :math:`\Theta` (:math:`v` the
  variance the layer divides by); the centring and the projection in its Jacobian vanish at
  infinite width;
- ``FanOut(n)`` / ``parallel`` / ``FanInSum``: branch kernels are summed (their cross-covariance is
  zero: every branch but at most one must pass through a layer with fresh weights).

**Which spatial covariances are carried.** A convolution maps the diagonal :math:`K_{ss}` from the
diagonal alone (the shift :math:`d` is shared by both positions), and so do elementwise layers,
``Dense``, ``LayerNorm`` and ``Flatten``; only pooling reads :math:`K_{s s'}` off the diagonal. So
(as neural-tangents does) each layer carries the full :math:`P \times P` covariance only when a
pooling layer follows before a ``Flatten``: a network without pooling keeps :math:`N_1 N_2 P`
numbers per kernel, one with pooling :math:`N_1 N_2 P^2` up to its last pooling layer. Dropping the
off-diagonal is exact here, not an approximation: it is the identity CNN-GP = LCN-GP (a locally
connected network, untied weights, has zero covariance across positions and the same diagonal;
checked against a finite LCN in ``theory_checks/ntk_layers_identities.py``).
``kernels(..., full_spatial=True)`` carries the full covariances everywhere (for that check).

**Memory.** :meth:`Layer.kernel_bytes` estimates the peak of one ``(n1, n2)`` evaluation:
:data:`LIVE_ARRAYS` (or :data:`LIVE_ARRAYS_QUADRATURE` with a quadrature activation) arrays of the
largest per-pair size :math:`n_1 n_2 \max_l P_l^{(2)}` (:math:`P_l^{(2)} = P_l^2` where layer
:math:`l` carries full covariances, :math:`P_l` otherwise), plus the result
(asserted against XLA's own memory analysis in ``tests/test_ntk_layers.py``). :meth:`Layer.kernels`
computes in ``(block_size, block_size)`` tiles of (x1, x2) when asked or when the whole does not fit
``max_bytes`` (tiles on and above the diagonal of a kernel of a set with itself, mirrored), and
refuses up front, with the estimate and the layer that dominates it, what cannot fit in any tile.

**Bad input** (architectures and shapes that do not compose, a pooling window larger than the image,
unknown padding or parametrization, an elementwise layer on a non-Gaussian input, LayerNorm of a
non-centred input, sums of correlated branches, kernels too large): a one-line ``ValueError`` before
any compute, naming the layer as ``layer 3 (Conv)`` (``layer 2.1.0`` inside nested combinators).

Reference: Novak et al. 2020, "Neural Tangents" (arXiv:1912.02803); Novak et al. 2019, "Bayesian
Deep Convolutional Networks with Many Channels are Gaussian Processes" (arXiv:1810.05148); Arora et
al. 2019, "On Exact Computation with an Infinitely Wide Neural Net" (arXiv:1904.11955); Jacot et al.
2018 (arXiv:1806.07572).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxopt_lab.ntk import analytic
from jaxopt_lab.ntk.analytic import Kernels
from jaxopt_lab.ntk.empirical import empirical_ntk

HIGHEST = jax.lax.Precision.HIGHEST
PADDINGS = ("SAME", "VALID", "CIRCULAR")
PARAMETRIZATIONS = ("ntk", "standard")
#: Arrays of the largest per-pair size alive at once in a kernel evaluation with closed-form
#: activations (NNGP, NTK, the next layer's two, and the activation's temporaries).
LIVE_ARRAYS = 12
#: The same with a quadrature activation (its inner sums carry chunks of up to 8 nodes).
LIVE_ARRAYS_QUADRATURE = 40
#: Default ``max_bytes`` of :meth:`Layer.kernels`.
DEFAULT_MAX_BYTES = 8 << 30

Shape = tuple[int, ...]


# ----------------------------------------------------------------------------------------------
# What flows between layers: static metadata (shapes and flags) and the covariances themselves.


class _Meta(NamedTuple):
  """Static description of one layer's output (per input point).

  spatial: the positions' shape (``()`` for vectors); channels: the last axis of the finite
  network's output (after ``Flatten``, positions times channels); flat: positions were flattened
  into the feature axis (the kernel still keeps them, on the diagonal); full: the kernel carries the
  full covariance over pairs of positions; gaussian: a Gaussian process at infinite width (an
  elementwise layer may follow); centred: zero channel mean at infinite width (LayerNorm may
  follow); fresh: the output of a layer with fresh weights (uncorrelated with other branches).
  """

  spatial: Shape
  channels: int
  flat: bool = False
  full: bool = False
  gaussian: bool = False
  centred: bool = False
  fresh: bool = False

  def shape(self) -> Shape:
    return (self.channels,) if self.flat else self.spatial + (self.channels,)


class _Cov(NamedTuple):
  """Covariances of one layer's output: ``nngp`` and ``ntk`` of shape ``(n1, n2, *pos)``, and the
  self-covariances ``cov1`` ``(n1, *pos)`` and ``cov2`` ``(n2, *pos)`` (``None`` when x2 is x1),
  with ``pos = spatial + spatial`` (full) or ``spatial`` (diagonal)."""

  nngp: jax.Array
  ntk: jax.Array
  cov1: jax.Array
  cov2: jax.Array | None

  def map(self, fn: Callable[[jax.Array, int], jax.Array]) -> _Cov:
    """``fn(array, batch_ndim)`` on every array (batch_ndim 2: cross kernels, 1: self)."""
    return _Cov(fn(self.nngp, 2), fn(self.ntk, 2), fn(self.cov1, 1),
                None if self.cov2 is None else fn(self.cov2, 1))


def _label(layer: Layer) -> str:
  """The layer's name in error messages: its type, and an elementwise layer's function."""
  fn = getattr(layer, "fn", None)
  if fn is None or type(layer) is not Elementwise:
    return type(layer).__name__
  name = repr(fn) if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))
  return f"Elementwise {name}"


def _err(where: str, layer: Layer, msg: str) -> ValueError:
  return ValueError(f"layer {where} ({_label(layer)}): {msg}")


def _as_list(meta, where: str, layer: Layer) -> None:
  if isinstance(meta, list):
    raise _err(where, layer, f"got {len(meta)} branches (after FanOut/parallel); combine them with "
               "FanInSum first")


def _positive_ints(value, name: str, where: str, layer: Layer, ndim: int | None = None) -> Shape:
  try:
    t = tuple(value)
  except TypeError:
    t = (value,)
  if (not t or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in t)
      or (ndim is not None and len(t) != ndim)):
    want = f"{ndim} positive integers" if ndim else "a tuple of positive integers"
    raise _err(where, layer, f"{name}: expected {want}, got {value!r}")
  return tuple(int(v) for v in t)


def _check_scale(value, name: str, where: str, layer: Layer) -> None:
  number = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
  if not number or not (math.isfinite(value) and value >= 0):
    raise _err(where, layer, f"{name}: expected a finite number >= 0, got {value!r}")


# ----------------------------------------------------------------------------------------------
# Window sums over position axes (the kernels' convolution and pooling).


def _pads(size: int, window: int, stride: int, padding: str) -> tuple[int, int, int]:
  """(low pad, high pad, output length) of a window along one axis (TensorFlow/XLA convention)."""
  if padding == "VALID":
    return 0, 0, (size - window) // stride + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  return total // 2, total - total // 2, out


def _pad_axes(a: jax.Array, axes: Sequence[int], lo: int, hi: int, circular: bool) -> jax.Array:
  if lo == hi == 0:
    return a
  widths = [(0, 0)] * a.ndim
  for ax in axes:
    widths[ax] = (lo, hi)
  return jnp.pad(a, widths, mode="wrap" if circular else "constant")


def _slice(a: jax.Array, axes: Sequence[int], start: int, stride: int, length: int) -> jax.Array:
  for ax in axes:
    a = jax.lax.slice_in_dim(a, start, start + stride * (length - 1) + 1, stride, ax)
  return a


def _window_mean(a: jax.Array, axes: Sequence[int], window: int, stride: int, padding: str,
                 size: int) -> jax.Array:
  r""":math:`\tfrac1w \sum_{d < w} a_{t o + d}` along ``axes`` jointly (the same shift :math:`d`
  on every axis of ``axes``), after padding them."""
  lo, hi, out = _pads(size, window, stride, padding)
  a = _pad_axes(a, axes, lo, hi, padding == "CIRCULAR")
  return sum(_slice(a, axes, d, stride, out) for d in range(window)) / window


def _to_diag(a: jax.Array, batch: int, spatial: Shape) -> jax.Array:
  """The diagonal over pairs of positions: ``(*b, *S, *S) -> (*b, *S)``."""
  p = math.prod(spatial)
  lead = a.shape[:batch]
  d = jnp.diagonal(a.reshape(lead + (p, p)), axis1=batch, axis2=batch + 1)
  return d.reshape(lead + spatial)


def _variance(cov: jax.Array, meta: _Meta) -> jax.Array:
  """Per-position variances ``(n, *S)`` from a self-covariance."""
  return _to_diag(cov, 1, meta.spatial) if meta.full and meta.spatial else cov


def _diagonalize(cov, meta, need_full: bool):
  """Drops off-diagonal spatial covariances no later layer needs (lists: each branch)."""
  if isinstance(meta, list):
    pairs = [_diagonalize(c, m, need_full) for c, m in zip(cov, meta)]
    return [c for c, _ in pairs], [m for _, m in pairs]
  if meta.full and not need_full and meta.spatial:
    cov = cov.map(lambda a, b: _to_diag(a, b, meta.spatial))
    meta = meta._replace(full=False)
  return cov, meta


# ----------------------------------------------------------------------------------------------
# The layers.


@dataclasses.dataclass(frozen=True)
class Layer:
  """A layer (or a network: :func:`serial` of layers). Subclasses implement the private hooks;
  the public methods below work on any layer."""

  # -- hooks ------------------------------------------------------------------------------------
  def _validate(self, where: str) -> None:
    """Checks the layer's own arguments."""

  def _meta(self, meta, where: str):
    """The output's metadata from the input's; raises on shapes that do not compose."""
    raise NotImplementedError

  def _need(self, out_full: bool, force: bool) -> bool:
    """Whether the input must carry full spatial covariances, given the output's need."""
    del force
    return out_full

  def _init(self, draw: Callable[[Shape], jax.Array], meta, where: str) -> Any:
    """Parameters, with ``draw(shape)`` the next standard normal block."""
    del draw, meta, where
    return ()

  def _apply(self, params, x):
    raise NotImplementedError

  def _kernel(self, cov, meta, same: bool, out_full: bool, where: str, force: bool):
    """(output covariances, output metadata); ``force``: full covariances everywhere."""
    raise NotImplementedError

  def _quadrature_layers(self) -> list[Elementwise]:
    return []

  def _padded_spatial(self, meta) -> Shape | None:
    """The padded input's spatial shape (window layers), for the memory estimate."""
    window = getattr(self, "filter_shape", None) or getattr(self, "window_shape", None)
    if window is None or isinstance(meta, list) or len(meta.spatial) != len(window):
      return None
    strides = self._strides()
    return tuple(s + sum(_pads(s, w, t, self.padding)[:2])
                 for s, w, t in zip(meta.spatial, window, strides))

  def _with_order(self, order: int) -> Layer:
    """The same layer with every automatic quadrature order set to ``order``."""
    del order
    return self

  # -- public -----------------------------------------------------------------------------------
  def output_shape(self, input_shape: Sequence[int]) -> Shape:
    """The output's shape ``(N, ...)`` for inputs of shape ``input_shape`` ``(N, ...)`` (N may be
    -1)."""
    self._validate_tree(self._where0())
    meta = self._meta(_input_meta(input_shape), self._where0())
    _as_list(meta, "(output)", self)
    return (int(input_shape[0]),) + meta.shape()

  def init(self, key: jax.Array, input_shape: Sequence[int], dtype: Any = None) -> Any:
    """Parameters of the finite network for inputs of shape ``input_shape`` ``(N, ...)`` (``N``,
    the batch size, is not used and may be -1): weights ``N(0, 1)`` (NTK parametrization) or
    ``N(0, sigma_w^2 / fan_in)`` (standard); biases likewise with ``sigma_b``.

    Args:
      key: a typed ``jax.random.key``.
      input_shape: ``(N, d)``, ``(N, L, C)`` or ``(N, H, W, C)``.
      dtype: the parameters' dtype (default: JAX's default float).
    """
    _check_key(key)
    dtype = dtype or jnp.result_type(float)
    meta, where = _input_meta(input_shape), self._where0()
    self._validate_tree(where)
    sizes = []

    def count(shape):
      sizes.append(math.prod(shape))
      return jnp.zeros(shape, dtype)

    jax.eval_shape(lambda: self._init(count, meta, where))
    z = jax.random.normal(key, (sum(sizes),), dtype)  # one RNG kernel for all the layers
    offset = [0]

    def carve(shape):
      n, o = math.prod(shape), offset[0]
      offset[0] += n
      return z[o:o + n].reshape(shape)

    return self._init(carve, meta, where)

  def apply(self, params: Any, x: Float[ArrayLike, "n ..."]) -> jax.Array:
    """The finite network's outputs on inputs ``x`` (rows first, channels last)."""
    x = jnp.asarray(x)
    self._validate_tree(self._where0())
    self._meta(_input_meta(x.shape), self._where0())  # shape errors before compute
    return self._apply(params, x)

  def kernels(
      self,
      x1: Float[ArrayLike, "n1 ..."],
      x2: Float[ArrayLike, "n2 ..."] | None = None,
      *,
      full_spatial: bool = False,
      block_size: int | None = None,
      max_bytes: int | None = DEFAULT_MAX_BYTES,
      quadrature_rtol: float | None = None,
  ) -> Kernels:
    r"""Infinite-width NNGP and NTK (per output channel) of x1's rows against x2's.

    Args:
      x1: inputs ``(n1, ...)`` of the network's input shape; float32 or float64.
      x2: second inputs, or ``None`` for the kernel of x1 with itself (exactly symmetric).
      full_spatial: carry the full covariance over pairs of positions in every layer, also where
        the diagonal suffices (the result is the same; for checking that identity).
      block_size: compute in ``(block_size, block_size)`` tiles of (x1, x2) assembled on the host
        (NumPy result; not traceable). ``None``: the whole at once when it fits ``max_bytes``,
        tiles of the largest power-of-two size that fits otherwise.
      max_bytes: refuse (``ValueError`` with the estimate) when the estimated peak
        (:meth:`kernel_bytes` of a tile, plus the result) exceeds it; ``None``: no limit.
      quadrature_rtol: accuracy of the automatic quadrature order of elementwise layers without a
        closed form (as in :func:`jaxopt_lab.ntk.analytic.mlp_kernels`).

    Returns:
      ``Kernels(nngp, ntk)`` of shape ``(n1, n2)`` (``(n1, n2, *S)``, diagonal over positions, for
      a network whose output keeps spatial dimensions).

    Example:
      >>> net = serial(Conv(8, (3, 3)), Relu(), GlobalAvgPool(), Dense(1))
      >>> net.kernels(jnp.ones((3, 4, 4, 2))).ntk.shape
      (3, 3)

    Reference: Novak et al. 2020 (arXiv:1912.02803); Arora et al. 2019 (arXiv:1904.11955).
    """
    x1, x2, same = _check_pair(x1, x2)
    where0 = self._where0()
    self._validate_tree(where0)
    _as_list(self._meta(_input_meta(x1.shape), where0), "(output)", self)
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(
        block_size, (int, np.integer)) or block_size < 1):
      raise ValueError(f"block_size: expected a positive integer, got {block_size!r}")
    if max_bytes is not None and (isinstance(max_bytes, bool) or max_bytes <= 0):
      raise ValueError(f"max_bytes: expected a positive number of bytes or None, got {max_bytes!r}")
    n1, n2 = x1.shape[0], x2.shape[0]
    tracing = not all(analytic._is_concrete(t) for t in (x1, x2))  # pylint: disable=W0212
    est = lambda b1, b2, res=True: self.kernel_bytes(b1, b2, x1.shape, dtype=x1.dtype,
                                                     full_spatial=full_spatial, result=res)
    result = 2 * n1 * n2 * x1.dtype.itemsize
    if block_size is None:
      if max_bytes is None or est(n1, n2) <= max_bytes:
        net = _resolve_orders(self, x1, x2, quadrature_rtol, full_spatial)
        return _kernels_jit(net, x1, x2, same=same, force=full_spatial)
      size = 1 << int(math.log2(max(n1, n2)))
      while size > 1 and est(min(size, n1), min(size, n2), False) + result > max_bytes:
        size //= 2
      block_size = size
    b1, b2 = min(block_size, n1), min(block_size, n2)
    total = est(b1, b2, False) + result
    if max_bytes is not None and total > max_bytes:
      lw, lt = self._largest(x1.shape, full_spatial)
      raise ValueError(
          f"layer {lw} ({lt}): kernels of {n1} x {n2} inputs need an estimated {total / 2**30:.3g} "
          f"GiB in tiles of {b1} x {b2} (the result alone {result / 2**30:.3g} GiB), over "
          f"max_bytes={max_bytes / 2**30:.3g} GiB; this layer's per-pair covariance is the "
          "largest: use fewer inputs, a smaller block_size, pooling earlier, or a larger max_bytes")
    if tracing:
      raise ValueError(f"block_size: tiles ({b1} x {b2}) are assembled on the host, which jit/vmap "
                       "cannot trace; pass block_size=None and a max_bytes the whole fits in")
    net = _resolve_orders(self, x1, x2, quadrature_rtol, full_spatial)
    return _tiled(net, np.asarray(x1), None if same else np.asarray(x2), block_size, full_spatial)

  def kernel_bytes(self, n1: int, n2: int, input_shape: Sequence[int], *, dtype: Any = None,
                   full_spatial: bool = False, result: bool = True) -> int:
    r"""Estimated peak bytes of one evaluation of the kernels of ``n1`` against ``n2`` inputs:
    :data:`LIVE_ARRAYS` (or :data:`LIVE_ARRAYS_QUADRATURE`) times the largest per-layer
    ``(n1 + 1) (n2 + 1) P^{(2)}`` arrays, plus the two ``(n1, n2)`` results when ``result``."""
    itemsize = jnp.dtype(dtype or jnp.result_type(float)).itemsize
    sizes = self._pair_sizes(input_shape, full_spatial)
    live = LIVE_ARRAYS_QUADRATURE if self._quadrature_layers() else LIVE_ARRAYS
    peak = live * (n1 + 1) * (n2 + 1) * max(s for _, _, s in sizes) * itemsize
    return int(peak + (2 * n1 * n2 * itemsize if result else 0))

  # -- helpers ------------------------------------------------------------------------------------
  def _where0(self) -> str:
    return "" if isinstance(self, Serial) else "0"

  def _validate_tree(self, where: str) -> None:
    self._validate(where)

  def _pair_sizes(self, input_shape, full_spatial) -> list[tuple[str, str, int]]:
    """(where, type, per-pair size P^(2)) of the input and of every layer's output."""
    meta = _input_meta(input_shape)
    need_in = self._need(False, full_spatial)
    p = math.prod(meta.spatial)
    out = [("input", "input", p * p if need_in and meta.spatial else p)]
    self._walk_sizes(meta, self._where0(), False, full_spatial, out)
    return out

  def _walk_sizes(self, meta, where, out_full, force, out):
    full_in = self._need(out_full, force)
    m = self._meta(meta, where)
    padded = self._padded_spatial(meta)
    if padded is not None:  # the padded copy of the input's covariances
      p = math.prod(padded)
      out.append((where, _label(self), p * p if full_in else p))
    for mm in (m if isinstance(m, list) else [m]):
      p = math.prod(mm.spatial)
      full = full_in and not mm.flat and bool(mm.spatial)  # before dropping the off-diagonal
      out.append((where, _label(self), p * p if full else p))
    return m

  def _largest(self, input_shape, full_spatial):
    sizes = self._pair_sizes(input_shape, full_spatial)[1:]  # the first layer reads the input
    w, t, _ = max(sizes, key=lambda s: s[2])
    return w, t


def _check_key(key) -> None:
  if not (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
    raise ValueError("key: expected a typed jax.random.key (not a legacy uint32 PRNGKey), got "
                     f"{getattr(key, 'dtype', type(key))}")


def _input_meta(shape: Sequence[int]) -> _Meta:
  shape = tuple(int(s) for s in shape)
  if len(shape) < 2 or any(s < 1 for s in shape[1:]) or (shape[0] < 1 and shape[0] != -1):
    raise ValueError(f"input_shape: expected (N, d), (N, L, C) or (N, H, W, C) with positive "
                     f"sizes (N may be -1), got {shape}")
  return _Meta(spatial=shape[1:-1], channels=shape[-1])


def _check_pair(x1, x2):
  if not hasattr(x1, "shape"):
    x1 = np.asarray(x1)
  x1 = jnp.asarray(x1)
  if x1.ndim < 2 or x1.shape[0] == 0 or not jnp.issubdtype(x1.dtype, jnp.floating):
    raise ValueError(f"x1: expected a floating array (N, ...) with N >= 1, got shape {x1.shape} "
                     f"and dtype {x1.dtype}")
  if x2 is None:
    return x1, x1, True
  x2 = jnp.asarray(x2)
  if x2.shape[1:] != x1.shape[1:] or x2.shape[0] == 0:
    raise ValueError(f"x2: shape {x2.shape} does not match x1's {x1.shape} past the batch axis")
  if x2.dtype != x1.dtype:
    raise ValueError(f"x2: dtype {x2.dtype} does not match x1's {x1.dtype}")
  return x1, x2, False


def _bias(params, h):
  return params["b"].reshape((1,) * (h.ndim - 1) + (-1,))


def _linear_params(draw, shape, fan_in, layer):
  w, b = draw(shape), draw(shape[-1:])
  if layer.parametrization == "standard":
    w, b = w * (layer.sigma_w / math.sqrt(fan_in)), b * layer.sigma_b
  return {"w": w, "b": b}


def _affine_kernel(layer, cov: _Cov, fan_in: int,
                   avg: Callable[[jax.Array, int], jax.Array]) -> _Cov:
  """Dense/Conv on covariances, with ``avg`` the layer's average over positions (A above)."""
  sw2, sb2 = layer.sigma_w**2, layer.sigma_b**2
  k = cov.map(avg)
  lin = lambda a: sw2 * a + sb2
  if layer.parametrization == "ntk":
    ntk = lin(k.nngp) + sw2 * k.ntk
  else:
    ntk = fan_in * k.nngp + 1 + sw2 * k.ntk
  return _Cov(lin(k.nngp), ntk, lin(k.cov1), None if k.cov2 is None else lin(k.cov2))


@dataclasses.dataclass(frozen=True)
class Dense(Layer):
  r"""Fully connected layer on the last axis: per position for spatial inputs (a 1x1
  convolution), over all features after :class:`Flatten` (neural-tangents' ``stax.Dense``).

  Attributes:
    out_dim: output width.
    sigma_w, sigma_b: weight and bias scales.
    parametrization: ``"ntk"`` or ``"standard"`` (see the module docstring).
  """

  out_dim: int
  sigma_w: float = 1.0
  sigma_b: float = 0.0
  parametrization: str = "ntk"

  def _validate(self, where):
    _positive_ints(self.out_dim, "out_dim", where, self, ndim=1)
    _check_affine(self, where)

  def _meta(self, meta, where):
    _as_list(meta, where, self)
    spatial = () if meta.flat else meta.spatial
    return _Meta(spatial, self.out_dim, full=meta.full and not meta.flat, gaussian=True,
                 centred=True, fresh=True)

  def _init(self, draw, meta, where):
    _as_list(meta, where, self)
    return _linear_params(draw, (meta.channels, self.out_dim), meta.channels, self)

  def _apply(self, params, x):
    h = jnp.matmul(x, params["w"], precision=HIGHEST)
    if self.parametrization == "ntk":
      return (self.sigma_w / math.sqrt(x.shape[-1])) * h + self.sigma_b * _bias(params, h)
    return h + _bias(params, h)

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    if meta.flat and meta.spatial:
      nd = len(meta.spatial)
      avg = lambda a, b: jnp.mean(a, axis=tuple(range(b, b + nd)))
    else:
      avg = lambda a, b: a
    return _affine_kernel(self, cov, meta.channels, avg), out


def _check_affine(layer, where):
  _check_scale(layer.sigma_w, "sigma_w", where, layer)
  _check_scale(layer.sigma_b, "sigma_b", where, layer)
  if layer.parametrization not in PARAMETRIZATIONS:
    raise _err(where, layer, f"parametrization: expected one of {PARAMETRIZATIONS}, got "
               f"{layer.parametrization!r} (muP / mean-field kernels are not implemented)")


def _finite_padding(x, window, strides, padding):
  """The finite network's padding, by XLA's own conventions (independent of :func:`_pads`, which
  the kernels use): "SAME"/"VALID" as strings; CIRCULAR wraps by
  ``jax.lax.padtype_to_pads(..., "SAME")`` and then runs VALID."""
  if padding != "CIRCULAR":
    return x, padding
  pads = jax.lax.padtype_to_pads(x.shape[1:-1], tuple(window), tuple(strides), "SAME")
  return jnp.pad(x, [(0, 0)] + list(pads) + [(0, 0)], mode="wrap"), "VALID"


_CONV_DIMS = {1: ("NWC", "WIO"), 2: ("NHWC", "HWIO"), 3: ("NDHWC", "DHWIO")}


def _check_window(layer, meta, where, window, strides, padding, what):
  _as_list(meta, where, layer)
  if meta.flat or not meta.spatial:
    raise _err(where, layer, f"expected an input with {len(window)} spatial dims (N, *spatial, C), "
               f"got features of shape (N, {meta.channels}) (after Flatten/GlobalAvgPool or a "
               "vector input)")
  if len(meta.spatial) != len(window):
    raise _err(where, layer, f"{what} {window} has {len(window)} spatial dims, the input "
               f"{meta.spatial} has {len(meta.spatial)}")
  if padding == "VALID" and any(w > s for w, s in zip(window, meta.spatial)):
    raise _err(where, layer, f"{what} {window} is larger than the input's spatial shape "
               f"{meta.spatial} (padding VALID)")
  return tuple(_pads(s, w, t, padding)[2] for s, w, t in zip(meta.spatial, window, strides))


@dataclasses.dataclass(frozen=True)
class Conv(Layer):
  r"""Convolution over 1, 2 or 3 spatial dims (input ``(N, *spatial, C)``), with weights of shape
  ``(*filter_shape, C, out_channels)`` and fan-in ``C * prod(filter_shape)``
  (neural-tangents' ``stax.Conv``).

  Attributes:
    out_channels: output channels (the width).
    filter_shape: e.g. ``(3, 3)``; its length is the number of spatial dims.
    strides: per spatial dim (default 1).
    padding: ``"SAME"`` (zeros), ``"VALID"`` or ``"CIRCULAR"`` (periodic, the same amounts as SAME).
    sigma_w, sigma_b, parametrization: as :class:`Dense`.
  """

  out_channels: int
  filter_shape: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  padding: str = "SAME"
  sigma_w: float = 1.0
  sigma_b: float = 0.0
  parametrization: str = "ntk"

  def _validate(self, where):
    _positive_ints(self.out_channels, "out_channels", where, self, ndim=1)
    f = _positive_ints(self.filter_shape, "filter_shape", where, self)
    if len(f) > 3:
      raise _err(where, self, f"filter_shape: 1 to 3 spatial dims, got {self.filter_shape}")
    if self.strides is not None:
      _positive_ints(self.strides, "strides", where, self, ndim=len(f))
    if self.padding not in PADDINGS:
      raise _err(where, self, f"padding: expected one of {PADDINGS}, got {self.padding!r}")
    _check_affine(self, where)

  def _strides(self) -> Shape:
    return tuple(self.strides) if self.strides is not None else (1,) * len(self.filter_shape)

  def _meta(self, meta, where):
    out = _check_window(self, meta, where, tuple(self.filter_shape), self._strides(), self.padding,
                        "filter_shape")
    return _Meta(out, self.out_channels, full=meta.full, gaussian=True, centred=True, fresh=True)

  def _fan_in(self, channels):
    return channels * math.prod(self.filter_shape)

  def _init(self, draw, meta, where):
    self._meta(meta, where)
    shape = tuple(self.filter_shape) + (meta.channels, self.out_channels)
    return _linear_params(draw, shape, self._fan_in(meta.channels), self)

  def _apply(self, params, x):
    spatial = x.shape[1:-1]
    x, pads = _finite_padding(x, self.filter_shape, self._strides(), self.padding)
    lhs, rhs = _CONV_DIMS[len(spatial)]
    h = jax.lax.conv_general_dilated(x, params["w"], self._strides(), pads,  # "SAME"/"VALID"
                                     dimension_numbers=(lhs, rhs, lhs), precision=HIGHEST)
    if self.parametrization == "ntk":
      scale = self.sigma_w / math.sqrt(self._fan_in(x.shape[-1]))
      return scale * h + self.sigma_b * _bias(params, h)
    return h + _bias(params, h)

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    nd = len(meta.spatial)
    pad = "CIRCULAR" if self.padding == "CIRCULAR" else self.padding

    def avg(a, b):
      for i, (s, w, t) in enumerate(zip(meta.spatial, self.filter_shape, self._strides())):
        axes = (b + i, b + nd + i) if meta.full else (b + i,)
        a = _window_mean(a, axes, w, t, pad, s)
      return a

    return _affine_kernel(self, cov, self._fan_in(meta.channels), avg), out


@dataclasses.dataclass(frozen=True)
class AvgPool(Layer):
  """Average pooling (neural-tangents' ``stax.AvgPool`` with ``normalize_edges=False``: a window
  overlapping SAME padding is still divided by its full size).

  Attributes:
    window_shape: e.g. ``(2, 2)``.
    strides: default ``window_shape``.
    padding: ``"VALID"`` (default), ``"SAME"`` or ``"CIRCULAR"``.
  """

  window_shape: tuple[int, ...]
  strides: tuple[int, ...] | None = None
  padding: str = "VALID"

  def _validate(self, where):
    w = _positive_ints(self.window_shape, "window_shape", where, self)
    if self.strides is not None:
      _positive_ints(self.strides, "strides", where, self, ndim=len(w))
    if self.padding not in PADDINGS:
      raise _err(where, self, f"padding: expected one of {PADDINGS}, got {self.padding!r}")

  def _strides(self):
    return tuple(self.strides) if self.strides is not None else tuple(self.window_shape)

  def _meta(self, meta, where):
    window = tuple(self.window_shape)
    _as_list(meta, where, self)
    if not meta.flat and meta.spatial and len(window) == len(meta.spatial) and any(
        w > s for w, s in zip(window, meta.spatial)):
      raise _err(where, self, f"pooling window {window} is larger than the image {meta.spatial}")
    out = _check_window(self, meta, where, window, self._strides(), self.padding, "window_shape")
    return meta._replace(spatial=out)

  def _need(self, out_full, force):
    return True

  def _apply(self, params, x):
    x, pads = _finite_padding(x, self.window_shape, self._strides(), self.padding)
    s = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add,
                              (1,) + tuple(self.window_shape) + (1,),
                              (1,) + self._strides() + (1,),
                              pads if isinstance(pads, str) else [(0, 0)] + pads + [(0, 0)])
    return s / math.prod(self.window_shape)

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    assert meta.full, "pooling needs full spatial covariances"
    nd = len(meta.spatial)

    def pool(a, b):
      for i, (s, w, t) in enumerate(zip(meta.spatial, self.window_shape, self._strides())):
        for ax in (b + i, b + nd + i):  # independent windows on the two positions
          a = _window_mean(a, (ax,), w, t, self.padding, s)
      return a

    return cov.map(pool), out


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool(Layer):
  """Mean over all positions: ``(N, *spatial, C) -> (N, C)`` (neural-tangents'
  ``stax.GlobalAvgPool``)."""

  def _meta(self, meta, where):
    _as_list(meta, where, self)
    if meta.flat or not meta.spatial:
      raise _err(where, self, f"expected an input with spatial dims (N, *spatial, C), got features "
                 f"of shape (N, {meta.channels})")
    return meta._replace(spatial=(), full=False)

  def _need(self, out_full, force):
    return True

  def _apply(self, params, x):
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    assert meta.full, "pooling needs full spatial covariances"
    nd = 2 * len(meta.spatial)
    return cov.map(lambda a, b: jnp.mean(a, axis=tuple(range(b, b + nd)))), out


@dataclasses.dataclass(frozen=True)
class Flatten(Layer):
  """``(N, *spatial, C) -> (N, prod(spatial) * C)`` (neural-tangents' ``stax.Flatten``). The
  kernels keep the positions on the diagonal (a following elementwise layer or LayerNorm stays
  exact); the next :class:`Dense` averages them."""

  def _meta(self, meta, where):
    _as_list(meta, where, self)
    if meta.flat or not meta.spatial:
      return meta
    return meta._replace(channels=math.prod(meta.spatial) * meta.channels, flat=True, full=False)

  def _need(self, out_full, force):
    return force

  def _apply(self, params, x):
    return x.reshape(x.shape[0], -1)

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    if meta.full and meta.spatial:
      cov = cov.map(lambda a, b: _to_diag(a, b, meta.spatial))
    return cov, out


@dataclasses.dataclass(frozen=True)
class Identity(Layer):
  """The identity (neural-tangents' ``stax.Identity``), e.g. the skip branch of a residual block."""

  def _meta(self, meta, where):
    return meta

  def _apply(self, params, x):
    return x

  def _kernel(self, cov, meta, same, out_full, where, force):
    return cov, meta


#: Activations whose mean over channels vanishes at infinite width (odd functions): LayerNorm may
#: follow them.
_ODD = ("erf", "identity", "tanh", "sin")


@dataclasses.dataclass(frozen=True)
class Elementwise(Layer):
  r"""An elementwise activation :math:`\phi`: a name of :data:`jaxopt_lab.ntk.analytic.ACTIVATIONS`
  (closed forms for relu, erf, identity, leaky_relu, abs, sin, cos; error-controlled quadrature for
  the others) or any callable (by quadrature; neural-tangents' ``stax.Elementwise`` with
  ``nngp_fn=None``). Needs a Gaussian input (the output of Dense, Conv, pooling, LayerNorm or a sum
  of those).

  Attributes:
    fn: the name or the callable.
    quadrature_order: Gauss-Legendre nodes per dimension, or ``None`` to choose it from an error
      estimate on a probe of the inputs (:data:`jaxopt_lab.ntk.analytic.TRACED_QUADRATURE_ORDER`
      under tracing).
    odd: the function is odd (its channel mean vanishes, so LayerNorm may follow); ``None``: known
      for the named activations, ``False`` for callables.
  """

  fn: str | Callable[[jax.Array], jax.Array]
  quadrature_order: int | None = None
  odd: bool | None = None

  def _validate(self, where):
    try:
      analytic.activation_fn(self.fn)
    except ValueError as e:
      raise _err(where, self, str(e)) from None
    q = self.quadrature_order
    if q is not None and (isinstance(q, bool) or not isinstance(q, (int, np.integer)) or q < 2):
      raise _err(where, self, f"quadrature_order: expected None or an integer >= 2, got {q!r}")

  def _closed(self) -> bool:
    return isinstance(self.fn, str) and self.fn in analytic.CLOSED_FORM

  def _quadrature_layers(self):
    return [] if self._closed() else [self]

  def _with_order(self, order):
    if self._closed() or self.quadrature_order is not None:
      return self
    return dataclasses.replace(self, quadrature_order=order)

  def _is_odd(self) -> bool:
    return self.odd if self.odd is not None else (isinstance(self.fn, str) and self.fn in _ODD)

  def _function(self) -> Callable[[jax.Array], jax.Array]:
    return analytic.activation_fn(self.fn)

  def _meta(self, meta, where):
    _as_list(meta, where, self)
    if not meta.gaussian:
      raise _err(where, self, "needs a Gaussian input at infinite width (the output of Dense, "
                 "Conv, pooling, LayerNorm or a sum of those), got the raw input or the output of "
                 "another elementwise layer")
    return meta._replace(gaussian=False, centred=self._is_odd(), fresh=False)

  def _apply(self, params, x):
    return self._function()(x)

  def _expectations(self, q11, q22, q12, on_diag):
    order = self.quadrature_order or analytic.TRACED_QUADRATURE_ORDER
    arch = analytic._Arch(2, self.fn, "ntk", None, order)  # pylint: disable=protected-access
    return analytic._expectations(arch, q11, q22, q12, on_diag)  # pylint: disable=protected-access

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    nd = len(meta.spatial)
    ones = (1,) * nd
    var1 = _variance(cov.cov1, meta)
    var2 = var1 if cov.cov2 is None else _variance(cov.cov2, meta)
    n1, n2 = cov.nngp.shape[:2]
    full = meta.full and nd > 0
    if full:
      q11 = var1.reshape((n1, 1) + meta.spatial + ones)
      q22 = var2.reshape((1, n2) + ones + meta.spatial)
      pos_eye = jnp.eye(math.prod(meta.spatial), dtype=bool).reshape(meta.spatial * 2)
    else:
      q11, q22 = var1[:, None], var2[None]
    if same:
      on_diag = jnp.eye(n1, dtype=bool).reshape((n1, n1) + (1,) * (cov.nngp.ndim - 2))
      if full:
        on_diag = on_diag & pos_eye[None, None]
    else:
      on_diag = False
    e, ed = self._expectations(q11, q22, cov.nngp, on_diag)
    ntk = ed * cov.ntk

    def self_cov(c, var):
      if not full:
        return self._expectations(c, c, c, True)[0]
      n = c.shape[0]
      return self._expectations(var.reshape((n,) + meta.spatial + ones),
                                var.reshape((n,) + ones + meta.spatial), c, pos_eye[None])[0]

    cov1 = self_cov(cov.cov1, var1)
    cov2 = None if cov.cov2 is None else self_cov(cov.cov2, var2)
    return _Cov(e, ntk, cov1, cov2), out


def Relu() -> Elementwise:  # pylint: disable=invalid-name
  """ReLU (closed form: arc-cosine kernel)."""
  return Elementwise("relu")


def Erf() -> Elementwise:  # pylint: disable=invalid-name
  """erf (closed form, Williams 1997)."""
  return Elementwise("erf")


def Abs() -> Elementwise:  # pylint: disable=invalid-name
  """abs (closed form)."""
  return Elementwise("abs")


def Sin() -> Elementwise:  # pylint: disable=invalid-name
  """sin (closed form)."""
  return Elementwise("sin")


def Cos() -> Elementwise:  # pylint: disable=invalid-name
  """cos (closed form)."""
  return Elementwise("cos")


def Tanh() -> Elementwise:  # pylint: disable=invalid-name
  """tanh (quadrature)."""
  return Elementwise("tanh")


def Gelu() -> Elementwise:  # pylint: disable=invalid-name
  """The exact (erf) GeLU (quadrature)."""
  return Elementwise("gelu")


@dataclasses.dataclass(frozen=True)
class LeakyRelu(Elementwise):
  """Leaky ReLU with any negative slope (closed form, :func:`analytic._piecewise_linear`):
  ``LeakyRelu(0.1)``."""

  fn: Any = dataclasses.field(default="leaky_relu", init=False)
  quadrature_order: int | None = dataclasses.field(default=None, init=False)
  odd: bool | None = dataclasses.field(default=None, init=False)
  negative_slope: float = 0.01

  def _validate(self, where):
    if (not isinstance(self.negative_slope, (int, float)) or isinstance(self.negative_slope, bool)
        or not math.isfinite(self.negative_slope)):
      raise _err(where, self, f"negative_slope: expected a finite number, got "
                 f"{self.negative_slope!r}")

  def _closed(self):
    return True

  def _is_odd(self):
    return self.negative_slope == 1.0

  def _function(self):
    return functools.partial(jax.nn.leaky_relu, negative_slope=self.negative_slope)

  def _expectations(self, q11, q22, q12, on_diag):
    fn = analytic._piecewise_linear(1.0, self.negative_slope)  # pylint: disable=protected-access
    return _closed_expectations(fn, q11, q22, q12, on_diag)


def _closed_expectations(fn, q11, q22, q12, on_diag):
  """``analytic._expectations``' handling of the diagonal, for a parametric closed form."""
  if on_diag is True:
    return fn(q11, q11, q11, jnp.zeros_like(q11))
  q12 = jnp.where(on_diag, q11, q12)
  det = jnp.where(on_diag, 0, jnp.maximum(q11 * q22 - q12 * q12, 0))
  return fn(q11, q22, q12, det)


@dataclasses.dataclass(frozen=True)
class LayerNorm(Layer):
  r"""Layer normalization without learned scale or shift, :math:`(h - \bar h)/\sqrt{\mathrm{var}(h)
  + \epsilon}` over the last axis: the channels of each position, or all features after
  :class:`Flatten` (neural-tangents' ``stax.LayerNorm(axis=-1)``). Needs a centred input (a
  Dense/Conv output, or an odd activation of one); the kernel ignores ``eps``.
  """

  eps: float = 1e-12

  def _validate(self, where):
    _check_scale(self.eps, "eps", where, self)

  def _meta(self, meta, where):
    _as_list(meta, where, self)
    if not meta.centred:
      raise _err(where, self, "needs an input with zero channel mean at infinite width (a Dense or "
                 "Conv output, or an odd activation of one); after ReLU-like activations the "
                 "centring does not vanish and is not implemented")
    return meta

  def _apply(self, params, x):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mean) ** 2, axis=-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + self.eps)

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    nd = len(meta.spatial)
    var1 = _variance(cov.cov1, meta)
    var2 = var1 if cov.cov2 is None else _variance(cov.cov2, meta)
    if meta.flat and nd:  # one variance per input: the mean over positions
      var1, var2 = (jnp.mean(v, axis=tuple(range(1, 1 + nd)), keepdims=True) for v in (var1, var2))
    n1, n2 = var1.shape[0], var2.shape[0]
    rest = var1.shape[1:]
    full = meta.full and nd > 0
    ones = (1,) * len(rest)
    if full:
      r1 = jax.lax.rsqrt(var1)
      s1 = r1.reshape((n1, 1) + rest + ones)
      s2 = jax.lax.rsqrt(var2).reshape((1, n2) + ones + rest)
      self_scale = lambda v: (jax.lax.rsqrt(v).reshape((v.shape[0],) + rest + ones)
                              * jax.lax.rsqrt(v).reshape((v.shape[0],) + ones + rest))
    else:
      s1 = jax.lax.rsqrt(var1)[:, None]
      s2 = jax.lax.rsqrt(var2)[None]
      self_scale = lambda v: 1 / v
    scale = s1 * s2
    cov1 = cov.cov1 * self_scale(var1)
    cov2 = None if cov.cov2 is None else cov.cov2 * self_scale(var2)
    return _Cov(cov.nngp * scale, cov.ntk * scale, cov1, cov2), out


# ----------------------------------------------------------------------------------------------
# Combinators.


@dataclasses.dataclass(frozen=True)
class Serial(Layer):
  """Layers in sequence (neural-tangents' ``stax.serial``); made by :func:`serial`."""

  layers: tuple[Layer, ...]

  def _sub(self, where: str, i: int) -> str:
    return f"{where}.{i}" if where else str(i)

  def _validate_tree(self, where):
    if not self.layers:
      raise ValueError(f"layer {where or '(network)'} (Serial): no layers")
    for i, layer in enumerate(self.layers):
      if not isinstance(layer, Layer):
        raise ValueError(f"layer {self._sub(where, i)}: expected a Layer, got "
                         f"{type(layer).__name__}")
      layer._validate_tree(self._sub(where, i))

  def _meta(self, meta, where):
    for i, layer in enumerate(self.layers):
      meta = layer._meta(meta, self._sub(where, i))
    return meta

  def _needs(self, out_full, force):
    needs = [out_full]
    for layer in reversed(self.layers):
      needs.append(layer._need(needs[-1], force))
    return needs[::-1]

  def _need(self, out_full, force):
    return self._needs(out_full, force)[0]

  def _init(self, draw, meta, where):
    params = []
    for i, layer in enumerate(self.layers):
      params.append(layer._init(draw, meta, self._sub(where, i)))
      meta = layer._meta(meta, self._sub(where, i))
    return tuple(params)

  def _apply(self, params, x):
    for layer, p in zip(self.layers, params):
      x = layer._apply(p, x)
    return x

  def _kernel(self, cov, meta, same, out_full, where, force):
    needs = self._needs(out_full, force)
    for i, layer in enumerate(self.layers):
      cov, meta = layer._kernel(cov, meta, same, needs[i + 1], self._sub(where, i), force)
      cov, meta = _diagonalize(cov, meta, needs[i + 1])
    return cov, meta

  def _walk_sizes(self, meta, where, out_full, force, out):
    needs = self._needs(out_full, force)
    for i, layer in enumerate(self.layers):
      meta = layer._walk_sizes(meta, self._sub(where, i), needs[i + 1], force, out)
    return meta

  def _quadrature_layers(self):
    return [q for layer in self.layers for q in layer._quadrature_layers()]

  def _with_order(self, order):
    return Serial(tuple(layer._with_order(order) for layer in self.layers))


@dataclasses.dataclass(frozen=True)
class Parallel(Serial):
  """Branch ``i`` applied to input ``i`` (neural-tangents' ``stax.parallel``); made by
  :func:`parallel`."""

  def _meta(self, meta, where):
    if not isinstance(meta, list) or len(meta) != len(self.layers):
      got = f"{len(meta)} branches" if isinstance(meta, list) else "a single input"
      raise ValueError(f"layer {where or '0'} (Parallel): expected {len(self.layers)} branches "
                       f"(from FanOut({len(self.layers)})), got {got}")
    return [layer._meta(m, self._sub(where, i))
            for i, (layer, m) in enumerate(zip(self.layers, meta))]

  def _need(self, out_full, force):
    return any(layer._need(out_full, force) for layer in self.layers)

  def _init(self, draw, meta, where):
    self._meta(meta, where)
    return tuple(layer._init(draw, m, self._sub(where, i))
                 for i, (layer, m) in enumerate(zip(self.layers, meta)))

  def _apply(self, params, x):
    return [layer._apply(p, xi) for layer, p, xi in zip(self.layers, params, x)]

  def _kernel(self, cov, meta, same, out_full, where, force):
    self._meta(meta, where)
    outs = [layer._kernel(c, m, same, out_full, self._sub(where, i), force)
            for i, (layer, c, m) in enumerate(zip(self.layers, cov, meta))]
    pairs = [_diagonalize(c, m, out_full) for c, m in outs]
    return [c for c, _ in pairs], [m for _, m in pairs]

  def _walk_sizes(self, meta, where, out_full, force, out):
    self._meta(meta, where)
    return [layer._walk_sizes(m, self._sub(where, i), out_full, force, out)
            for i, (layer, m) in enumerate(zip(self.layers, meta))]

  def _with_order(self, order):
    return Parallel(tuple(layer._with_order(order) for layer in self.layers))


@dataclasses.dataclass(frozen=True)
class FanOut(Layer):
  """``num`` copies of the input (neural-tangents' ``stax.FanOut``)."""

  num: int

  def _validate(self, where):
    _positive_ints(self.num, "num", where, self, ndim=1)

  def _meta(self, meta, where):
    _as_list(meta, where, self)
    return [meta._replace(fresh=False)] * self.num

  def _apply(self, params, x):
    return [x] * self.num

  def _kernel(self, cov, meta, same, out_full, where, force):
    return [cov] * self.num, self._meta(meta, where)


@dataclasses.dataclass(frozen=True)
class FanInSum(Layer):
  """The sum of the branches (neural-tangents' ``stax.FanInSum``). Their kernels add when their
  cross-covariances vanish: every branch but at most one must pass through a Dense or Conv."""

  def _meta(self, meta, where):
    if not isinstance(meta, list):
      raise _err(where, self, "expected branches (from FanOut and parallel), got a single input")
    shapes = {(m.spatial, m.channels, m.flat) for m in meta}
    if len(shapes) > 1:
      raise _err(where, self, f"branch outputs differ in shape: "
                 f"{[('N',) + m.shape() for m in meta]}")
    stale = [i for i, m in enumerate(meta) if not m.fresh]
    if len(stale) > 1:
      raise _err(where, self, f"branches {stale} carry correlated features (no Dense/Conv since "
                 "the FanOut): the kernel of their sum is not the sum of their kernels")
    return meta[0]._replace(full=all(m.full for m in meta), gaussian=all(m.gaussian for m in meta),
                            centred=all(m.centred for m in meta), fresh=not stale)

  def _apply(self, params, x):
    return functools.reduce(jnp.add, x)

  def _kernel(self, cov, meta, same, out_full, where, force):
    out = self._meta(meta, where)
    add = lambda *a: None if a[0] is None else functools.reduce(jnp.add, a)
    return _Cov(*(add(*parts) for parts in zip(*cov))), out


def serial(*layers: Layer) -> Serial:
  """A network of ``layers`` in sequence, with ``init``, ``apply`` and ``kernels``.

  Example:
    >>> net = serial(Dense(512), Relu(), Dense(1))
    >>> net.kernels(jnp.ones((4, 3))).nngp.shape
    (4, 4)
  """
  return Serial(tuple(layers))


def parallel(*layers: Layer) -> Parallel:
  """Branch ``i`` of a :class:`FanOut` through ``layers[i]`` (combine with :class:`FanInSum`).

  Example:
    >>> block = serial(FanOut(2), parallel(Identity(), serial(Relu(), Dense(64))), FanInSum())
  """
  return Parallel(tuple(layers))


# ----------------------------------------------------------------------------------------------
# Evaluation.


def _input_cov(x1, x2, same: bool, full: bool) -> _Cov:
  n1, n2 = x1.shape[0], x2.shape[0]
  spatial, c = x1.shape[1:-1], x1.shape[-1]
  p = math.prod(spatial)
  a1, a2 = x1.reshape(n1, p, c), x2.reshape(n2, p, c)
  ein = functools.partial(jnp.einsum, precision=HIGHEST)
  if full and spatial:
    nngp = ein("npc,mqc->nmpq", a1, a2).reshape((n1, n2) + spatial * 2) / c
    self_cov = lambda a: ein("npc,nqc->npq", a, a).reshape((a.shape[0],) + spatial * 2) / c
  else:
    nngp = ein("npc,mpc->nmp", a1, a2).reshape((n1, n2) + spatial) / c
    self_cov = lambda a: jnp.sum(a * a, axis=-1).reshape((a.shape[0],) + spatial) / c
  cov1 = self_cov(a1)
  return _Cov(nngp, jnp.zeros_like(nngp), cov1, None if same else self_cov(a2))


def _evaluate(net: Layer, x1, x2, same: bool, force: bool) -> Kernels:
  meta = _input_meta(x1.shape)
  need = net._need(False, force)
  cov = _input_cov(x1, x2, same, need)
  meta = meta._replace(full=need and bool(meta.spatial))
  cov, meta = net._kernel(cov, meta, same, False, net._where0(), force)
  cov, meta = _diagonalize(cov, meta, False)
  nngp, ntk = cov.nngp, cov.ntk
  if same and nngp.ndim == 2:
    nngp, ntk = analytic._mirrored((nngp, ntk), True)  # pylint: disable=protected-access
  return Kernels(nngp, ntk)


@functools.partial(jax.jit, static_argnames=("net", "same", "force"))
def _kernels_jit(net: Layer, x1, x2, *, same: bool, force: bool) -> Kernels:
  return _evaluate(net, x1, x2, same, force)


def _tiled(net: Layer, x1: np.ndarray, x2: np.ndarray | None, bs: int, force: bool) -> Kernels:
  """Tiles of (x1, x2) through one compiled tile program; for a set with itself, the tiles on and
  above the diagonal, mirrored (exactly symmetric)."""
  symmetric = x2 is None
  x2 = x1 if symmetric else x2
  n1, n2 = x1.shape[0], x2.shape[0]
  out = Kernels(np.empty((n1, n2), x1.dtype), np.empty((n1, n2), x1.dtype))
  pad = lambda x, nb: np.concatenate([x, np.zeros((nb * bs - x.shape[0],) + x.shape[1:], x.dtype)])
  nb1, nb2 = -(-n1 // bs), -(-n2 // bs)
  x1p, x2p = pad(x1, nb1), pad(x2, nb2)
  for i in range(nb1):
    for j in range(i if symmetric else 0, nb2):
      r0, r1, c0, c1 = i * bs, min((i + 1) * bs, n1), j * bs, min((j + 1) * bs, n2)
      b1, b2 = x1p[i * bs:(i + 1) * bs], x2p[j * bs:(j + 1) * bs]
      same = symmetric and i == j
      k = _kernels_jit(net, jnp.asarray(b1), jnp.asarray(b1 if same else b2), same=same,
                       force=force)
      for dst, src in zip(out, k):
        src = np.asarray(src)
        if src.ndim != 2:
          raise ValueError("block_size: tiled evaluation needs a network whose output has no "
                           "spatial dims (end with Flatten/GlobalAvgPool and Dense)")
        dst[r0:r1, c0:c1] = src[:r1 - r0, :c1 - c0]
        if symmetric and i != j:
          dst[c0:c1, r0:r1] = src[:r1 - r0, :c1 - c0].T
  return out


def _resolve_orders(net: Layer, x1, x2, rtol: float | None, force: bool) -> Layer:
  """Fixes the automatic quadrature order of every elementwise layer without a closed form from an
  error estimate: the network's kernels on a probe of the inputs (up to 8 rows each of x1 and x2,
  the largest-norm and a spread) at orders n and 2n for n in
  :data:`jaxopt_lab.ntk.analytic.QUADRATURE_ORDERS`; the first n whose kernels move by at most
  ``rtol`` of their scale. Traced inputs: :data:`jaxopt_lab.ntk.analytic.TRACED_QUADRATURE_ORDER`.

  Raises:
    ValueError: naming the first quadrature layer and the accuracy reached, when no order does.
  """
  quad = [q for q in net._quadrature_layers() if q.quadrature_order is None]
  if not quad:
    return net
  if not all(analytic._is_concrete(t) for t in (x1, x2)):  # pylint: disable=protected-access
    return net._with_order(analytic.TRACED_QUADRATURE_ORDER)
  # pylint: disable=protected-access
  rows = lambda x: np.asarray(x)[analytic._probe_rows(np.asarray(x).reshape(x.shape[0], -1))]
  probe = jnp.asarray(np.concatenate([rows(x1), rows(x2)]))
  rtol = analytic._default_rtol(probe.dtype) if rtol is None else float(rtol)
  orders = analytic.QUADRATURE_ORDERS
  kernels = lambda n: _kernels_jit(net._with_order(n), probe, probe, same=True, force=force)
  prev, err = kernels(orders[0]), math.inf
  for n, n2 in zip(orders, orders[1:] + (2 * orders[-1],)):
    nxt = kernels(n2)
    err = max(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))
              for a, b in zip(prev, nxt))
    if err <= rtol:
      return net._with_order(n)
    prev = nxt
  raise ValueError(f"layer ({_label(quad[0])}): quadrature reaches only "
                   f"{err:.1e} relative accuracy at order {orders[-1]} on these inputs "
                   f"(quadrature_rtol={rtol:.0e}); use a closed-form activation "
                   f"{analytic.CLOSED_FORM}, smaller inputs or scales, or a larger quadrature_rtol")


# ----------------------------------------------------------------------------------------------
# Monte Carlo kernels of the finite twin.


def empirical_kernels(net: Layer, params: Any, x1: Float[ArrayLike, "n1 ..."],
                      x2: Float[ArrayLike, "n2 ..."] | None = None, *,
                      ntk_outputs: int | None = None) -> Kernels:
  r"""One draw's empirical kernels, per output unit: :math:`\hat K = f(x_1) f(x_2)^\top / O` and
  :math:`\hat\Theta = \tfrac1{O'}\sum_{a < O'} J_a(x_1) J_a(x_2)^\top` over the first
  :math:`O'` = ``ntk_outputs`` (default all :math:`O`) output units; their expectations over the
  initialization tend to :meth:`Layer.kernels` as the widths grow.

  Args:
    net: the network; params: its parameters (``net.init``); x1, x2: inputs (x2 ``None``: x1).
    ntk_outputs: average the NTK over the first this many output units (each costs one backward
      pass per input); ``None``: all.

  Returns:
    ``Kernels(nngp, ntk)`` of shape ``(n1, n2)``.
  """
  x1 = jnp.asarray(x1)
  f = lambda p, x: net.apply(p, x).reshape(x.shape[0], -1)
  f1 = f(params, x1)
  f2 = f1 if x2 is None else f(params, jnp.asarray(x2))
  o = f1.shape[1]
  nngp = jnp.matmul(f1, f2.T, precision=HIGHEST) / o
  k = o if ntk_outputs is None else min(int(ntk_outputs), o)
  head = lambda p, x: f(p, x)[:, :k]
  # jacrev of the batched net: per-example Jacobians of convolutions are grouped convolutions on
  # XLA:CPU, ~15x slower here.
  ntk = empirical_ntk(head, params, x1, x2, method="jacobian_batch", output="trace") / k
  return Kernels(nngp, ntk)


def sample_kernels(key: jax.Array, net: Layer, x1: Float[ArrayLike, "n1 ..."],
                   x2: Float[ArrayLike, "n2 ..."] | None = None, *, num_samples: int,
                   batch_size: int = 1, ntk_outputs: int | None = None) -> Kernels:
  """:func:`empirical_kernels` of ``num_samples`` independent initializations (keys split from
  ``key``), vmapped in batches of ``batch_size``: ``Kernels`` of shape ``(num_samples, n1, n2)``.

  Example:
    >>> ks = sample_kernels(jax.random.key(0), serial(Dense(256), Relu(), Dense(1)), x,
    ...                     num_samples=8)
  """
  _check_key(key)
  x1 = jnp.asarray(x1)
  keys = jax.random.split(key, int(num_samples))
  one = lambda k: empirical_kernels(net, net.init(k, x1.shape, x1.dtype), x1, x2,
                                    ntk_outputs=ntk_outputs)
  return jax.lax.map(one, keys, batch_size=int(batch_size))


def monte_carlo_kernels(key: jax.Array, net: Layer, x1: Float[ArrayLike, "n1 ..."],
                        x2: Float[ArrayLike, "n2 ..."] | None = None, *, num_samples: int,
                        batch_size: int = 1, ntk_outputs: int | None = None) -> Kernels:
  r"""Monte Carlo estimate of the kernels: the mean of :func:`empirical_kernels` over
  ``num_samples`` initializations of the finite network (neural-tangents'
  ``monte_carlo_kernel_fn``), accumulated over batches of ``batch_size`` vmapped draws (memory: one
  batch's Jacobians and two ``(n1, n2)`` sums).

  Example:
    >>> net = serial(Conv(256, (3, 3)), Relu(), Flatten(), Dense(1))
    >>> mc = monte_carlo_kernels(jax.random.key(0), net, x, num_samples=32)

  Reference: Novak et al. 2020 (arXiv:1912.02803), ``monte_carlo_kernel_fn``.
  """
  _check_key(key)
  num_samples, batch_size = int(num_samples), int(batch_size)
  if num_samples < 1 or batch_size < 1 or num_samples % batch_size:
    raise ValueError(f"num_samples: expected a positive multiple of batch_size={batch_size}, got "
                     f"{num_samples}")
  x1 = jnp.asarray(x1)
  keys = jax.random.split(key, num_samples).reshape(num_samples // batch_size, batch_size)
  one = lambda k: empirical_kernels(net, net.init(k, x1.shape, x1.dtype), x1, x2,
                                    ntk_outputs=ntk_outputs)

  def step(acc, ks):
    batch = jax.vmap(one)(ks)
    return jax.tree.map(lambda a, b: a + jnp.sum(b, 0), acc, batch), None

  zero = jax.eval_shape(one, keys[0, 0])
  acc = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zero)
  total, _ = jax.lax.scan(step, acc, keys)
  return Kernels(*(t / num_samples for t in total))


__all__ = [
    "Abs", "AvgPool", "Conv", "Cos", "Dense", "Elementwise", "Erf", "FanInSum", "FanOut", "Flatten",
    "Gelu", "GlobalAvgPool", "Identity", "Layer", "LayerNorm", "LeakyRelu", "Parallel", "Relu",
    "Serial", "Sin", "Tanh", "empirical_kernels", "monte_carlo_kernels", "parallel",
    "sample_kernels", "serial",
]
