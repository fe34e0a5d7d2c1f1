"""Host-side input checks run by the public entry points of :mod:`jaxopt_lab.neural_collapse`.

Each raises ``ValueError`` naming the problem before anything is compiled or computed. Shapes are always
checked; values (NaN, label ranges, class balance, signs of hyperparameters) only when the argument is
concrete, so the public functions still trace under ``jax.jit``/``jax.vmap`` (where the caller vouches
for the values).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """True unless ``x`` is a JAX tracer (inside jit/vmap/grad)."""
  return not isinstance(x, jax.core.Tracer)


def check_finite(x: Any, name: str) -> None:
  """``ValueError`` if a concrete ``x`` holds NaN or inf."""
  if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
    raise ValueError(f"{name} has {bad} non-finite entr{'y' if bad == 1 else 'ies'} (NaN or inf)")


def check_labels(labels: Any, num_samples: int, num_classes: int) -> None:
  """Shape, integer dtype, range ``[0, K)`` and presence of every class."""
  shape = np.shape(labels)
  if shape != (num_samples,):
    raise ValueError(f"labels must have shape ({num_samples},) (one per column of H), got {shape}")
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise ValueError(f"labels must be integers, got dtype {jnp.asarray(labels).dtype}")
  if not is_concrete(labels):
    return
  y = np.asarray(labels)
  if y.size and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(
        f"labels out of range: found values in [{y.min()}, {y.max()}], expected [0, {num_classes})")
  missing = sorted(set(range(num_classes)) - set(np.unique(y).tolist()))
  if missing:
    raise ValueError(f"missing class(es) {missing}: every one of the {num_classes} classes needs at "
                     "least one sample (class means are undefined otherwise)")


def check_balanced_class_by_class(labels: Any, num_classes: int) -> int:
  """``n`` if ``labels`` is ``(0^n, 1^n, ...)``; ``ValueError`` for unbalanced or unsorted labels.

  The UFM, the perturbation model and the flows use :math:`Y = I_K \\otimes 1_n^T`, which needs this.
  """
  y = np.asarray(labels)
  counts = np.bincount(y, minlength=num_classes)
  if np.any(counts != counts[0]):
    raise ValueError(f"unbalanced classes: counts per class {counts.tolist()}; the model (Y = I_K kron "
                     "1_n^T) needs n samples in every class (subsample, or use collapse_metrics which "
                     "takes any labels)")
  n = int(counts[0])
  if not np.array_equal(y, np.repeat(np.arange(num_classes), n)):
    raise ValueError("columns must be laid out class by class (n of class 0, then class 1, ...); sort "
                     "them with jaxopt_lab.neural_collapse.features.load_features")
  return n


def check_columns(H: Any, num_classes: int, name: str = "H") -> int:
  """``n = N / K`` for class-by-class columns; ``ValueError`` if ``H`` is not 2-D or N % K != 0."""
  shape = np.shape(H)
  if len(shape) != 2:
    raise ValueError(f"{name} must be a (d, N) matrix of feature columns, got shape {shape}")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")
  if shape[1] % num_classes or shape[1] == 0:
    raise ValueError(f"{name} has N = {shape[1]} columns, not a positive multiple of K = {num_classes} "
                     "(class-by-class layout needs n columns per class)")
  check_finite(H, name)
  return shape[1] // num_classes


def check_dims_for_theory(d: int, num_classes: int, what: str) -> None:
  """``ValueError`` if ``d < K``: the collapsed minimizer needs K orthonormal directions in R^d."""
  if d < num_classes:
    raise ValueError(
        f"feature dimension d = {d} < K = {num_classes}: {what} needs d >= K (Theorem 2.1's minimizer "
        "has K orthogonal class means, Hbar^T Hbar = rho I_K)")


def check_nonnegative(name: str, value: Any, strict: bool = False) -> None:
  """``ValueError`` if a concrete hyperparameter is negative (or not positive when ``strict``)."""
  if not is_concrete(value):
    return
  v = np.asarray(value)
  if not np.all(np.isfinite(v)):
    raise ValueError(f"{name} must be finite, got {value}")
  if strict and np.any(v <= 0):
    raise ValueError(f"{name} must be > 0, got {value}")
  if np.any(v < 0):
    raise ValueError(f"{name} must be >= 0, got {value}")


def as_float(*xs: Any):
  """Hyperparameters as strongly typed float arrays of the default float dtype.

  A Python float (weakly typed) and a NumPy float64 (strongly typed) would otherwise compile the same
  jitted core twice.
  """
  out = tuple(jnp.asarray(x, dtype=jnp.result_type(float)) for x in xs)
  return out if len(out) > 1 else out[0]


def check_metric_inputs(H: Any, labels: Any, W: Any, b: Any, num_classes: int | None):
  """Validates and converts the arguments of ``collapse_metrics``; returns them with K."""
  H = jnp.asarray(H)
  if H.ndim < 2:
    raise ValueError(f"H must have shape (..., d, N), got {H.shape}")
  if not jnp.issubdtype(H.dtype, jnp.floating):
    H = H.astype(jnp.result_type(float))
  d, n_total = H.shape[-2:]
  if labels is None:
    if num_classes is None:
      raise ValueError("pass num_classes when labels is None (class-by-class columns)")
    if n_total % num_classes:
      raise ValueError(f"N = {n_total} columns are not a multiple of K = {num_classes}; pass labels")
    labels = jnp.repeat(jnp.arange(num_classes, dtype=jnp.int32), n_total // num_classes)
  labels = jnp.asarray(labels)
  if num_classes is None:
    if not is_concrete(labels):
      raise ValueError("num_classes is required when labels are traced")
    num_classes = int(np.max(np.asarray(labels))) + 1 if labels.size else 0
  if num_classes < 2:
    raise ValueError(f"need at least 2 classes, got K = {num_classes}")
  check_labels(labels, n_total, num_classes)
  labels = labels.astype(jnp.int32)  # one compiled core for int32 and int64 labels
  check_finite(H, "H (features)")
  batch = H.shape[:-2]
  if W is not None:
    W = jnp.asarray(W, H.dtype)
    if W.shape != (*batch, num_classes, d):
      raise ValueError(f"W must have shape {(*batch, num_classes, d)} (K rows of dimension d), "
                       f"got {W.shape}")
    check_finite(W, "W (classifier)")
  if b is not None:
    if W is None:
      raise ValueError("a bias b was given without a classifier W")
    b = jnp.asarray(b, H.dtype)
    if b.shape != (*batch, num_classes):
      raise ValueError(f"b must have shape {(*batch, num_classes)}, got {b.shape}")
    check_finite(b, "b (bias)")
  return H, labels, W, b, int(num_classes)
