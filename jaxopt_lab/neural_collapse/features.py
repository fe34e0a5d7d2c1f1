r"""Features of real networks: a small MLP on scikit-learn's digits, and a loader for a user's own arrays.

The paper's experiments use CIFAR-10 (an MLP trained layer by layer; ResNet18 with the weight decay
of the feature layers and of the last layer changed separately). CIFAR-10 is not reachable here, so
scikit-learn's bundled digits (8x8 images, 10 classes, no download) stands in, and
:func:`load_features` validates and lays out any ``(features, labels)`` arrays a user brings (e.g.
penultimate features of a ResNet saved to ``.npy``) for the metrics, flows and solvers.

Conventions: features are columns (``(d, N)``); data sets are returned class by class (n columns of
class 0, then class 1, ...), the layout the UFM's :math:`Y = I_K \otimes 1_n^\top` needs.

- :func:`train_mlp`: end-to-end training of a ReLU MLP with weight decay ``lambda_feat`` on the feature
  layers and ``lambda_cls`` on the last (linear) layer; records NC metrics of the penultimate features
  along training (the paper's Fig. 3 in small).
- :func:`train_layerwise`: the paper's layer-wise MLP experiment: layer l (and a fresh classifier) is
  trained on the frozen features of layer l-1, which play the role of :math:`H_0` in eq. 2; returns the
  features of every depth (Fig. 2 in small: NC1 vs depth).

Reference: Tirer, Huang & Niles-Weed 2023 (arXiv:2210.16658), Section 5.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from jaxopt_lab.engine.algorithm import Algorithm
from jaxopt_lab.neural_collapse import metrics, validation


class LabelledFeatures(NamedTuple):
  """Features laid out class by class.

  Attributes:
    H: ``(d, N)`` features, columns sorted by class (stable within a class).
    labels: ``(N,)`` int32 labels, ``(0^n, 1^n, ...)`` when balanced.
    num_classes: K.
    n: samples per class (balanced data), else -1.
    order: the permutation applied: ``H = features_as_columns[:, order]``.
  """

  H: Float[Array, "d N"]
  labels: Int[Array, " N"]
  num_classes: int
  n: int
  order: np.ndarray


def load_features(features: ArrayLike, labels: ArrayLike, *, num_classes: int | None = None,
                  layout: str = "rows", require_balanced: bool = True,
                  require_d_ge_k: bool = False) -> LabelledFeatures:
  r"""Validates a user's ``(features, labels)`` and lays them out class by class.

  Args:
    features: ``(N, d)`` (``layout="rows"``, one sample per row, as saved from most frameworks) or
      ``(d, N)`` (``layout="columns"``).
    labels: ``(N,)`` integers in ``[0, K)``.
    num_classes: K; inferred as ``max(labels) + 1`` when None.
    layout: ``"rows"`` or ``"columns"``.
    require_balanced: raise unless every class has the same count (the UFM, eq. 2 and the flows need
      it; the metrics do not).
    require_d_ge_k: raise if d < K (the collapse theory of Theorem 2.1 needs d >= K).

  Returns:
    :class:`LabelledFeatures` (float64 when x64 is on).

  Raises:
    ValueError: naming the problem: wrong rank or layout, NaN/inf features, non-integer labels,
      labels out of range, a missing class, unbalanced classes, d < K.

  Example:
    >>> data = load_features(np.load("feats.npy"), np.load("labels.npy"), num_classes=10)
    >>> collapse_metrics(data.H, data.labels, num_classes=data.num_classes)["nc1"]
  """
  if layout not in ("rows", "columns"):
    raise ValueError(f"layout must be 'rows' (N, d) or 'columns' (d, N), got {layout!r}")
  X = np.asarray(features)
  y = np.asarray(labels)
  if X.ndim != 2:
    raise ValueError(f"features must be a 2-D array, got shape {X.shape}")
  if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
    raise ValueError(f"features must be real numbers, got dtype {X.dtype}")
  cols = X.T if layout == "rows" else X
  d, n_total = cols.shape
  if y.ndim != 1 or y.shape[0] != n_total:
    raise ValueError(f"labels must have shape ({n_total},) to match {n_total} samples "
                     f"(layout={layout!r}, features {X.shape}), got {y.shape}")
  if y.size and not np.issubdtype(y.dtype, np.integer):
    if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
      y = y.astype(np.int64)
    else:
      raise ValueError(f"labels must be integers, got dtype {y.dtype}")
  k = int(y.max()) + 1 if num_classes is None and y.size else num_classes
  if k is None or k < 2:
    raise ValueError(f"need at least 2 classes, got K = {k}")
  validation.check_labels(y, n_total, k)
  validation.check_finite(cols, "features")
  if require_d_ge_k:
    validation.check_dims_for_theory(d, k, "this analysis")
  counts = np.bincount(y, minlength=k)
  if require_balanced and np.any(counts != counts[0]):
    raise ValueError(f"unbalanced classes: counts per class {counts.tolist()}; subsample to "
                     f"min(counts) = {counts.min()} per class, or pass require_balanced=False "
                     "(metrics only)")
  order = np.argsort(y, kind="stable")
  H = jnp.asarray(cols[:, order], dtype=jnp.result_type(float))
  n = int(counts[0]) if np.all(counts == counts[0]) else -1
  return LabelledFeatures(H, jnp.asarray(y[order], jnp.int32), k, n, order)


def load_digits_balanced(n_per_class: int = 150, num_classes: int = 10) -> LabelledFeatures:
  r"""scikit-learn's digits, the first ``n_per_class`` images of each of the first ``num_classes``
  digits, pixels scaled to [0, 1] and centred per pixel, as ``(64, K n)`` columns class by class.

  Deterministic (no sampling). The smallest class has 174 images.

  Raises:
    ValueError: if ``n_per_class`` is not in [1, 174] or ``num_classes`` not in [2, 10].
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  if not 2 <= num_classes <= 10:
    raise ValueError(f"digits has 10 classes; num_classes must be in [2, 10], got {num_classes}")
  if not 1 <= n_per_class <= 174:
    raise ValueError(f"n_per_class must be in [1, 174] (the smallest digit class), got {n_per_class}")
  X, y = load_digits(return_X_y=True)
  idx = np.concatenate([np.flatnonzero(y == c)[:n_per_class] for c in range(num_classes)])
  X = X[idx] / 16.0
  X = X - X.mean(axis=0, keepdims=True)
  return load_features(X, y[idx], num_classes=num_classes)


class Dense(NamedTuple):
  """A dense layer ``x -> A x + c`` on columns: ``A`` (out, in), ``c`` (out,)."""

  A: jax.Array
  c: jax.Array


class MLPParams(NamedTuple):
  """A ReLU MLP: feature layers (each Dense + ReLU) and a linear classifier ``W`` (K, width), ``b``."""

  layers: tuple[Dense, ...]
  W: jax.Array
  b: jax.Array


def init_mlp(key: jax.Array, *, in_dim: int, width: int, depth: int, num_classes: int) -> MLPParams:
  r"""He-normal feature layers :math:`A \sim \mathcal N(0, 2/\text{fan\_in})`, zero biases; the
  classifier :math:`W \sim \mathcal N(0, 1/\text{width})`, ``b = 0``. One key per layer by fold_in."""
  layers = []
  fan_in = in_dim
  for l in range(depth):
    A = jax.random.normal(jax.random.fold_in(key, l), (width, fan_in)) * jnp.sqrt(2.0 / fan_in)
    layers.append(Dense(A, jnp.zeros(width)))
    fan_in = width
  W = jax.random.normal(jax.random.fold_in(key, depth), (num_classes, fan_in)) / jnp.sqrt(fan_in)
  return MLPParams(tuple(layers), W, jnp.zeros(num_classes))


def mlp_features(params: MLPParams, X: Float[Array, "p N"]) -> list[jax.Array]:
  r"""Features of every layer: ``[X, h_1, ..., h_L]`` with :math:`h_l = \mathrm{relu}(A_l h_{l-1} + c_l)`."""
  feats = [X]
  for layer in params.layers:
    feats.append(jax.nn.relu(layer.A @ feats[-1] + layer.c[:, None]))
  return feats


def _task_loss(logits, labels, num_classes, loss):
  if loss == "mse":
    onehot = (labels[None, :] == jnp.arange(num_classes)[:, None]).astype(logits.dtype)
    return 0.5 * jnp.mean(jnp.sum((logits - onehot) ** 2, axis=0))
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits.T, labels))


def _objective(params, X, labels, lambda_feat, lambda_cls, num_classes, loss):
  H = mlp_features(params, X)[-1]
  logits = params.W @ H + params.b[:, None]
  wd_feat = sum(jnp.sum(layer.A**2) for layer in params.layers)
  return (_task_loss(logits, labels, num_classes, loss) + lambda_feat / 2 * wd_feat
          + lambda_cls / 2 * jnp.sum(params.W**2))


class TrainResult(NamedTuple):
  """Trained parameters and records (arrays of shape ``(num_steps // record_every,)``) of the
  objective, the training accuracy and NC metrics of the penultimate features with the classifier,
  with ``step`` the Adam step of each record (``record_every, 2 record_every, ...``)."""

  params: MLPParams
  records: dict[str, jax.Array]


def _mlp_records(p: MLPParams, X, labels, obj, num_classes: int) -> dict[str, jax.Array]:
  H = mlp_features(p, X)[-1]
  rec = metrics.metrics_core(H, labels, p.W, p.b, num_classes)
  rec["objective"] = obj(p)
  rec["accuracy"] = jnp.mean(jnp.argmax(p.W @ H + p.b[:, None], axis=0) == labels).astype(H.dtype)
  return rec


@functools.partial(jax.jit, static_argnames=("num_classes", "width", "depth", "loss", "num_steps",
                                             "record_every"))
def _train_core(key, X, labels, lambda_feat, lambda_cls, lr, *, num_classes, width, depth, loss,
                num_steps, record_every):
  params = init_mlp(key, in_dim=X.shape[0], width=width, depth=depth, num_classes=num_classes)
  opt = optax.adam(lr)
  obj = functools.partial(_objective, X=X, labels=labels, lambda_feat=lambda_feat,
                          lambda_cls=lambda_cls, num_classes=num_classes, loss=loss)

  def step(carry, _):
    p, s = carry
    g = jax.grad(obj)(p)
    upd, s = opt.update(g, s, p)
    return (optax.apply_updates(p, upd), s), None

  def record(carry, t):
    carry, _ = jax.lax.scan(step, carry, None, length=record_every)
    rec = _mlp_records(carry[0], X, labels, obj, num_classes)
    rec["step"] = t
    return carry, rec

  steps = record_every * jnp.arange(1, num_steps // record_every + 1, dtype=jnp.int32)
  (params, _), recs = jax.lax.scan(record, (params, opt.init(params)), steps)
  return TrainResult(params, recs)


def _check_training(X, labels, num_classes, num_steps, record_every, lambda_feat, lambda_cls, lr):
  validation.check_labels(labels, np.shape(X)[-1], num_classes)
  validation.check_finite(X, "X")
  if np.ndim(X) != 2:
    raise ValueError(f"X must be (p, N) columns, got shape {np.shape(X)}")
  if num_steps < 1 or record_every < 1 or num_steps % record_every:
    raise ValueError(f"num_steps ({num_steps}) must be a positive multiple of record_every "
                     f"({record_every})")
  validation.check_nonnegative("lambda_feat", lambda_feat)
  validation.check_nonnegative("lambda_cls", lambda_cls)
  validation.check_nonnegative("lr", lr, strict=True)


def train_mlp(key: jax.Array, X: Float[ArrayLike, "p N"], labels: Int[ArrayLike, " N"], *,
              num_classes: int, width: int = 64, depth: int = 3, lambda_feat: ArrayLike = 5e-4,
              lambda_cls: ArrayLike = 5e-4, lr: ArrayLike = 3e-3, loss: str = "mse",
              num_steps: int = 2000, record_every: int = 100) -> TrainResult:
  r"""Full-batch Adam on a ReLU MLP with separate weight decay on feature layers and classifier.

  .. math:: \min \ \ell(W h_L(x) + b, y) + \frac{\lambda_{feat}}{2}\sum_l \|A_l\|_F^2
            + \frac{\lambda_{cls}}{2}\|W\|_F^2

  (``loss`` ``"mse"``: :math:`\frac12\|\cdot - e_y\|^2`, or ``"ce"``), the network analogue of
  :math:`\lambda_H` and :math:`\lambda_W`. Records NC metrics of :math:`h_L` with :math:`(W, b)` every
  ``record_every`` steps. vmap over keys (seeds) or the traced ``lambda_feat``, ``lambda_cls``, ``lr``.

  Raises:
    ValueError: for bad labels (range, missing class), non-finite X, or bad step counts.

  Example:
    >>> data = load_digits_balanced(50)
    >>> res = train_mlp(jax.random.key(0), data.H, data.labels, num_classes=10, lambda_feat=1e-3)
    >>> res.records["nc1"]   # NC1 of the penultimate features along training

  Reference: arXiv:2210.16658 Section 5 (weight decay on feature layers vs the last layer).
  """
  if loss not in ("mse", "ce"):
    raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
  _check_training(X, labels, num_classes, num_steps, record_every, lambda_feat, lambda_cls, lr)
  return _train_core(key, jnp.asarray(X), jnp.asarray(labels),
                     *validation.as_float(lambda_feat, lambda_cls, lr),
                     num_classes=num_classes, width=width, depth=depth, loss=loss,
                     num_steps=num_steps, record_every=record_every)


class MLPTrainState(NamedTuple):
  """State of :func:`mlp_algorithm`: the network, Adam's state and the int32 step count."""

  params: MLPParams
  opt_state: optax.OptState
  step: jax.Array


def mlp_algorithm(*, num_classes: int, width: int = 64, depth: int = 3, loss: str = "mse") -> Algorithm:
  r""":func:`train_mlp` as an engine :class:`~jaxopt_lab.engine.algorithm.Algorithm` (sweeps, launcher).

  The problem is ``(X, labels)`` (``X`` ``(p, N)`` columns, labels ``(N,)``); ``init(key, problem)``
  draws the network as :func:`train_mlp` does from the same key, in ``X``'s dtype;
  ``step(state, problem, *, lambda_feat, lambda_cls, lr)`` is one full-batch Adam step and reports
  what :func:`train_mlp` records (NC1-NC4 of the penultimate features with the classifier,
  ``objective``, ``accuracy``), computed only at recorded steps. No validation: :func:`train_mlp`
  and the launcher check inputs.

  Example:
    >>> data = load_digits_balanced(50)
    >>> alg = mlp_algorithm(num_classes=10)
    >>> state, recs = run(alg, jax.random.key(0), (data.H, data.labels),
    ...                   {"lambda_feat": 5e-4, "lambda_cls": 5e-4, "lr": 3e-3}, num_steps=300,
    ...                   record_every=100)

  Reference: arXiv:2210.16658 Section 5.
  """
  if loss not in ("mse", "ce"):
    raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")

  def init(key, problem):
    X, _ = problem
    params = init_mlp(key, in_dim=X.shape[0], width=width, depth=depth, num_classes=num_classes)
    params = jax.tree.map(lambda a: a.astype(X.dtype), params)  # the data's dtype throughout
    return MLPTrainState(params, optax.adam(1.0).init(params), jnp.zeros((), jnp.int32))

  def step(state, problem, *, lambda_feat, lambda_cls, lr):
    X, labels = problem
    obj = functools.partial(_objective, X=X, labels=labels, lambda_feat=lambda_feat,
                            lambda_cls=lambda_cls, num_classes=num_classes, loss=loss)
    upd, opt_state = optax.adam(lr).update(jax.grad(obj)(state.params), state.opt_state, state.params)
    params = optax.apply_updates(state.params, upd)
    return (MLPTrainState(params, opt_state, state.step + 1),
            _mlp_records(params, X, labels, obj, num_classes))

  return Algorithm(f"mlp_{loss}_L{depth}_w{width}", init, step)


@functools.partial(jax.jit, static_argnames=("num_classes", "width", "loss", "num_steps"))
def _train_one_layer(key, H_prev, labels, lambda_feat, lambda_cls, lr, *, num_classes, width, loss,
                     num_steps):
  params = init_mlp(key, in_dim=H_prev.shape[0], width=width, depth=1, num_classes=num_classes)
  opt = optax.adam(lr)
  obj = functools.partial(_objective, X=H_prev, labels=labels, lambda_feat=lambda_feat,
                          lambda_cls=lambda_cls, num_classes=num_classes, loss=loss)

  def step(carry, _):
    p, s = carry
    upd, s = opt.update(jax.grad(obj)(p), s, p)
    return (optax.apply_updates(p, upd), s), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=num_steps)
  return params, mlp_features(params, H_prev)[-1]


class LayerwiseResult(NamedTuple):
  """Features of each depth (``features[0]`` is the input, ``features[l]`` the output of layer l),
  and each stage's trained layer and classifier."""

  features: list[jax.Array]
  stages: list[MLPParams]


def train_layerwise(key: jax.Array, X: Float[ArrayLike, "p N"], labels: Int[ArrayLike, " N"], *,
                    num_classes: int, depth: int = 4, width: int = 64,
                    lambda_feat: ArrayLike = 5e-4, lambda_cls: ArrayLike = 5e-4,
                    lr: ArrayLike = 3e-3, loss: str = "mse",
                    num_steps_per_layer: int = 1000) -> LayerwiseResult:
  r"""Layer-wise training (the paper's MLP experiment): stage l trains one new ReLU layer and a new
  linear classifier on the frozen features :math:`h_{l-1}` (the :math:`H_0` of eq. 2), l = 1..depth.

  .. math:: h_l = \mathrm{relu}(A_l h_{l-1} + c_l), \quad
            (A_l, c_l, W_l, b_l) = \arg\min \ell(W_l h_l + b_l, y) + \tfrac{\lambda_{feat}}2\|A_l\|^2
            + \tfrac{\lambda_{cls}}2\|W_l\|^2

  Each stage is full-batch Adam for ``num_steps_per_layer`` steps; stages of equal input width share
  one compiled program. The key of stage l is ``fold_in(key, l)``.

  Returns:
    :class:`LayerwiseResult`; compute NC1 per depth with
    :func:`~jaxopt_lab.neural_collapse.metrics.collapse_metrics` (Fig. 2 in small).

  Raises:
    ValueError: as :func:`train_mlp`.

  Reference: arXiv:2210.16658 Section 5 (layer-wise trained MLP, Fig. 2).
  """
  if loss not in ("mse", "ce"):
    raise ValueError(f"loss must be 'mse' or 'ce', got {loss!r}")
  if depth < 1:
    raise ValueError(f"depth must be >= 1, got {depth}")
  _check_training(X, labels, num_classes, num_steps_per_layer, 1, lambda_feat, lambda_cls, lr)
  feats = [jnp.asarray(X)]
  labels = jnp.asarray(labels)
  lambda_feat, lambda_cls, lr = validation.as_float(lambda_feat, lambda_cls, lr)
  stages = []
  for l in range(1, depth + 1):
    p, H = _train_one_layer(jax.random.fold_in(key, l), feats[-1], labels, lambda_feat, lambda_cls,
                            lr, num_classes=num_classes, width=width, loss=loss,
                            num_steps=num_steps_per_layer)
    stages.append(p)
    feats.append(H)
  return LayerwiseResult(feats, stages)


def layerwise_nc1(result: LayerwiseResult, labels: Int[ArrayLike, " N"], *, num_classes: int
                  ) -> dict[str, np.ndarray]:
  r"""NC1 and NC1~ of the features at every depth 0..L of :func:`train_layerwise` (Fig. 2 in small)."""
  out: dict[str, list[float]] = {"depth": [], "nc1": [], "nc1_tilde": []}
  for l, H in enumerate(result.features):
    m = metrics.collapse_metrics(H, labels, num_classes=num_classes)
    out["depth"].append(l)
    out["nc1"].append(float(m["nc1"]))
    out["nc1_tilde"].append(float(m["nc1_tilde"]))
  return {k: np.asarray(v) for k, v in out.items()}


def features_to_ufm_input(H: Float[ArrayLike, "d N"], labels: Int[ArrayLike, " N"], *,
                          num_classes: int) -> Float[Array, "d N"]:
  """Checks that features are balanced and class by class (as :func:`load_features` returns them)
  and returns them as an :math:`H_0` for eq. 2 / the flows; ``ValueError`` otherwise."""
  H = jnp.asarray(H)
  validation.check_columns(H, num_classes, "H")
  validation.check_labels(labels, H.shape[1], num_classes)
  validation.check_balanced_class_by_class(labels, num_classes)
  return H


__all__ = ["LabelledFeatures", "MLPParams", "TrainResult", "LayerwiseResult", "load_features",
           "load_digits_balanced", "init_mlp", "mlp_features", "train_mlp", "train_layerwise",
           "layerwise_nc1", "features_to_ufm_input"]
