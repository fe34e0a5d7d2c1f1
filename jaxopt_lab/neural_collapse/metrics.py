r"""Neural collapse metrics NC1-NC4 for any features, labels and linear classifier.

Features are columns: ``H`` has shape ``(d, N)`` (the paper's :math:`H \in \mathbb{R}^{d \times Kn}`),
``labels`` has shape ``(N,)`` with integer classes in ``[0, K)``, the classifier ``W`` has shape
``(K, d)`` and the bias ``b`` shape ``(K,)``. With ``labels=None`` the columns are taken class by class
(:math:`n = N/K` columns of class 0, then class 1, ...), the layout of the fact sheet.

Definitions (Papyan, Han & Donoho 2020, arXiv:2008.08186; Zhu et al. 2021, arXiv:2105.02375; Tirer,
Huang & Niles-Weed 2023, arXiv:2210.16658), with class means :math:`\mu_k`, the global mean
:math:`\mu_G` of all N columns, and centred means :math:`\dot M = [\mu_k - \mu_G]_k`:

.. math::
  \Sigma_W = \frac1N \sum_i (h_i - \mu_{y_i})(h_i - \mu_{y_i})^\top, \qquad
  \Sigma_B = \frac1K \sum_k (\mu_k - \mu_G)(\mu_k - \mu_G)^\top,

- ``nc1_tilde`` :math:`= \mathrm{tr}\,\Sigma_W / \mathrm{tr}\,\Sigma_B` (the paper's theory metric);
- ``nc1`` :math:`= \mathrm{tr}(\Sigma_W \Sigma_B^+)/K` (Papyan's);
- ``nc2_etf_*`` :math:`= \| G/\|G\|_F - (I - \mathbf 1\mathbf 1^\top/K)/\sqrt{K-1} \|_F` with
  :math:`G = \dot M^\top \dot M` (means) or :math:`G = W W^\top` (classifier) (Zhu et al.);
- ``nc2_equinorm_*`` = std/mean of the norms :math:`\|\mu_k - \mu_G\|` or :math:`\|w_k\|`,
  ``nc2_equiangular_*`` = std of the pairwise cosines, ``nc2_maxangle_*`` = mean of
  :math:`|\cos + 1/(K-1)|` over pairs (Papyan; std with ddof 0, pairs k < k');
- ``nc3_self_duality`` :math:`= \| W^\top/\|W\|_F - \dot M/\|\dot M\|_F \|_F^2` (Papyan) and
  ``nc3_duality_etf`` :math:`= \| W\dot M/\|W\dot M\|_F - (I - \mathbf 1\mathbf 1^\top/K)/\sqrt{K-1}\|_F`
  (Zhu et al.);
- ``nc4_ncc_mismatch``: the fraction of columns where :math:`\arg\max_k (W h + b)_k` differs from
  :math:`\arg\min_k \|h - \mu_k\|` (Papyan).

Numerical safety: every metric is invariant to the scale of ``H`` (and of ``W``), so both are divided by
their largest entry first (no under/overflow for tiny or huge features). Between-class scatter is
formed from centred means, never as a difference of second moments. :math:`\Sigma_B^+` keeps the
eigenvalues above ``rtol`` times the largest (``rtol = 10 max(d, K) eps``, NumPy's ``pinv`` rule). When
:math:`\Sigma_B = 0` (all class means equal) NC1 and NC1~ are ``inf`` if :math:`\Sigma_W \ne 0` and
``0`` if :math:`\Sigma_W = 0` (nothing varies within classes), never NaN.

The public :func:`collapse_metrics` validates its input on the host (shapes always; values when they
are concrete) and then calls a jitted core; leading batch axes of ``H`` (seeds, times) are vmapped.
:func:`metrics_core` is the unchecked, traceable core for use inside jitted code (flows, training).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from jaxopt_lab.neural_collapse import validation

Metrics = dict[str, jax.Array]


def class_by_class_labels(num_classes: int, n: int) -> Int[Array, " N"]:
  r"""Labels of columns laid out class by class: :math:`y = (0^{\times n}, 1^{\times n}, \dots)`.

  Example:
    >>> class_by_class_labels(3, 2)  # [0 0 1 1 2 2]
  """
  return jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), n)


def _rescale(x: jax.Array) -> jax.Array:
  """``x`` divided by its largest absolute entry (unchanged if all zero): all metrics are scale-free."""
  m = jnp.max(jnp.abs(x))
  return x / jnp.where(m > 0, m, 1.0)


def _safe_ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den for num, den >= 0: +inf if only den is 0, 0 if both are; no NaN in value or gradient."""
  ok = den > 0
  q = num / jnp.where(ok, den, 1.0)
  return jnp.where(ok, q, jnp.where(num > 0, jnp.inf, 0.0))


def _unit_columns(x: jax.Array) -> jax.Array:
  norms = jnp.linalg.norm(x, axis=0, keepdims=True)
  return x / jnp.where(norms > 0, norms, 1.0)


def _fro_normalize(x: jax.Array) -> jax.Array:
  nrm = jnp.linalg.norm(x)
  return x / jnp.where(nrm > 0, nrm, 1.0)


def _etf_distance(gram: jax.Array) -> jax.Array:
  k = gram.shape[0]
  etf = (jnp.eye(k, dtype=gram.dtype) - jnp.full((k, k), 1.0 / k, gram.dtype)) / jnp.sqrt(k - 1.0)
  return jnp.linalg.norm(_fro_normalize(gram) - etf)


def _norm_and_angle_stats(vectors: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Papyan's equinorm, equiangularity and maximal-angle statistics of the columns of ``vectors``."""
  k = vectors.shape[1]
  norms = jnp.linalg.norm(vectors, axis=0)
  equinorm = _safe_ratio(jnp.std(norms), jnp.mean(norms))
  u = _unit_columns(vectors)
  cos = u.T @ u
  iu, ju = np.triu_indices(k, 1)
  pairs = cos[iu, ju]
  return equinorm, jnp.std(pairs), jnp.mean(jnp.abs(pairs + 1.0 / (k - 1)))


def scatter_traces(H: Float[Array, "d N"], labels: Int[Array, " N"], num_classes: int
                   ) -> tuple[jax.Array, jax.Array]:
  r"""Traced core: :math:`(\mathrm{tr}\,\Sigma_W, \mathrm{tr}\,\Sigma_B)` in the scale of ``H``.

  Cheap (no decomposition): what flows record at every step. No input validation.
  """
  onehot = (labels[:, None] == jnp.arange(num_classes)[None, :]).astype(H.dtype)
  counts = jnp.sum(onehot, axis=0)
  means = (H @ onehot) / jnp.where(counts > 0, counts, 1.0)[None, :]
  within = H - means[:, labels]
  centred = means - jnp.mean(H, axis=1, keepdims=True)
  return jnp.sum(within**2) / H.shape[1], jnp.sum(centred**2) / num_classes


def nc1_tilde_core(H: Float[Array, "d N"], labels: Int[Array, " N"], num_classes: int) -> jax.Array:
  r"""Traced core: :math:`\widetilde{NC}_1 = \mathrm{tr}\,\Sigma_W/\mathrm{tr}\,\Sigma_B`. No validation."""
  tr_w, tr_b = scatter_traces(_rescale(H), labels, num_classes)
  return _safe_ratio(tr_w, tr_b)


def metrics_core(H: Float[Array, "d N"], labels: Int[Array, " N"], W: Float[Array, "K d"] | None,
                 b: Float[Array, " K"] | None, num_classes: int) -> Metrics:
  """Traced core of :func:`collapse_metrics` for one ``(d, N)`` features matrix; no validation.

  Args:
    H: features, one column per sample.
    labels: int classes in ``[0, num_classes)``, every class present (unchecked here).
    W: classifier rows, or None (then only the feature metrics are returned).
    b: classifier bias or None (zero).
    num_classes: K (static).

  Returns:
    A dict of scalar metrics; see the module docstring for the keys.
  """
  k = num_classes
  d, n_total = H.shape
  Hs = _rescale(H)
  onehot = (labels[:, None] == jnp.arange(k)[None, :]).astype(Hs.dtype)
  counts = jnp.sum(onehot, axis=0)
  means = (Hs @ onehot) / jnp.where(counts > 0, counts, 1.0)[None, :]
  within = Hs - means[:, labels]
  centred = means - jnp.mean(Hs, axis=1, keepdims=True)
  tr_w = jnp.sum(within**2) / n_total
  tr_b = jnp.sum(centred**2) / k

  # tr(Sigma_W Sigma_B^+) from the SVD of the centred means: Sigma_B = U S^2 U^T / K.
  u, s, _ = jnp.linalg.svd(centred, full_matrices=False)
  rtol = 10.0 * max(d, k) * jnp.finfo(Hs.dtype).eps
  keep = s**2 > rtol * s[0] ** 2
  s2_inv = jnp.where(keep, 1.0 / jnp.where(keep, s**2, 1.0), 0.0)
  proj = jnp.sum((u.T @ within) ** 2, axis=1) / n_total  # u_i^T Sigma_W u_i
  nc1 = jnp.where(s[0] > 0, jnp.sum(s2_inv * proj), _safe_ratio(tr_w, 0.0 * tr_w))

  out = {
      "tr_sigma_w": tr_w * jnp.max(jnp.abs(H)) ** 2,
      "tr_sigma_b": tr_b * jnp.max(jnp.abs(H)) ** 2,
      "nc1_tilde": _safe_ratio(tr_w, tr_b),
      "nc1": nc1,
      "nc2_etf_means": _etf_distance(centred.T @ centred),
  }
  out["nc2_equinorm_means"], out["nc2_equiangular_means"], out["nc2_maxangle_means"] = (
      _norm_and_angle_stats(centred))
  if W is None:
    return out
  Ws = _rescale(W)
  out["nc2_etf_w"] = _etf_distance(Ws @ Ws.T)
  out["nc2_equinorm_w"], out["nc2_equiangular_w"], out["nc2_maxangle_w"] = _norm_and_angle_stats(Ws.T)
  out["nc3_self_duality"] = jnp.sum((_fro_normalize(Ws.T) - _fro_normalize(centred)) ** 2)
  out["nc3_duality_etf"] = _etf_distance(Ws @ centred)
  logits = W @ H
  if b is not None:
    logits = logits + b[:, None]
  dist2 = jnp.sum((Hs[:, :, None] - means[:, None, :]) ** 2, axis=0)  # (N, K)
  mismatch = jnp.argmax(logits, axis=0) != jnp.argmin(dist2, axis=1)
  out["nc4_ncc_mismatch"] = jnp.mean(mismatch.astype(Hs.dtype))
  return out


@functools.partial(jax.jit, static_argnames=("num_classes", "batch_dims"))
def _metrics_jit(H, labels, W, b, num_classes, batch_dims):
  fn = functools.partial(metrics_core, num_classes=num_classes)
  in_axes = (0, None, None if W is None else 0, None if b is None else 0)
  for _ in range(batch_dims):
    fn = jax.vmap(fn, in_axes=in_axes)
  return fn(H, labels, W, b)


def collapse_metrics(H: Float[ArrayLike, "*batch d N"], labels: Int[ArrayLike, " N"] | None = None,
                     W: Float[ArrayLike, "*batch K d"] | None = None,
                     b: Float[ArrayLike, "*batch K"] | None = None, *,
                     num_classes: int | None = None) -> Metrics:
  r"""NC1 to NC4 of features ``H`` (and classifier ``W``, ``b``), validated, jitted, batched.

  .. math:: \widetilde{NC}_1 = \frac{\mathrm{tr}\,\Sigma_W}{\mathrm{tr}\,\Sigma_B}, \quad
            NC_1 = \tfrac1K \mathrm{tr}(\Sigma_W \Sigma_B^+), \quad \dots

  (all definitions in the module docstring).

  Args:
    H: features of shape ``(..., d, N)``; leading axes (seeds, times) are mapped over.
    labels: ``(N,)`` ints in ``[0, K)``, shared by the batch; None for class-by-class columns.
    W: optional classifier ``(..., K, d)`` with the same leading axes as ``H``.
    b: optional bias ``(..., K)``.
    num_classes: K; inferred as ``max(labels) + 1`` when None (then required if ``labels`` is None).

  Returns:
    A dict of metric arrays of shape ``H.shape[:-2]``.

  Raises:
    ValueError: naming the problem (NaN/inf features, labels out of range, a missing class, shape
      mismatch), before anything is computed. Values are checked only when concrete (not under
      ``jax.jit``/``vmap`` tracing; use :func:`metrics_core` inside traced code).

  Example:
    >>> m = collapse_metrics(H, labels, W)   # H (d, N), labels (N,), W (K, d)
    >>> float(m["nc1_tilde"])

  Reference: Papyan, Han & Donoho 2020 (arXiv:2008.08186); Tirer, Huang & Niles-Weed 2023
  (arXiv:2210.16658), Section 2.
  """
  H, labels, W, b, k = validation.check_metric_inputs(H, labels, W, b, num_classes)
  return _metrics_jit(H, labels, W, b, k, H.ndim - 2)
