r"""Low-rank matrix sensing problems: a Gaussian measurement operator and a rank-r truth.

Convention (arXiv:2310.01769, fact sheet ``shared/science/matrix_sensing.md``):

.. math::
  \mathcal{A}(M)_i = \langle A_i, M\rangle / \sqrt{m}, \qquad
  \mathcal{A}^*(v) = \textstyle\sum_i v_i A_i / \sqrt{m}, \qquad
  y = \mathcal{A}(M^*) + \text{noise}\,\xi,

with :math:`A_i` of iid :math:`N(0, 1)` entries, symmetrized :math:`(Z + Z^\top)/2` in the symmetric
case (drawn in that law from one triangle: :math:`N(0,1)` diagonal, :math:`N(0,1/2)` off the
diagonal, so that it is exactly symmetric). For any matrix
:math:`\langle (Z + Z^\top)/2, M\rangle = \langle Z, \mathrm{sym}(M)\rangle
\sim N(0, |\mathrm{sym}(M)|_F^2)`, so
:math:`\mathbb{E}|\mathcal{A}(M)|^2 = |\mathrm{sym}(M)|_F^2`: that is :math:`|M|_F^2` for the
symmetric matrices symmetric GD produces (no extra constant needed), and the antisymmetric part is
invisible. With unsymmetrized :math:`A_i`, :math:`\mathbb{E}|\mathcal{A}(M)|^2 = |M|_F^2` for every
:math:`M`.

The truth is :math:`M^* = U \mathrm{diag}(\sigma) V^\top` (:math:`V = U`, PSD, in the symmetric
case) with Haar-random orthonormal :math:`U, V` and *geometrically* spaced singular values
:math:`\sigma_i = \kappa^{-(i-1)/(r-1)}`, so :math:`\sigma_1 = 1` and :math:`\sigma_r = 1/\kappa`.

Matrix factorization (MF) is the special case :math:`\mathcal{A} = \mathrm{id}`: ``A`` and ``y`` are
``None`` and every operator below is exact.

The operator lives in the problem, which a sweep shares (un-batched) across all seeds.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike
from jaxtyping import Array, Float


class SensingProblem(NamedTuple):
  r"""A matrix sensing instance (a pytree; ``None`` fields have no leaves).

  Attributes:
    A: ``(m, n1 * n2)`` raw sensing matrices :math:`A_i` flattened row-major (iid :math:`N(0,1)`,
      symmetrized in the symmetric case), without the :math:`1/\sqrt{m}`; ``None`` in MF.
    y: ``(m,)`` measurements :math:`\mathcal{A}(M^*) + \text{noise}\,\xi`; ``None`` in MF.
    m_star: ``(n1, n2)`` the truth :math:`M^* = U \mathrm{diag}(\sigma) V^\top`.
    u: ``(n1, r)`` left singular vectors of :math:`M^*`.
    v: ``(n2, r)`` right singular vectors (equal to ``u`` in the symmetric case).
    sigma: ``(r,)`` singular values, decreasing, :math:`\sigma_1 = 1`, :math:`\sigma_r = 1/\kappa`.
  """

  A: Float[Array, "m n1n2"] | None
  y: Float[Array, " m"] | None
  m_star: Float[Array, "n1 n2"]
  u: Float[Array, "n1 r"]
  v: Float[Array, "n2 r"]
  sigma: Float[Array, " r"]

  @property
  def is_factorization(self) -> bool:
    r"""True in the matrix factorization case (:math:`\mathcal{A} = \mathrm{id}`)."""
    return self.A is None

  @property
  def num_measurements(self) -> int | None:
    """``m``, or ``None`` in MF."""
    return None if self.A is None else self.A.shape[0]


def degrees_of_freedom(n1: int, n2: int, rank: int, symmetric: bool) -> int:
  r"""Dimension of rank-r matrices: :math:`r(n_1 + n_2 - r)`; symmetric :math:`r(2n - r + 1)/2`."""
  if symmetric:
    return rank * (2 * n1 - rank + 1) // 2
  return rank * (n1 + n2 - rank)


_KEY_TAGS = (0x5E4501, 0x5E4502, 0x5E4503, 0x5E4504)  # U, V, A, noise


def _default_dtype() -> np.dtype:
  return jnp.zeros(()).dtype  # float64 under jax_enable_x64, else float32


def _validate(n1: int, n2: int, rank: int, num_measurements: int | None, kappa: float,
              symmetric: bool, noise: float, dtype: np.dtype) -> None:
  sizes = {"n1": n1, "n2": n2, "rank": rank}
  if num_measurements is not None:
    sizes["num_measurements"] = num_measurements
  for name, v in sizes.items():
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
      raise ValueError(f"{name} must be an int, got {v!r}")
  for name, v in (("kappa", kappa), ("noise", noise)):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
      raise ValueError(f"{name} must be a finite number, got {v!r}")
  if n1 < 1 or n2 < 1:
    raise ValueError(f"matrix sizes must be positive, got n1={n1}, n2={n2}")
  if symmetric and n1 != n2:
    raise ValueError(f"a symmetric problem needs n2 == n1, got n1={n1}, n2={n2}")
  if rank < 1:
    raise ValueError(f"rank must be >= 1, got {rank}")
  if rank > min(n1, n2):
    raise ValueError(f"rank {rank} exceeds min(n1, n2) = {min(n1, n2)}")
  if not kappa >= 1.0:
    raise ValueError(f"kappa (condition number sigma_1/sigma_r) must be >= 1, got {kappa}")
  if rank == 1 and kappa != 1.0:
    raise ValueError(f"a rank-1 truth has kappa = 1, got kappa={kappa}")
  if not noise >= 0.0:
    raise ValueError(f"noise must be >= 0, got {noise}")
  if num_measurements is None:
    if noise > 0:
      raise ValueError("noise > 0 needs num_measurements: matrix factorization observes M* exactly")
  else:
    dof = degrees_of_freedom(n1, n2, rank, symmetric)
    if num_measurements < dof:
      raise ValueError(
          f"num_measurements={num_measurements} cannot identify a rank-{rank} matrix: need at "
          f"least {dof} (its degrees of freedom)")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"dtype must be a floating dtype, got {dtype}")
  if dtype == np.float64 and not jax.config.jax_enable_x64:
    raise ValueError("dtype float64 needs jax_enable_x64: "
                     "jax.config.update('jax_enable_x64', True)")


def _haar_orthonormal(key: jax.Array, n: int, r: int, dtype: DTypeLike) -> Float[Array, "n r"]:
  q, rr = jnp.linalg.qr(jax.random.normal(key, (n, r), dtype))
  return q * jnp.sign(jnp.diagonal(rr))[None, :]  # sign fix makes Q Haar-distributed


def make_problem(key: jax.Array, *, n1: int, n2: int | None = None, rank: int,
                 num_measurements: int | None = None, kappa: float = 1.0, symmetric: bool = True,
                 noise: float = 0.0, dtype: DTypeLike | None = None) -> SensingProblem:
  r"""A random rank-r sensing (or MF) problem :math:`y = \mathcal{A}(M^*) + \text{noise}\,\xi`.

  .. math::
    M^* = U \mathrm{diag}(\sigma) V^\top,\quad \sigma_i = \kappa^{-(i-1)/(r-1)},\quad
    \mathcal{A}(M)_i = \langle A_i, M\rangle/\sqrt{m},\quad
    A_i = (Z_i + Z_i^\top)/2 \text{ (symmetric)}.

  Args:
    key: a typed PRNG key (``jax.random.key``).
    n1: rows of :math:`M^*`.
    n2: columns (``None``: ``n1``; must equal ``n1`` when ``symmetric``).
    rank: :math:`r`, the rank of the truth.
    num_measurements: :math:`m`; ``None`` gives matrix factorization
      (:math:`\mathcal{A} = \mathrm{id}`).
    kappa: condition number :math:`\sigma_1/\sigma_r \ge 1` (geometric spacing in between).
    symmetric: PSD truth :math:`U \mathrm{diag}(\sigma) U^\top` and symmetrized :math:`A_i`.
    noise: standard deviation of iid Gaussian noise added to ``y`` (needs measurements).
    dtype: floating dtype of every array (``None``: JAX's default float).

  Returns:
    A :class:`SensingProblem`.

  Raises:
    ValueError: on sizes that are not ints, non-positive sizes, a rank outside ``[1, min(n1, n2)]``,
      ``kappa < 1`` or not finite, negative or non-finite noise, or fewer measurements than the degrees of freedom of a rank-r matrix.

  Example:
    >>> p = make_problem(jax.random.key(0), n1=30, rank=2, num_measurements=600)
    >>> p.A.shape, p.y.shape, p.m_star.shape
    ((600, 900), (600,), (30, 30))

  Reference: Xiong, Ding & Du, arXiv:2310.01769.
  """
  n2 = n1 if n2 is None else n2
  dtype = np.dtype(_default_dtype() if dtype is None else dtype)
  _validate(n1, n2, rank, num_measurements, kappa, symmetric, noise, dtype)
  return _build(key, jnp.asarray(kappa, dtype), jnp.asarray(noise, dtype), n1=n1, n2=n2, rank=rank,
                num_measurements=num_measurements, symmetric=bool(symmetric), dtype=dtype)


# kappa and noise are traced: one compile per shape, whatever their values.
@functools.partial(jax.jit, static_argnames=("n1", "n2", "rank", "num_measurements", "symmetric",
                                             "dtype"))
def _build(key: jax.Array, kappa: jax.Array, noise: jax.Array, *, n1: int, n2: int, rank: int,
           num_measurements: int | None, symmetric: bool, dtype: np.dtype) -> SensingProblem:
  # Named purposes by fold_in (not split): a problem key reused as a run's init key then gives
  # unrelated draws, instead of an init that lies exactly in span(U).
  k_u, k_v, k_a, k_noise = (jax.random.fold_in(key, tag) for tag in _KEY_TAGS)
  u = _haar_orthonormal(k_u, n1, rank, dtype)
  v = u if symmetric else _haar_orthonormal(k_v, n2, rank, dtype)
  exponents = jnp.asarray(np.arange(rank) / max(rank - 1, 1), dtype)
  sigma = kappa ** -exponents
  m_star = (u * sigma[None, :]) @ v.T
  if num_measurements is None:
    return SensingProblem(None, None, m_star, u, v, sigma)
  z = jax.random.normal(k_a, (num_measurements, n1, n2), dtype)
  if symmetric:
    # (Z + Z^T)/2 in law: N(0, 1) diagonal, N(0, 1/2) off-diagonal, built from one triangle so it
    # is exactly symmetric (0.5 * (z + z^T) fused by XLA can differ by an ulp across the diagonal).
    off = jnp.triu(z, 1) * jnp.asarray(math.sqrt(0.5), dtype)
    z = off + jnp.swapaxes(off, 1, 2) + z * jnp.eye(n1, dtype=dtype)[None]
  a = z.reshape(num_measurements, n1 * n2)
  y = (a @ m_star.reshape(-1)) * jnp.asarray(1.0 / math.sqrt(num_measurements), dtype)
  y = y + noise * jax.random.normal(k_noise, y.shape, dtype)  # exactly y when noise = 0
  return SensingProblem(a, y, m_star, u, v, sigma)


def sensing_op(problem: SensingProblem, m: Float[Array, "n1 n2"]) -> Float[Array, "..."]:
  r"""The measurement operator :math:`\mathcal{A}(M)_i = \langle A_i, M\rangle/\sqrt{m}`.

  Args:
    problem: the :class:`SensingProblem`.
    m: an ``(n1, n2)`` matrix.

  Returns:
    ``(m,)`` measurements; in MF (:math:`\mathcal{A} = \mathrm{id}`) the matrix ``m`` itself.

  Example:
    >>> sensing_op(p, p.m_star)  # equals p.y when noise = 0

  Reference: arXiv:2310.01769.
  """
  if problem.A is None:
    return m
  scale = 1.0 / math.sqrt(problem.A.shape[0])
  return (problem.A @ m.reshape(-1)) * jnp.asarray(scale, problem.A.dtype)


def adjoint_op(problem: SensingProblem, v: Float[Array, "..."]) -> Float[Array, "n1 n2"]:
  r"""The adjoint :math:`\mathcal{A}^*(v) = \sum_i v_i A_i / \sqrt{m}`.

  Args:
    problem: the :class:`SensingProblem`.
    v: ``(m,)`` vector (in MF an ``(n1, n2)`` matrix, returned as is).

  Returns:
    The ``(n1, n2)`` matrix :math:`\mathcal{A}^*(v)`, so that
    :math:`\langle \mathcal{A}(M), v\rangle = \langle M, \mathcal{A}^*(v)\rangle`.

  Example:
    >>> adjoint_op(p, p.y).shape
    (30, 30)

  Reference: arXiv:2310.01769.
  """
  if problem.A is None:
    return v
  scale = 1.0 / math.sqrt(problem.A.shape[0])
  return ((v @ problem.A) * jnp.asarray(scale, problem.A.dtype)).reshape(problem.m_star.shape)


def gram_op(problem: SensingProblem, m: Float[Array, "n1 n2"]) -> Float[Array, "n1 n2"]:
  r""":math:`\mathcal{A}^*\mathcal{A}(M)`; the identity in MF.

  Args:
    problem: the :class:`SensingProblem`.
    m: an ``(n1, n2)`` matrix.

  Returns:
    The ``(n1, n2)`` matrix :math:`\mathcal{A}^*\mathcal{A}(M)`.

  Example:
    >>> gram_op(p, x @ x.T - p.m_star)

  Reference: arXiv:2310.01769 (GD moves along
  :math:`\mathcal{A}^*\mathcal{A}(XX^\top - M^*)X`).
  """
  return adjoint_op(problem, sensing_op(problem, m))


def residual_gradient(problem: SensingProblem, m: Float[Array, "n1 n2"]) -> Float[Array, "n1 n2"]:
  r"""Gradient of :math:`\tfrac12|\mathcal{A}(M) - y|^2`: :math:`\mathcal{A}^*(\mathcal{A}(M) - y)`.

  Equals :math:`\mathcal{A}^*\mathcal{A}(M - M^*)` without noise, and :math:`M - M^*` in MF.

  Args:
    problem: the :class:`SensingProblem`.
    m: an ``(n1, n2)`` matrix.

  Returns:
    The ``(n1, n2)`` matrix :math:`\mathcal{A}^*(\mathcal{A}(M) - y)`.

  Example:
    >>> residual_gradient(p, p.m_star)  # zero when noise = 0

  Reference: arXiv:2310.01769.
  """
  if problem.A is None:
    return m - problem.m_star
  return adjoint_op(problem, sensing_op(problem, m) - problem.y)


def measurement_residual(problem: SensingProblem, m: Float[Array, "n1 n2"]) -> Float[Array, "..."]:
  r""":math:`\mathcal{A}(M) - y` (in MF the matrix :math:`M - M^*`); losses are its squared norm."""
  if problem.A is None:
    return m - problem.m_star
  return sensing_op(problem, m) - problem.y
