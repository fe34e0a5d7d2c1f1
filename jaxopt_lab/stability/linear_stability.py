r"""Exact mean-square linear stability of SGD at an interpolating minimum.

At an interpolating minimum :math:`\theta^*` of :math:`L = \frac1n\sum_i \tfrac12\|f_i - y_i\|^2`
every :math:`\nabla l_i` vanishes and :math:`H_i = J_i^\top J_i` (rank one for scalar outputs:
:math:`g_i g_i^\top`), :math:`H = \frac1n\sum_i H_i`. Linearized SGD with batch size :math:`B` is
:math:`\delta_{t+1} = (I - \eta H_\xi)\delta_t`, :math:`H_\xi = \frac1B\sum_{i\in\xi}H_i`, and its second
moment :math:`S_t = \mathbb{E}\,\delta_t\delta_t^\top` follows

.. math::
   S_{t+1} = \mathcal{Q}(S_t) = S_t - \eta(HS_t + S_tH) + \eta^2\Big[(1-p)HS_tH
   + \frac pn\sum_i H_iS_tH_i\Big] = (I - 2\eta\,\mathcal{C} + \eta^2\mathcal{D})(S_t),

with :math:`p = \frac{n-B}{B(n-1)}` for uniform batches without replacement and :math:`p = 1/B`
with replacement, :math:`\mathcal{C}(S) = \tfrac12(HS + SH)` and
:math:`\mathcal{D}(S) = (1-p)HSH + \frac pn\sum_i H_iSH_i`. :math:`\theta^*` is stable iff

.. math:: \eta \le \eta^* = \frac{2}{\lambda_{\max}(\mathcal{C}^+\mathcal{D})}

on symmetric matrices with range in :math:`\mathrm{range}(H)` (the null space is frozen).
:math:`\eta^*` is non-decreasing in :math:`B` and equals :math:`2/\lambda_{\max}(H)` at :math:`B=n`.

Two implementations:

- :func:`threshold` (operator form): coordinates of :math:`\mathrm{range}(H)` from the Gram matrix of
  the stacked Jacobians (:math:`nk\times nk`) or from :math:`H` (:math:`d\times d`), whichever is
  smaller, then Lanczos on the symmetric operator :math:`\mathcal{C}^{-1/2}\mathcal{D}\,\mathcal{C}^{-1/2}`
  acting on :math:`r\times r` symmetric matrices (an isometric half-vectorization); for small
  :math:`r` (:math:`r(r+1)/2 \le` ``DENSE_MAX``) the same operator is built densely and ``eigh``-ed. Memory
  :math:`O(r^2 + nkr)`, no :math:`d^2\times d^2` (nor :math:`r^2 \times r^2`) matrix; each product
  costs :math:`O(nk r^2)`. ``method="dense"`` builds the :math:`\frac{r(r+1)}2`-square operator on
  range(H) and takes ``eigh`` (a cross-check for moderate ``r``).
- :func:`threshold_dense` (reference, small ``d``): the fact sheet's formula with
  :math:`d^2\times d^2` Kronecker matrices, :math:`2/\max\mathrm{Re}\,\mathrm{eig}(C^+D)`.

Plus :func:`necessary_bound`, :func:`trace_bound`, :func:`wu_ma_e` (sharpness / non-uniformity),
:func:`second_moment_log_trace` (the recursion) and :func:`simulate_linear_sgd` (Monte Carlo), and
:func:`factors_at` / :func:`analyze` that take a model at a point and refuse one that is not a minimum.

References: Wu & Su 2023 (arXiv:2305.17490); Ma & Ying 2021 (arXiv:2106.07589); Mulayoff & Michaeli
2023 (arXiv:2306.07850); Wu, Ma & E 2018 (NeurIPS).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from jaxopt_lab.stability import curvature

PyTree = Any
# Largest svec dimension r (r + 1) / 2 for which method="auto" builds the operator densely.
DENSE_MAX = 600


class RangeCoordinates(NamedTuple):
  r"""The per-example factors in an orthonormal basis of (a superset of) :math:`\mathrm{range}(H)`.

  Attributes:
    a: ``(n, k, r)`` coordinates of the Jacobian rows, :math:`H_i = a_i^\top a_i` in these
      coordinates.
    lam: ``(r,)`` eigenvalues of :math:`H` on these coordinates (:math:`H = \mathrm{diag}(\lambda)`).
    mask: ``(r,)`` True where :math:`\lambda` is numerically non-zero (the range of :math:`H`).
  """

  a: Float[Array, "n k r"]
  lam: Float[Array, " r"]
  mask: Array


class WuMaE(NamedTuple):
  r"""Wu-Ma-E quantities: sharpness :math:`a = \lambda_{\max}(H)`, non-uniformity
  :math:`s^2 = \lambda_{\max}(\frac1n\sum_i H_i^2 - H^2)`, and the step size
  :math:`2a/(a^2 + p s^2)` where :math:`(1 - \eta a)^2 + \eta^2 p s^2 = 1`."""

  sharpness: Float[Array, ""]
  nonuniformity: Float[Array, ""]
  eta_bound: Float[Array, ""]


class Analysis(NamedTuple):
  """The linear-stability numbers of one minimum (see :func:`analyze`)."""

  eta_star: Float[Array, ""]
  gd_threshold: Float[Array, ""]
  necessary: Float[Array, ""]
  trace_bound: Float[Array, ""]
  wu_ma_e: WuMaE
  trace: Float[Array, ""]
  sharpness: Float[Array, ""]
  frobenius_sq: Float[Array, ""]


# --------------------------------------------------------------------------------------------------
# Inputs.


def noise_factor(n: int, batch_size: int, *, replacement: bool = False) -> float:
  r""":math:`p = \frac{n - B}{B(n - 1)}` (uniform batches without replacement) or :math:`1/B` (with).

  Example:
    >>> noise_factor(12, 1)   # 1.0
  """
  if not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
    raise ValueError(f"batch size must be an int in [1, n = {n}], got {batch_size!r}")
  if replacement:
    return 1.0 / batch_size
  return 0.0 if n == 1 else (n - batch_size) / (batch_size * (n - 1))


def _as_factors(factors: jax.Array) -> jax.Array:
  """``(n, d)`` gradients or ``(n, k, d)`` Jacobians as ``(n, k, d)``, floating, finite if concrete.

  Integer or boolean factors are exact numbers: they are promoted to JAX's default float. NaN or inf
  in concrete factors raises (a threshold from them would be a silent ``inf`` or NaN).
  """
  factors = jnp.asarray(factors)
  if not jnp.issubdtype(factors.dtype, jnp.floating):
    if jnp.issubdtype(factors.dtype, jnp.complexfloating):
      raise ValueError(f"factors must be real, got dtype {factors.dtype}")
    factors = factors.astype(jnp.result_type(float))
  if not isinstance(factors, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(factors))):
    bad = int(jnp.sum(~jnp.isfinite(factors)))
    raise ValueError(f"factors hold {bad} non-finite entries (NaN or inf): the gradients at the "
                     "minimum must be finite")
  if factors.ndim == 2:
    return factors[:, None, :]
  if factors.ndim != 3:
    raise ValueError(f"factors must be (n, d) gradients or (n, k, d) Jacobians, got {factors.shape}")
  return factors


def hessians_from_factors(factors: jax.Array) -> Float[Array, "n d d"]:
  r"""Dense :math:`H_i = J_i^\top J_i`, ``(n, d, d)`` (for the dense reference)."""
  f = _as_factors(factors)
  return jnp.einsum("nkd,nke->nde", f, f)


def range_coordinates(factors: jax.Array, *, rtol: float | None = None) -> RangeCoordinates:
  r"""Coordinates of the factors in an eigenbasis of :math:`H = \frac1n\sum_i J_i^\top J_i`.

  With :math:`G \in \mathbb{R}^{nk\times d}` the stacked rows: if :math:`nk \le d`, eigen-decompose
  the Gram matrix :math:`GG^\top = V\Sigma^2V^\top` and use the coordinates :math:`GU = V\Sigma`
  (never forming the :math:`d\times d` matrix :math:`H`); otherwise eigen-decompose :math:`H = U\Lambda
  U^\top` and use :math:`GU`. Eigenvalues below ``rtol`` times the largest are masked out of the range
  (default ``rtol``: :math:`10\max(nk, d)\,\epsilon`, NumPy's pinv rule).

  Example:
    >>> rc = range_coordinates(grads)   # grads: (n, d)
  """
  f = _as_factors(factors)
  n, k, d = f.shape
  g = f.reshape(n * k, d)
  eps = jnp.finfo(g.dtype).eps
  rtol = 10 * max(n * k, d) * eps if rtol is None else rtol
  if n * k <= d:
    s2, v = jnp.linalg.eigh(g @ g.T)
    s2 = jnp.maximum(s2, 0.0)
    a = v * jnp.sqrt(s2)[None, :]
  else:
    lam_h, u = jnp.linalg.eigh(g.T @ g / n)
    s2 = jnp.maximum(lam_h, 0.0) * n
    a = g @ u
  lam = s2 / n
  mask = lam > rtol * jnp.max(lam)
  a = jnp.where(mask[None, :], a, 0.0)
  return RangeCoordinates(a.reshape(n, k, -1), jnp.where(mask, lam, 0.0), mask)


# --------------------------------------------------------------------------------------------------
# The operators on r x r matrices, and the isometric half-vectorization.


def _svec_index(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  rows, cols = np.triu_indices(r)
  scale = np.where(rows == cols, 1.0, np.sqrt(2.0))
  return rows, cols, scale


def _svec(m: jax.Array, idx) -> jax.Array:
  rows, cols, scale = idx
  return m[rows, cols] * jnp.asarray(scale, m.dtype)


def _smat(v: jax.Array, r: int, idx) -> jax.Array:
  rows, cols, scale = idx
  upper = jnp.zeros((r, r), v.dtype).at[rows, cols].set(v / jnp.asarray(scale, v.dtype))
  return upper + jnp.triu(upper, 1).T


def apply_d(rc: RangeCoordinates, s: jax.Array, p: float) -> jax.Array:
  r""":math:`\mathcal{D}(S) = (1-p)\,\Lambda S\Lambda + \frac pn\sum_i a_i^\top (a_i S a_i^\top) a_i` in range
  coordinates (:math:`H = \Lambda`, :math:`H_i = a_i^\top a_i`)."""
  n = rc.a.shape[0]
  lam = rc.lam
  inner = jnp.einsum("nkr,rs,nls->nkl", rc.a, s, rc.a)
  per = jnp.einsum("nkr,nkl,nls->rs", rc.a, inner, rc.a) / n
  return (1 - p) * lam[:, None] * s * lam[None, :] + p * per


def _reduced_operator(rc: RangeCoordinates, p: float) -> tuple[Callable[[jax.Array], jax.Array], int]:
  r"""The symmetric :math:`K = \mathcal{C}^{-1/2}\mathcal{D}\,\mathcal{C}^{-1/2}` on svec space."""
  r = rc.lam.shape[0]
  idx = _svec_index(r)
  c = 0.5 * (rc.lam[:, None] + rc.lam[None, :])
  both = rc.mask[:, None] & rc.mask[None, :]
  c_isqrt = jnp.where(both, 1.0 / jnp.sqrt(jnp.where(both, c, 1.0)), 0.0)

  def matvec(v):
    s = _smat(v, r, idx) * c_isqrt
    return _svec(apply_d(rc, s, p) * c_isqrt, idx)

  return matvec, len(idx[0])


def threshold(factors: jax.Array, batch_size: int, *, replacement: bool = False,
              num_steps: int | None = None, method: str = "auto", key: jax.Array | None = None,
              rtol: float | None = None) -> Float[Array, ""]:
  r"""The exact linear-stability threshold :math:`\eta^*(B) = 2/\lambda_{\max}(\mathcal{C}^+\mathcal{D})`.

  Operator form (see the module doc): :math:`\lambda_{\max}` of
  :math:`\mathcal{C}^{-1/2}\mathcal{D}\,\mathcal{C}^{-1/2}` on symmetric matrices over
  :math:`\mathrm{range}(H)`, by Lanczos with full reorthogonalization (``method="lanczos"``) or a dense
  ``eigh`` of that :math:`\frac{r(r+1)}2`-square operator (``method="dense"``); ``"auto"`` (default)
  takes the dense form up to ``DENSE_MAX`` = 600 dimensions (:math:`r \le 34`). The operator is PSD, so
  its top eigenvalue is well separated from rounding; Lanczos with ``num_steps`` (default
  :math:`\min(r(r+1)/2, 80)`) matches the dense value to ~1e-10 relative on the problems tested.

  Args:
    factors: per-example gradients ``(n, d)`` or Jacobians ``(n, k, d)`` at the minimum.
    batch_size: ``B`` (an int in ``[1, n]``).
    replacement: batches with replacement (:math:`p = 1/B`) or uniform subsets (default).
    num_steps: Lanczos steps (static).
    method: ``"auto"``, ``"lanczos"`` or ``"dense"``.
    key: PRNG key of the Lanczos start (default: a fixed key).
    rtol: relative cut-off of :math:`\mathrm{range}(H)` (see :func:`range_coordinates`).

  Returns:
    :math:`\eta^*` (``inf`` if :math:`H = 0`).

  Example:
    >>> eta_star = threshold(grads, batch_size=1)

  Reference: Mulayoff & Michaeli 2023 (arXiv:2306.07850), Theorem 1; Ma & Ying 2021
  (arXiv:2106.07589); Wu & Su 2023 (arXiv:2305.17490).
  """
  f = _as_factors(factors)
  p = noise_factor(f.shape[0], batch_size, replacement=replacement)
  if method not in ("auto", "lanczos", "dense"):
    raise ValueError(f"method must be 'auto', 'lanczos' or 'dense', got {method!r}")
  if method == "auto":
    r = min(f.shape[0] * f.shape[1], f.shape[2])
    method = "dense" if r * (r + 1) // 2 <= DENSE_MAX else "lanczos"
  key = jax.random.key(0) if key is None else key
  return _threshold_core(f, jnp.asarray(p, f.dtype), key, num_steps=num_steps, method=method,
                         rtol=rtol)


@functools.partial(jax.jit, static_argnames=("num_steps", "method", "rtol"))
def _threshold_core(f: jax.Array, p: jax.Array, key: jax.Array, *, num_steps: int | None,
                    method: str, rtol: float | None) -> jax.Array:
  """:func:`threshold` for a traced noise factor ``p`` (one compile per shape, any batch size)."""
  rc = range_coordinates(f, rtol=rtol)
  matvec, dim = _reduced_operator(rc, p)
  if method == "dense":
    eye = jnp.eye(dim, dtype=f.dtype)
    kmat = jax.vmap(matvec, in_axes=1, out_axes=1)(eye)
    mu = jnp.linalg.eigvalsh(0.5 * (kmat + kmat.T))[-1]
  else:
    steps = min(dim, 80) if num_steps is None else min(num_steps, dim)
    k_start, k_restart = jax.random.split(key)
    # Start inside range(H) (svec of a random PSD matrix there): no time spent on masked zeros.
    z = jax.random.normal(k_start, (rc.lam.shape[0],) * 2, f.dtype) * rc.mask[None, :]
    v0 = _svec(z.T @ z + jnp.diag(rc.mask.astype(f.dtype)), _svec_index(rc.lam.shape[0]))
    mu = curvature.lanczos_eigen(matvec, v0, steps, key=k_restart).values[0]
  return jnp.where(mu > 0, 2.0 / jnp.where(mu > 0, mu, 1.0), jnp.inf)


def threshold_dense(hessians: Float[Array, "n d d"], batch_size: int, *,
                    replacement: bool = False) -> float:
  r"""Reference :math:`\eta^* = 2/\max\mathrm{Re}\,\mathrm{eig}(C^+D)` with :math:`d^2\times d^2` matrices.

  .. math:: C = \tfrac12(H\otimes I + I\otimes H), \qquad
     D = (1-p)\,H\otimes H + \frac pn\sum_i H_i\otimes H_i.

  Host NumPy, float64, memory :math:`O(d^4)`: for ``d`` up to ~30. Works for any symmetric PSD
  per-example Hessians (not only factored ones) whose ranges lie in range(H) (always true for PSD
  :math:`H_i`). Computed on an eigenbasis of range(H), where :math:`C` is invertible.

  Example:
    >>> threshold_dense(hessians_from_factors(grads), 1)

  Reference: the fact sheet's formula; Mulayoff & Michaeli 2023 (arXiv:2306.07850).
  """
  hs = np.asarray(hessians, np.float64)
  if hs.ndim != 3 or hs.shape[1] != hs.shape[2]:
    raise ValueError(f"hessians must have shape (n, d, d), got {hs.shape}")
  if not np.all(np.isfinite(hs)):
    raise ValueError(f"hessians hold {int(np.sum(~np.isfinite(hs)))} non-finite entries (NaN or inf)")
  n, d, _ = hs.shape
  p = noise_factor(n, batch_size, replacement=replacement)
  # Restrict to range(H) first (as `threshold` does): there C is invertible. A pseudo-inverse of the
  # d^2 x d^2 C instead keeps C's near-zero eigenvalues above its cut-off when H is rank-deficient
  # with a degenerate spectrum, and was off by up to 0.57%.
  lam, u = np.linalg.eigh(hs.mean(axis=0))
  u = u[:, lam > 10 * d * np.finfo(np.float64).eps * max(lam[-1], 0.0)]
  if u.shape[1] == 0:
    return float("inf")
  hs = np.einsum("da,nde,eb->nab", u, hs, u)
  h = hs.mean(axis=0)
  eye = np.eye(u.shape[1])
  c = 0.5 * (np.kron(h, eye) + np.kron(eye, h))
  dmat = (1 - p) * np.kron(h, h) + p * sum(np.kron(hi, hi) for hi in hs) / n
  mu = np.max(np.linalg.eigvals(np.linalg.solve(c, dmat)).real)
  return float(2.0 / mu) if mu > 0 else float("inf")


def second_moment_operator_dense(hessians: Float[Array, "n d d"], eta: float, batch_size: int, *,
                                 replacement: bool = False) -> np.ndarray:
  r"""Dense :math:`Q = (I - \eta H)\otimes(I - \eta H) + p\frac{\eta^2}n\sum_i(H_i\otimes H_i - H\otimes H)`.

  Host NumPy, :math:`d^2\times d^2`; ``vec(S_{t+1}) = Q vec(S_t)`` (row-major vec).
  """
  hs = np.asarray(hessians, np.float64)
  n, d, _ = hs.shape
  p = noise_factor(n, batch_size, replacement=replacement)
  h = hs.mean(axis=0)
  a = np.eye(d) - eta * h
  return np.kron(a, a) + p * eta**2 * (sum(np.kron(hi, hi) for hi in hs) / n - np.kron(h, h))


# --------------------------------------------------------------------------------------------------
# Bounds.


def _moments(f: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """tr H, |H|_F^2 and (1/n) sum |H_i|_F^2 from (n, k, d) factors (via Gram matrices)."""
  n = f.shape[0]
  gram_i = jnp.einsum("nkd,nld->nkl", f, f)  # J_i J_i^T
  tr = jnp.sum(jnp.trace(gram_i, axis1=1, axis2=2)) / n
  per = jnp.mean(jnp.sum(gram_i**2, axis=(1, 2)))
  g = f.reshape(-1, f.shape[2])
  fro = jnp.sum((g @ g.T) ** 2) / n**2
  return tr, fro, per


@functools.partial(jax.jit, static_argnames=("batch_size", "replacement"))
def necessary_bound(factors: jax.Array, batch_size: int, *,
                    replacement: bool = False) -> Float[Array, ""]:
  r"""Necessary condition :math:`\eta^* \le \dfrac{2\,\mathrm{tr}\,H}{(1-p)\|H\|_F^2 + \frac pn\sum_i\|H_i\|_F^2}`.

  (Take :math:`S = I` on :math:`\mathrm{range}(H)` in the Rayleigh quotient of
  :math:`\mathcal{C}^{+}\mathcal{D}`.) Computed from Gram matrices, no :math:`d\times d` matrix.

  Example:
    >>> necessary_bound(grads, 1) >= threshold(grads, 1)

  Reference: Wu & Su 2023 (arXiv:2305.17490); Mulayoff & Michaeli 2023 (arXiv:2306.07850).
  """
  f = _as_factors(factors)
  p = noise_factor(f.shape[0], batch_size, replacement=replacement)
  tr, fro, per = _moments(f)
  return 2 * tr / ((1 - p) * fro + p * per)


@functools.partial(jax.jit, static_argnames=("batch_size", "replacement"))
def trace_bound(factors: jax.Array, batch_size: int, *, replacement: bool = False) -> Float[Array, ""]:
  r"""The trace form :math:`2/(p\,\mathrm{tr}\,H) \ge \eta^*` (scalar outputs; :math:`2/\mathrm{tr}\,H` at B = 1).

  For rank-one :math:`H_i = g_ig_i^\top`, :math:`\frac1n\sum_i\|H_i\|_F^2 = \frac1n\sum_i\|g_i\|^4 \ge
  (\mathrm{tr}\,H)^2` (Jensen), so :func:`necessary_bound` gives :math:`p\,\eta^*\,\mathrm{tr}\,H \le 2`;
  tight for orthogonal equal-norm gradients. (Derived in the fact sheet from the exact criterion.)

  Example:
    >>> trace_bound(grads, 1)   # 2 / tr(H)

  Reference: Wu & Su 2023 (arXiv:2305.17490), the trace bound of SGD's dynamical stability.
  """
  f = _as_factors(factors)
  p = noise_factor(f.shape[0], batch_size, replacement=replacement)
  tr = _moments(f)[0]
  return jnp.where(p > 0, 2.0 / (p * tr), jnp.inf)


@functools.partial(jax.jit, static_argnames=("batch_size", "replacement"))
def wu_ma_e(factors: jax.Array, batch_size: int, *, replacement: bool = False) -> WuMaE:
  r"""Sharpness :math:`a`, non-uniformity :math:`s^2` and the Wu-Ma-E step size.

  .. math:: a = \lambda_{\max}(H), \quad s^2 = \lambda_{\max}\Big(\frac1n\sum_i H_i^2 - H^2\Big),
     \quad (1 - \eta a)^2 + \eta^2 p s^2 \le 1 \iff \eta \le \frac{2a}{a^2 + ps^2}.

  Exact (necessary and sufficient) in ``d = 1``; for ``d > 1`` a heuristic criterion from sharpness
  and non-uniformity alone, to compare with :func:`threshold` (it matches it for orthogonal equal-norm
  gradients). Computed in range coordinates (:math:`r\times r` matrices).

  Example:
    >>> wu_ma_e(grads, 1).eta_bound

  Reference: Wu, Ma & E 2018, "How SGD selects the global minima in over-parameterized learning: a
  dynamical stability perspective" (NeurIPS).
  """
  f = _as_factors(factors)
  n = f.shape[0]
  p = noise_factor(n, batch_size, replacement=replacement)
  rc = range_coordinates(f)
  hi = jnp.einsum("nkr,nks->nrs", rc.a, rc.a)
  h = jnp.diag(rc.lam)
  sigma = jnp.mean(jnp.einsum("nrs,nst->nrt", hi, hi), axis=0) - h @ h
  a = jnp.max(rc.lam)
  s2 = jnp.linalg.eigvalsh(0.5 * (sigma + sigma.T))[-1]
  return WuMaE(a, s2, 2 * a / (a * a + p * s2))


# --------------------------------------------------------------------------------------------------
# Simulators.


def second_moment_log_trace(factors: jax.Array, eta: float, batch_size: int, *, num_steps: int,
                            replacement: bool = False,
                            s0: jax.Array | None = None) -> Float[Array, " T"]:
  r""":math:`\log\mathrm{tr}\,S_t`, :math:`t = 0..T`, of the exact second-moment recursion
  :math:`S_{t+1} = \mathcal{Q}(S_t)` (module doc), in range coordinates.

  The matrix is renormalized every step and the log-scale accumulated, so growth and decay over
  many steps neither overflow nor underflow. The slope of the output is
  :math:`\log\rho(\mathcal{Q})` once the top mode dominates: negative iff :math:`\eta < \eta^*`.

  Args:
    factors: ``(n, d)`` or ``(n, k, d)`` at the minimum.
    eta: step size.
    batch_size: ``B``.
    num_steps: ``T`` (static).
    replacement: sampling with replacement.
    s0: optional ``(r, r)`` start in range coordinates (default: identity on the range).

  Returns:
    ``(T + 1,)`` values of :math:`\log\mathrm{tr}\,S_t`.

  Example:
    >>> lt = second_moment_log_trace(grads, 0.9 * eta_star, 1, num_steps=2000)

  Reference: Ma & Ying 2021 (arXiv:2106.07589); Mulayoff & Michaeli 2023 (arXiv:2306.07850).
  """
  f = _as_factors(factors)
  p = noise_factor(f.shape[0], batch_size, replacement=replacement)
  return _second_moment_core(f, jnp.asarray(eta, f.dtype), jnp.asarray(p, f.dtype), s0,
                             num_steps=num_steps)


@functools.partial(jax.jit, static_argnames=("num_steps",))
def _second_moment_core(f: jax.Array, eta: jax.Array, p: jax.Array, s0: jax.Array | None, *,
                        num_steps: int) -> jax.Array:
  rc = range_coordinates(f)
  s = jnp.diag(rc.mask.astype(f.dtype)) if s0 is None else jnp.asarray(s0, f.dtype)
  lam = rc.lam

  def body(carry, _):
    s, log_scale = carry
    s = s - eta * (lam[:, None] * s + s * lam[None, :]) + eta**2 * apply_d(rc, s, p)
    tr = jnp.trace(s)
    out = log_scale + jnp.log(tr)
    return (s / tr, out), out

  tr0 = jnp.trace(s)
  _, logs = jax.lax.scan(body, (s / tr0, jnp.log(tr0)), None, length=num_steps)
  return jnp.concatenate([jnp.log(tr0)[None], logs])


@functools.partial(jax.jit, static_argnames=("batch_size", "num_runs", "num_steps", "replacement"))
def simulate_linear_sgd(factors: jax.Array, eta: float, batch_size: int, key: jax.Array, *,
                        num_runs: int, num_steps: int,
                        replacement: bool = False) -> Float[Array, " T"]:
  r"""Monte Carlo of linearized SGD: the mean over runs of :math:`\|\delta_t\|^2`, :math:`t = 0..T`.

  :math:`\delta_{t+1} = (I - \eta H_{\xi_t})\delta_t` with batches drawn as the sampling says (per run
  and step keys from ``fold_in``), from :math:`\delta_0 = G^\top z/\sqrt n`, :math:`z \sim N(0, I_{nk})`
  (inside :math:`\mathrm{range}(H)`, :math:`\mathbb{E}\,\delta_0\delta_0^\top = H`: the recursion's
  ``s0 = diag(range_coordinates(factors).lam)``). Agrees with :func:`second_moment_log_trace` in
  expectation; above :math:`\eta^*` the heavy-tailed mean is underestimated by a finite sample.

  Example:
    >>> msq = simulate_linear_sgd(grads, eta, 1, jax.random.key(0), num_runs=4000, num_steps=500)
  """
  f = _as_factors(factors)
  n, k, d = f.shape
  noise_factor(n, batch_size, replacement=replacement)  # validates B
  keys = jax.random.split(key, num_runs)

  def one(key):
    k0, k_b = jax.random.split(key)
    z = jax.random.normal(k0, (n, k), f.dtype)
    delta = jnp.einsum("nkd,nk->d", f, z) / float(np.sqrt(n))

    def body(delta, t):
      kt = jax.random.fold_in(k_b, t)
      if replacement:
        idx = jax.random.randint(kt, (batch_size,), 0, n)
      else:
        idx = jax.random.permutation(kt, n)[:batch_size]
      jb = f[idx]  # (B, k, d)
      hd = jnp.einsum("bkd,bk->d", jb, jnp.einsum("bkd,d->bk", jb, delta)) / batch_size
      delta = delta - eta * hd
      return delta, jnp.sum(delta * delta)

    _, sq = jax.lax.scan(body, delta, jnp.arange(num_steps))
    return jnp.concatenate([jnp.sum(delta * delta)[None], sq])

  return jnp.mean(jax.vmap(one)(keys), axis=0)


# --------------------------------------------------------------------------------------------------
# From a model at a point.


def factors_at(apply_fn: Callable[[PyTree, jax.Array], jax.Array], params: PyTree, x: jax.Array,
               y: jax.Array, *, grad_tol: float = 1e-6, batch_size: int | None = None
               ) -> Float[Array, "n k d"]:
  r"""Per-example Jacobians at ``params``, after checking it is an interpolating minimum of the MSE.

  Raises ``ValueError`` with the gradient norm :math:`\|\nabla L\|` if it exceeds ``grad_tol``, and
  with the largest residual if some :math:`|f_i - y_i|` exceeds ``sqrt(grad_tol)`` (a minimum that
  does not interpolate: there :math:`H_i \ne J_i^\top J_i` and the analysis does not apply).
  Host-side check (concrete values).

  Example:
    >>> jac = factors_at(model.apply, params, data.x, data.y)
  """
  loss = lambda p: 0.5 * jnp.mean(
      jnp.sum(jnp.reshape(apply_fn(p, x) - y, (x.shape[0], -1)) ** 2, axis=1))
  gnorm = float(jnp.linalg.norm(ravel_pytree(jax.grad(loss)(params))[0]))
  if not gnorm <= grad_tol:
    raise ValueError(f"not a minimum: the gradient norm is {gnorm:.3e} > grad_tol = {grad_tol:.1e}; "
                     "linear stability is defined at an interpolating minimum")
  resid = float(jnp.max(jnp.abs(apply_fn(params, x) - y)))
  if not resid <= np.sqrt(grad_tol):
    raise ValueError(f"not an interpolating minimum: the largest residual is {resid:.3e} "
                     f"(gradient norm {gnorm:.3e})")
  return curvature.per_example_jacobians(apply_fn, params, x, batch_size=batch_size)


def analyze(apply_fn: Callable[[PyTree, jax.Array], jax.Array], params: PyTree, x: jax.Array,
            y: jax.Array, batch_size: int, *, replacement: bool = False,
            grad_tol: float = 1e-6) -> Analysis:
  r"""Every linear-stability number of a trained model at an interpolating minimum.

  Returns :math:`\eta^*(B)`, the GD threshold :math:`2/\lambda_{\max}(H)`, :func:`necessary_bound`,
  :func:`trace_bound`, :func:`wu_ma_e`, and :math:`\mathrm{tr}\,H`, :math:`\lambda_{\max}(H)`,
  :math:`\|H\|_F^2`.

  Raises:
    ValueError: if ``params`` is not an interpolating minimum (message with the gradient norm), or
      the batch size is not in ``[1, n]``.

  Example:
    >>> res = analyze(model.apply, params, data.x, data.y, batch_size=1)
    >>> eta <= res.eta_star

  Reference: Wu & Su 2023 (arXiv:2305.17490).
  """
  f = factors_at(apply_fn, params, x, y, grad_tol=grad_tol)
  rc = range_coordinates(f)
  tr, fro, _ = _moments(f)
  lam_max = jnp.max(rc.lam)
  return Analysis(
      eta_star=threshold(f, batch_size, replacement=replacement),
      gd_threshold=2.0 / lam_max,
      necessary=necessary_bound(f, batch_size, replacement=replacement),
      trace_bound=trace_bound(f, batch_size, replacement=replacement),
      wu_ma_e=wu_ma_e(f, batch_size, replacement=replacement),
      trace=tr, sharpness=lam_max, frobenius_sq=fro)
