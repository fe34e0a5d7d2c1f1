r"""abc-parametrized MLPs, the named presets (SP, NTP, MFP, muP) for SGD and Adam, and their training.

An MLP with :math:`L` hidden layers of width :math:`n` (layers :math:`l = 1..L+1`: input layer 1,
hidden layers :math:`2..L`, readout :math:`L+1`) in the abc-parametrization of Yang & Hu (TP4) has

.. math::
    W^l = m^{-a_l} w^l, \qquad w^l_{ij} \sim N\big(0, \sigma^2 m^{-2 b_l} / n^{\mathrm{base}}_{l-1}\big),
    \qquad \text{learning rate } \eta\, m^{-c} \text{ on every } w^l,

with :math:`m = n / n_{\mathrm{base}}` the width multiplier and :math:`n^{\mathrm{base}}_{l-1}` the
fan-in at the base width (:math:`d` for the input layer, :math:`n_{\mathrm{base}}` otherwise).
With ``base_width = 1`` this is TP4's abc-parametrization exactly (:math:`m = n`, constants
:math:`\sigma^2/d` and :math:`\sigma^2` in the variances); at ``width == base_width`` every preset is
the standard parametrization with learning rate :math:`\eta` (LeCun init :math:`\sigma^2/\text{fan-in}`,
plain SGD or Adam on :math:`W`), so muP equals SP exactly there (TP5's base shapes).

The forward pass :math:`h^1 = W^1 x`, :math:`h^{l} = W^{l} \phi(h^{l-1})`, :math:`f = h^{L+1}` writes
the multipliers :math:`m^{-a_l}` out in :meth:`MLP.apply`. Optional biases scale like input weights
(TP4 folds them into the input layer; TP5's table "input weights and biases"): the bias of layer
:math:`l \le L` is :math:`m^{-a_1}\beta^l` with :math:`\beta^l \sim N(0, \sigma^2 m^{-2b_1} / n^{\mathrm{base}}_{l-1})`;
the readout bias is a width-independent parameter with width-independent learning rate
(microsoft/mup's rule for tensors with no infinite dimension).

Symmetry: :math:`(a_l, b_l, c) \to (a_l + \theta, b_l - \theta, c - 2\theta)` leaves SGD training
unchanged; for Adam, whose entrywise-normalized update ignores gradient scale,
:math:`(a_l + \theta, b_l - \theta, c - \theta)` does (:meth:`ABC.shift`).

Presets (TP4 Table 1 for SGD; TP5 Table 3 for Adam, written with one scalar :math:`c` by the Adam
symmetry):

======  =====================================  =====================================  =====
SGD     a                                      b                                      c
======  =====================================  =====================================  =====
sp      0                                      (0, 1/2, ..., 1/2)                     1
ntp     (0, 1/2, ..., 1/2)                     0                                      0
mfp     (0, 1) (L = 1 only)                    0                                      -1
mup     (-1/2, 0, ..., 0, 1/2)                 1/2                                    0
======  =====================================  =====================================  =====

======  =====================================  =====================================  =====
Adam    a                                      b                                      c
======  =====================================  =====================================  =====
sp      0                                      (0, 1/2, ..., 1/2)                     0
ntp     (-1/2, 1/2, ..., 1/2, 0)               (1/2, 0, ..., 0, 1/2)                  1
mfp     (0, 1) (L = 1 only)                    0                                      0
mup     (-1, 0, ..., 0)                        (1, 1/2, ..., 1/2, 1)                  1
======  =====================================  =====================================  =====

Adam's muP is TP5's table (input LR :math:`\eta`, hidden and readout LR :math:`\eta/m`, readout init
variance :math:`1/\text{fan-in}^2`); Adam's NTP and MFP are the Adam parametrizations whose per-layer
update sizes :math:`|\Delta h^l|`, :math:`|\Delta f|` scale as SGD's NTP and MFP (derived here with the
scaling argument of TP4 Section 3 applied to Adam's :math:`\Theta(1)`-entry updates; MFP is muP shifted
by :math:`\theta = 1`).

References: Yang & Hu, "Feature Learning in Infinite-Width Neural Networks", arXiv:2011.14522
(Sections 3, 5); Yang et al., "Tensor Programs V", arXiv:2203.03466 (Table 3, base shapes).
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
import optax
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from jaxopt_lab.engine.algorithm import Algorithm, Metrics

Params = tuple[dict[str, jax.Array], ...]

#: Elementwise activations by name (``gelu`` is the exact, smooth erf GeLU).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "identity": lambda x: x,
}
PRESETS = ("sp", "ntp", "mfp", "mup")
OPTIMIZERS = ("sgd", "adam")


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation called ``name``; ``ValueError`` listing the known names otherwise."""
  try:
    return ACTIVATIONS[name]
  except (KeyError, TypeError):
    raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


@dataclasses.dataclass(frozen=True)
class ABC:
  r"""An abc-parametrization of an MLP with :math:`L` hidden layers (``len(a) == L + 1``).

  Attributes:
    a: per-layer multiplier exponents :math:`a_1, \dots, a_{L+1}`
      (:math:`W^l = n^{-a_l} w^l`).
    b: per-layer init exponents :math:`b_l` (:math:`w^l_{ij} \sim N(0, n^{-2b_l})`).
    c: learning-rate exponent (:math:`\eta n^{-c}` on every :math:`w^l`).
    optimizer: ``"sgd"`` or ``"adam"``: which optimizer ``c`` refers to (it fixes the symmetry and
      the stability conditions).
    name: a label (``"mup"`` for a preset, ``"custom"`` otherwise).

  Any finite values are accepted (so unstable parametrizations can be trained and watched diverge);
  :func:`jaxopt_lab.mup.dichotomy.classify` says which regime they are in and
  :func:`jaxopt_lab.mup.dichotomy.require_stable` raises for unstable ones.

  Example:
    >>> ABC(a=(-0.5, 0.0, 0.5), b=(0.5, 0.5, 0.5), c=0.0).depth
    2

  Reference: arXiv:2011.14522, Definition 3.1.
  """

  a: tuple[float, ...]
  b: tuple[float, ...]
  c: float
  optimizer: str = "sgd"
  name: str = "custom"

  def __post_init__(self):
    try:
      a = tuple(float(v) for v in self.a)
      b = tuple(float(v) for v in self.b)
      c = float(self.c)
    except (TypeError, ValueError):
      raise ValueError(f"a, b must be sequences of numbers and c a number; got a={self.a!r}, "
                       f"b={self.b!r}, c={self.c!r}") from None
    if len(a) != len(b) or len(a) < 2:
      raise ValueError(f"a and b need one entry per layer, L + 1 >= 2 of them (depth L >= 1); got "
                       f"len(a) = {len(a)}, len(b) = {len(b)}")
    if not all(math.isfinite(v) for v in (*a, *b, c)):
      raise ValueError(f"a, b, c must be finite; got a={a}, b={b}, c={c}")
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
    object.__setattr__(self, "a", a)
    object.__setattr__(self, "b", b)
    object.__setattr__(self, "c", c)

  @property
  def depth(self) -> int:
    """Number of hidden layers :math:`L`."""
    return len(self.a) - 1

  def shift(self, theta: float) -> "ABC":
    r"""The equivalent parametrization :math:`(a + \theta, b - \theta, c - 2\theta)` (Adam: :math:`c - \theta`).

    Training trajectories of the effective weights :math:`W^l` are unchanged (exactly, at any width).
    """
    if not isinstance(theta, (int, float)) or not math.isfinite(float(theta)):
      raise ValueError(f"theta must be a finite number, got {theta!r}")
    th = (float(theta),) * len(self.a)
    dc = (2.0 if self.optimizer == "sgd" else 1.0) * float(theta)
    return ABC(tuple(x + t for x, t in zip(self.a, th)), tuple(x - t for x, t in zip(self.b, th)),
               self.c - dc, self.optimizer, self.name)


def preset(name: str, depth: int, optimizer: str = "sgd", *, c: float | None = None) -> ABC:
  r"""A named abc-parametrization (table in the module docstring) for ``depth`` hidden layers.

  Args:
    name: ``"sp"``, ``"ntp"``, ``"mfp"`` (``depth == 1`` only) or ``"mup"``; case-insensitive.
    depth: number of hidden layers :math:`L \ge 1`.
    optimizer: ``"sgd"`` or ``"adam"``.
    c: override the preset's learning-rate exponent (e.g. SP with constant LR: ``c=0``).

  Returns:
    The :class:`ABC`.

  Raises:
    ValueError: unknown name or optimizer, ``depth < 1``, MFP with ``depth > 1``.

  Example:
    >>> preset("mup", 2).a
    (-0.5, 0.0, 0.5)

  Reference: arXiv:2011.14522 Table 1 and Definition 5.1; arXiv:2203.03466 Table 3.
  """
  key = str(name).lower()
  if key not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
  if not isinstance(depth, int) or depth < 1:
    raise ValueError(f"depth (number of hidden layers L) must be an int >= 1, got {depth!r}")
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
  L = depth
  hid = (L - 1,)  # count of hidden-to-hidden layers
  if key == "mfp" and L != 1:
    raise ValueError(f"MFP (mean-field) is defined for one hidden layer (depth 1), got depth {L}")
  sgd = optimizer == "sgd"
  if key == "sp":
    a, b, c0 = (0.0,) * (L + 1), (0.0,) + (0.5,) * L, (1.0 if sgd else 0.0)
  elif key == "ntp":
    if sgd:
      a, b, c0 = (0.0,) + (0.5,) * L, (0.0,) * (L + 1), 0.0
    else:
      a, b, c0 = (-0.5,) + (0.5,) * hid[0] + (0.0,), (0.5,) + (0.0,) * hid[0] + (0.5,), 1.0
  elif key == "mfp":
    a, b, c0 = (0.0, 1.0), (0.0, 0.0), (-1.0 if sgd else 0.0)
  else:  # mup
    if sgd:
      a, b, c0 = (-0.5,) + (0.0,) * hid[0] + (0.5,), (0.5,) * (L + 1), 0.0
    else:
      a, b, c0 = (-1.0,) + (0.0,) * L, (1.0,) + (0.5,) * hid[0] + (1.0,), 1.0
  return ABC(a, b, c0 if c is None else c, optimizer, key)


# --------------------------------------------------------------------------------------------------
# The network.


class Scalings(NamedTuple):
  r"""Every width-dependent number of an :class:`MLP`, per layer (floats, or arrays when traced).

  Attributes:
    mults: forward multipliers :math:`m^{-a_l}`.
    bias_mults: forward multipliers of the biases.
    stds: init standard deviations of :math:`w^l`.
    bias_stds: init standard deviations of the biases.
    lr_scale: learning-rate factor :math:`m^{-c}`.
  """

  mults: Any
  bias_mults: Any
  stds: Any
  bias_stds: Any
  lr_scale: Any


def init_params(key: jax.Array, shapes: Sequence[tuple[int, int]], scal: Scalings, *, bias: bool,
                readout_zero_init: bool = False, dtype: Any = None,
                distribution: str = "normal") -> Params:
  r"""Draws ``w^l`` with standard deviation ``stds[l]`` (and biases) for ``(fan_in, fan_out)`` shapes.

  ``distribution``: ``"normal"`` or ``"uniform"`` (:math:`U(-\sqrt3 s, \sqrt3 s)`, PyTorch's
  ``nn.Linear`` default family, with the same standard deviation ``s``).
  """
  dtype = dtype or jnp.result_type(float)
  sizes = []
  for shape in shapes:
    sizes += [math.prod(shape)] + ([shape[1]] if bias else [])
  if distribution not in ("normal", "uniform"):
    raise ValueError(f"unknown init distribution {distribution!r}; choose 'normal' or 'uniform'")
  z = _draw(key, sum(sizes), dtype, distribution)  # one draw for all tensors: one RNG op to compile
  offsets = np.cumsum([0] + sizes)
  chunks = [z[o:o + k] for o, k in zip(offsets[:-1], sizes)]
  last = len(shapes) - 1
  params = []
  for l, shape in enumerate(shapes):
    zero = readout_zero_init and l == last
    zw = chunks.pop(0).reshape(shape)
    layer = {"w": jnp.zeros(shape, dtype) if zero else jnp.asarray(scal.stds[l], dtype) * zw}
    if bias:
      zb = chunks.pop(0)
      layer["b"] = (jnp.zeros(shape[1:], dtype) if zero
                    else jnp.asarray(scal.bias_stds[l], dtype) * zb)
    params.append(layer)
  return tuple(params)


# Threefry-2x32 (20 rounds) of Salmon et al. 2011, as JAX computes it, written out round by round.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array,
                  x2: jax.Array) -> tuple[jax.Array, jax.Array]:
  def rotl(v, d):
    return (v << np.uint32(d)) | (v >> np.uint32(32 - d))

  ks = (k1, k2, k1 ^ k2 ^ np.uint32(0x1BD11BDA))
  x1, x2 = x1 + ks[0], x2 + ks[1]
  for i in range(5):
    for r in _THREEFRY_ROTATIONS[i % 2]:
      x1 = x1 + x2
      x2 = x1 ^ rotl(x2, r)
    x1, x2 = x1 + ks[(i + 1) % 3], x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x1, x2


def _threefry_bits(key: jax.Array, size: int, nbits: int) -> jax.Array | None:
  """``jax.random.bits(key, (size,))`` bit for bit, or None where this path does not apply."""
  if (str(jax.random.key_impl(key)) != "threefry2x32" or not jax.config.jax_threefry_partitionable
      or nbits not in (32, 64) or size >= 2 ** 32):
    return None
  kd = jax.random.key_data(key)
  b1, b2 = _threefry2x32(kd[0], kd[1], jnp.zeros((size,), jnp.uint32),
                         jax.lax.iota(jnp.uint32, size))
  if nbits == 32:
    return b1 ^ b2
  return (b1.astype(jnp.uint64) << np.uint64(32)) | b2.astype(jnp.uint64)


def _draw(key: jax.Array, size: int, dtype: Any, distribution: str) -> jax.Array:
  r"""``size`` iid draws: ``"normal"`` :math:`N(0, 1)` or ``"uniform"`` :math:`U(-\sqrt3, \sqrt3)`.

  Equal bit for bit to ``jax.random.normal(key, (size,), dtype)`` and
  ``jax.random.uniform(key, (size,), dtype, -sqrt(3), sqrt(3))``. For threefry keys (JAX's default)
  the bits come from the Threefry-2x32 hash written out round by round: JAX lowers its threefry
  primitive on CPU as a rolled loop (compact to compile, about 7x slower to run: at widths of
  thousands the initialization dominated a coordinate check), XLA fuses the unrolled rounds into one
  vectorized loop. The bits then become floats exactly as ``jax.random.uniform`` does (random
  mantissa bits with exponent 0, minus 1, scaled) and normals as
  :math:`\sqrt2\,\mathrm{erf}^{-1}(u)` with :math:`u \sim U(\mathrm{nextafter}(-1, 0), 1)`.
  Other key implementations go to ``jax.random``.

  Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC 2011), Threefry.
  """
  dtype = jnp.dtype(dtype)
  if distribution == "normal":
    lo, hi = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype)), np.array(1.0, dtype)
  elif distribution == "uniform":
    lo, hi = np.array(-math.sqrt(3.0), dtype), np.array(math.sqrt(3.0), dtype)
  else:
    raise ValueError(f"unknown init distribution {distribution!r}; choose 'normal' or 'uniform'")
  finfo = jnp.finfo(dtype)
  bits = _threefry_bits(key, size, finfo.bits) if finfo.nmant >= 8 else None
  if bits is None:
    if distribution == "normal":
      return jax.random.normal(key, (size,), dtype)
    return jax.random.uniform(key, (size,), dtype, lo, hi)
  one = jnp.asarray(np.array(1.0, dtype).view(bits.dtype), bits.dtype)
  mant = (bits >> np.array(finfo.bits - finfo.nmant, bits.dtype)) | one
  u = jax.lax.bitcast_convert_type(mant, dtype) - np.array(1.0, dtype)
  u = jnp.maximum(lo, u * (hi - lo) + lo)
  if distribution == "normal":
    return np.array(np.sqrt(2), dtype) * jax.lax.erf_inv(u)
  return u


def forward(params: Params, x: Float[Array, "batch d_in"], scal: Scalings,
            activation: str) -> list[jax.Array]:
  r"""Pre-activations :math:`[h^1, \dots, h^L, f]`, :math:`h^l = m^{-a_l} w^l x^{l-1} + \text{bias}`."""
  phi = activation_fn(activation)
  hs: list[jax.Array] = []
  inp = x
  for l, layer in enumerate(params):
    if l:
      inp = phi(hs[-1])
    h = jnp.asarray(scal.mults[l], x.dtype) * (inp @ layer["w"])
    if "b" in layer:
      h = h + jnp.asarray(scal.bias_mults[l], x.dtype) * layer["b"][None, :]
    hs.append(h)
  return hs




@dataclasses.dataclass(frozen=True)
class MLP:
  r"""An abc-parametrized MLP :math:`d \to n \to \dots \to n \to d_o` (hashable: a static jit arg).

  ``init(key) -> params`` and ``apply(params, x)`` act on plain pytrees: ``params`` is a tuple of
  ``{"w": (fan_in, fan_out)}`` dicts (plus ``"b"`` when ``bias``), one per layer, holding the
  trained :math:`w^l`; the multipliers :math:`m^{-a_l}` are applied in :meth:`apply`.

  Attributes:
    abc: the :class:`ABC` parametrization (its depth is the number of hidden layers).
    d_in: input dimension :math:`d`.
    width: hidden width :math:`n`.
    d_out: output dimension :math:`d_o`.
    activation: a name of :data:`ACTIVATIONS`.
    base_width: width at which every parametrization is SP with LR :math:`\eta` (1: TP4's form).
    bias: whether layers have biases (see the module docstring for their scaling).
    sigma: init scale :math:`\sigma` (weights :math:`N(0, \sigma^2/\text{fan-in})` at base width).
    readout_zero_init: initialize the readout weights (and bias) at zero.
    init_distribution: ``"normal"`` or ``"uniform"`` (same standard deviations).

  Example:
    >>> net = MLP(preset("mup", 2), d_in=1, width=256, d_out=1)
    >>> params = net.init(jax.random.key(0))
    >>> net.apply(params, jnp.ones((3, 1))).shape
    (3, 1)

  Reference: arXiv:2011.14522, Section 3; arXiv:2203.03466, Section 4 (base shapes).
  """

  abc: ABC
  d_in: int
  width: int
  d_out: int
  activation: str = "tanh"
  base_width: int = 1
  bias: bool = False
  sigma: float = 1.0
  readout_zero_init: bool = False
  init_distribution: str = "normal"

  def __post_init__(self):
    if not isinstance(self.abc, ABC):
      raise ValueError(f"abc must be an ABC (see preset()), got {type(self.abc).__name__}")
    for name in ("d_in", "width", "d_out", "base_width"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    activation_fn(self.activation)
    if not math.isfinite(float(self.sigma)) or self.sigma <= 0:
      raise ValueError(f"sigma must be finite and > 0, got {self.sigma!r}")
    if self.init_distribution not in ("normal", "uniform"):
      raise ValueError(f"init_distribution must be 'normal' or 'uniform', got "
                       f"{self.init_distribution!r}")

  @property
  def depth(self) -> int:
    """Number of hidden layers :math:`L`."""
    return self.abc.depth

  @property
  def width_mult(self) -> float:
    """:math:`m = n / n_{\\mathrm{base}}`."""
    return self.width / self.base_width

  def shapes(self) -> tuple[tuple[int, int], ...]:
    """``(fan_in, fan_out)`` of each layer's weight."""
    dims = (self.d_in,) + (self.width,) * self.depth + (self.d_out,)
    return tuple(zip(dims[:-1], dims[1:]))

  def _base_fan_in(self, l: int) -> int:
    return self.d_in if l == 0 else self.base_width

  def multipliers(self) -> tuple[float, ...]:
    r"""The forward multipliers :math:`m^{-a_l}`, one per layer."""
    return tuple(self.width_mult ** -a for a in self.abc.a)

  def _readout_bias_exponent(self) -> float:
    # A width-independent parameter with width-independent LR: a = -c/2 (SGD) or -c (Adam), b = -a.
    return -self.abc.c / (2.0 if self.abc.optimizer == "sgd" else 1.0)

  def bias_multipliers(self) -> tuple[float, ...]:
    r"""Forward multipliers of the biases: :math:`m^{-a_1}` for layers :math:`\le L`, then the readout's."""
    m = self.width_mult
    return (m ** -self.abc.a[0],) * self.depth + (m ** -self._readout_bias_exponent(),)

  def init_stds(self) -> tuple[float, ...]:
    r"""Init standard deviations of :math:`w^l`: :math:`\sigma m^{-b_l} / \sqrt{n^{\mathrm{base}}_{l-1}}`."""
    m = self.width_mult
    return tuple(self.sigma * m ** -b / math.sqrt(self._base_fan_in(l))
                 for l, b in enumerate(self.abc.b))

  def bias_init_stds(self) -> tuple[float, ...]:
    """Init standard deviations of the bias parameters."""
    m = self.width_mult
    hidden = tuple(self.sigma * m ** -self.abc.b[0] / math.sqrt(self._base_fan_in(l))
                   for l in range(self.depth))
    return hidden + (self.sigma * m ** self._readout_bias_exponent() / math.sqrt(self.base_width),)

  @property
  def lr_scale(self) -> float:
    r"""The learning-rate multiplier :math:`m^{-c}` applied to every parameter."""
    return self.width_mult ** -self.abc.c

  def scalings(self) -> Scalings:
    """This network's :class:`Scalings` (Python floats)."""
    return Scalings(self.multipliers(), self.bias_multipliers(), self.init_stds(),
                    self.bias_init_stds(), self.lr_scale)

  def init(self, key: jax.Array, dtype: Any = None) -> Params:
    """Parameters :math:`w^l` (and biases), drawn with :meth:`init_stds`; one key split per layer."""
    return init_params(key, self.shapes(), self.scalings(), bias=self.bias,
                       readout_zero_init=self.readout_zero_init, dtype=dtype,
                       distribution=self.init_distribution)

  def preactivations(self, params: Params, x: Float[Array, "batch d_in"]) -> list[jax.Array]:
    r""":math:`[h^1, \dots, h^L, f]` on a batch: :math:`h^l = m^{-a_l} w^l x^{l-1} + \text{bias}`."""
    return forward(params, x, self.scalings(), self.activation)

  def apply(self, params: Params, x: Float[Array, "batch d_in"]) -> Float[Array, "batch d_out"]:
    """The network output :math:`f(x)`."""
    return self.preactivations(params, x)[-1]

  def effective_params(self, params: Params) -> Params:
    r"""The weights the forward pass uses, :math:`W^l = m^{-a_l} w^l` (and biases): the
    "practical" form with every multiplier folded into the parameters."""
    out = []
    for layer, mult, bmult in zip(params, self.multipliers(), self.bias_multipliers()):
      new = {"w": mult * layer["w"]}
      if "b" in layer:
        new["b"] = bmult * layer["b"]
      out.append(new)
    return tuple(out)

  def practical_lr_multipliers(self) -> Params:
    r"""Per-tensor LR multipliers that train :meth:`effective_params` exactly like this net.

    Training :math:`W = \kappa w` with LR :math:`\eta\kappa^2` (SGD) or :math:`\eta\kappa` (Adam) on
    :math:`W` equals training :math:`w` with :math:`\eta`; so the multiplier is
    :math:`m^{-c}\kappa^2` (SGD) or :math:`m^{-c}\kappa` (Adam) with :math:`\kappa = m^{-a_l}`.
    The muP values are TP5 Table 3's (SGD: input :math:`m`, hidden 1, readout :math:`1/m`).
    """
    p = 2.0 if self.abc.optimizer == "sgd" else 1.0
    out = []
    for mult, bmult in zip(self.multipliers(), self.bias_multipliers()):
      layer = {"w": self.lr_scale * mult ** p}
      if self.bias:
        layer["b"] = self.lr_scale * bmult ** p
      out.append(layer)
    return tuple(out)


def shape_only(net: MLP) -> MLP:
  """``net`` with a placeholder abc (same depth and optimizer): the static, shape-only part of a
  compiled program whose scalings are traced, so one compile serves every parametrization."""
  L = net.depth
  return dataclasses.replace(net, abc=ABC((0.0,) * (L + 1), (0.0,) * (L + 1), 0.0,
                                          net.abc.optimizer, "shape"))


def practical_mlp(net: MLP) -> MLP:
  """The same network in practical form: ``a = 0`` and ``c = 0`` (all scalings in init and LR).

  Use with :meth:`MLP.effective_params` of ``net``'s parameters and
  :meth:`MLP.practical_lr_multipliers` of ``net`` as per-tensor LR multipliers: trajectories equal.
  """
  abc = ABC((0.0,) * len(net.abc.a), tuple(a + b for a, b in zip(net.abc.a, net.abc.b)), 0.0,
            net.abc.optimizer, net.abc.name + "_practical")
  return dataclasses.replace(net, abc=abc, base_width=net.base_width)


# --------------------------------------------------------------------------------------------------
# Optax: per-tensor learning-rate scaling usable after any optimizer.


class ScaleByTreeState(NamedTuple):
  """No state: the multipliers are constants."""


def scale_by_tree(multipliers: Any) -> optax.GradientTransformation:
  r"""An optax transformation multiplying each update leaf by a constant: :math:`u \leftarrow s \odot u`.

  ``multipliers`` is a pytree with the structure of the parameters (or a prefix of it) holding
  Python floats or arrays. Chain it after any optimizer, e.g. muP for Adam:
  ``optax.chain(optax.adam(lr), scale_by_tree(mults))`` (the scaling is linear, so its place in a
  chain of linear transformations does not matter; for decoupled weight decay, note that it scales
  the decay too, as microsoft/mup's MuAdamW keeps lr * weight_decay width-independent).

  Example:
    >>> tx = optax.chain(optax.sgd(0.1), scale_by_tree(net.practical_lr_multipliers()))

  Reference: arXiv:2203.03466, Table 3 (per-layer learning rates).
  """

  def init_fn(params):
    del params
    return ScaleByTreeState()

  mult_leaves = jax.tree.leaves(multipliers)

  def update_fn(updates, state, params=None):
    del params
    try:
      return jax.tree.map(lambda s, u: jax.tree.map(lambda x: s * x, u), multipliers, updates), state
    except ValueError:
      # Same leaves, other containers (e.g. nnx hands the optimizer a State without its Variable
      # wrappers): pair the leaves in their flattening order.
      leaves, treedef = jax.tree.flatten(updates)
      if len(leaves) != len(mult_leaves):
        raise
      return jax.tree.unflatten(treedef, [s * u for s, u in zip(mult_leaves, leaves)]), state

  return optax.GradientTransformation(init_fn, update_fn)


def width_scaling(net: MLP) -> optax.GradientTransformation:
  r"""The abc learning-rate factor :math:`m^{-c}` of ``net`` as an optax transformation.

  ``optax.chain(optax.adam(lr), width_scaling(net))`` trains ``net``'s parameters :math:`w^l` with
  LR :math:`\eta m^{-c}` (the multipliers :math:`m^{-a_l}` live in :meth:`MLP.apply`).
  """
  return optax.scale(net.lr_scale)


# --------------------------------------------------------------------------------------------------
# Training with the engine.


class Task(NamedTuple):
  """Training data: inputs ``x`` (N, d) and targets ``y``: (N, d_out) floats (mse) or (N,) int labels."""

  x: jax.Array
  y: jax.Array


class TrainState(NamedTuple):
  """Parameters, optimizer state, and the loss and gradient at the parameters on the next batch.

  Attributes:
    params: the network parameters :math:`w^l`.
    opt_state: state of the direction transformation (Adam moments; empty for SGD).
    loss: loss at ``params`` on the batch the next step uses.
    grads: its gradient.
    key: data-order key (per-step batches by ``fold_in(key, step)``).
    step: int32 steps taken.
  """

  params: Params
  opt_state: Any
  loss: jax.Array
  grads: Params
  key: jax.Array
  step: jax.Array


def _loss_of(f: jax.Array, y: jax.Array, loss: str) -> jax.Array:
  if loss == "mse":
    return 0.5 * jnp.sum(jnp.square(f - y)) / f.shape[0]
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(f, y))


def loss_fn(net: MLP, loss: str, params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
  r"""``"mse"``: :math:`\frac{1}{2B}\sum_i |f(x_i) - y_i|^2`; ``"xent"``: mean softmax cross-entropy."""
  if loss not in ("mse", "xent"):
    raise ValueError(f"unknown loss {loss!r}; choose 'mse' or 'xent'")
  return _loss_of(net.apply(params, x), y, loss)


def _direction(optimizer: str | optax.GradientTransformation, eps: float) -> optax.GradientTransformation:
  if isinstance(optimizer, optax.GradientTransformation):
    return optimizer
  if optimizer == "sgd":
    return optax.identity()
  if optimizer == "adam":
    return optax.scale_by_adam(eps=eps)
  raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd', 'adam' or pass an optax "
                   "GradientTransformation (the update direction, without the learning rate)")


def _algorithm(net: MLP, *, loss: str, batch_size: int | None,
               optimizer: str | optax.GradientTransformation | None, adam_eps: float,
               traced_scalings: bool) -> Algorithm:
  """The training algorithm; with ``traced_scalings`` the problem is ``(Task, Scalings)``."""
  if loss not in ("mse", "xent"):
    raise ValueError(f"unknown loss {loss!r}; choose 'mse' or 'xent'")
  if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                 or batch_size < 1):
    raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
  direction = _direction(net.abc.optimizer if optimizer is None else optimizer, adam_eps)

  def split(problem) -> tuple[Task, Scalings]:
    return problem if traced_scalings else (problem, net.scalings())

  def objective(params, x, y, scal):
    return _loss_of(forward(params, x, scal, net.activation)[-1], y, loss)

  value_and_grad = jax.value_and_grad(objective)

  def batch(task: Task, key: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
    if batch_size is None:
      return task.x, task.y
    idx = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, task.x.shape[0])
    return task.x[idx], task.y[idx]

  def init(key: jax.Array, problem) -> TrainState:
    task, scal = split(problem)
    k_init, k_data = jax.random.split(key)
    params = init_params(k_init, net.shapes(), scal, bias=net.bias,
                         readout_zero_init=net.readout_zero_init, dtype=task.x.dtype,
                         distribution=net.init_distribution)
    step = jnp.zeros((), jnp.int32)
    loss_val, grads = value_and_grad(params, *batch(task, k_data, step), scal)
    return TrainState(params, direction.init(params), loss_val, grads, k_data, step)

  def step(state: TrainState, problem, *, lr: ArrayLike) -> tuple[TrainState, Metrics]:
    task, scal = split(problem)
    lr = jnp.asarray(lr, task.x.dtype) * jnp.asarray(scal.lr_scale, task.x.dtype)
    upd, opt_state = direction.update(state.grads, state.opt_state, state.params)
    params = jax.tree.map(lambda p, u: p - lr * u.astype(p.dtype), state.params, upd)
    t = state.step + 1
    loss_val, grads = value_and_grad(params, *batch(task, state.key, t), scal)
    return TrainState(params, opt_state, loss_val, grads, state.key, t), {"loss": loss_val}

  return Algorithm(f"mlp_{net.abc.name}_{net.abc.optimizer}_L{net.depth}_n{net.width}", init, step)


def train_algorithm(net: MLP, *, loss: str = "mse", batch_size: int | None = None,
                    optimizer: str | optax.GradientTransformation | None = None,
                    adam_eps: float = 1e-8) -> Algorithm:
  r"""Training ``net`` on a :class:`Task` as an engine :class:`~jaxopt_lab.engine.Algorithm` (hp ``lr``).

  .. math:: w \leftarrow w - \eta\, m^{-c}\, D_t(\nabla_w \mathcal{L}),

  with :math:`D_t` the identity (SGD), Adam's normalized moment ratio, or any optax transformation
  given as ``optimizer`` (the update direction, without a learning rate). Batches: the whole task
  (``batch_size=None``) or ``batch_size`` indices drawn uniformly with replacement by
  ``fold_in(key, step)``. The metric ``loss`` is the loss after the update on the next step's batch
  (the training loss when full-batch). An unstable parametrization simply goes non-finite, which the
  engine reports per run as ``diverged_at``.

  Args:
    net: the :class:`MLP` (static).
    loss: ``"mse"`` or ``"xent"``.
    batch_size: minibatch size, or None for full batch.
    optimizer: ``"sgd"``, ``"adam"`` or an optax transformation; default ``net.abc.optimizer``.
    adam_eps: Adam's epsilon.

  Returns:
    The Algorithm; ``init(key, task)`` draws ``net.init`` in the dtype of ``task.x``.

  Example:
    >>> alg = train_algorithm(MLP(preset("mup", 2), 64, 256, 10), loss="xent")
    >>> res = sweep(alg, task, seeds=range(4), hp={"lr": [0.1, 0.3, 1.0]}, num_steps=100)

  Reference: arXiv:2011.14522, Section 3 (SGD); arXiv:2203.03466, Section 4 (Adam).
  """
  return _algorithm(net, loss=loss, batch_size=batch_size, optimizer=optimizer, adam_eps=adam_eps,
                    traced_scalings=False)


__all__ = [
    "ABC", "ACTIVATIONS", "MLP", "PRESETS", "Params", "Scalings", "Task", "TrainState",
    "activation_fn", "forward", "init_params", "loss_fn", "practical_mlp", "preset", "scale_by_tree", "shape_only", "train_algorithm", "width_scaling",
]
