r"""First-order MAML with one inner step on a linear 1-hidden-layer network, abc-parametrized, with its
exact infinite-width muP limit and NTK limit (Yang & Hu 2021, arXiv:2011.14522, Section 9.2).

Tasks are :math:`W`-way :math:`K`-shot episodes from scikit-learn's digits (standardized 8x8 images,
:math:`d = 64`) over a class split: meta-training draws classes from ``train_classes``, evaluation from
``test_classes``; labels are a random permutation per episode, so the meta-learned function cannot
memorize classes and all it can learn is a good starting point *for one gradient step*.

Network :math:`f(x) = s\, x U C^\top` (:math:`U \in \mathbb{R}^{d \times n}` input layer,
:math:`C \in \mathbb{R}^{W \times n}` readout), softmax cross-entropy. abc scalings as in
:mod:`jaxopt_lab.mup.word2vec` with input std :math:`1/\sqrt d` (LeCun; every preset is SP at the base
width). One meta-step (first-order MAML, Finn et al. 2017, arXiv:1703.03400): adapt
:math:`\theta' = \theta - \alpha\nabla L_{\mathrm{support}}(\theta)`, then
:math:`\theta \leftarrow \theta - \eta\nabla L_{\mathrm{query}}(\theta')` averaged over a meta-batch,
both with the per-layer rates of the parametrization.

**muP limit.** In particle coordinates (:math:`u_a = \sqrt d U_{:,a}`, :math:`v_a = C_{:,a} n/\sqrt{n_b}`)
every update is linear in the initial Gaussian :math:`Z \in \mathbb{R}^{d + W}`, so the limit is the same
first-order MAML on :math:`(U, C) = (P/\sqrt d, Q)` with :math:`P_0 = [I_d\; 0]`, :math:`Q_0 = [0\; I_W]`,
forward scale :math:`\sqrt{n_b}` and rates :math:`1/n_b` and 1
(:func:`jaxopt_lab.mup.word2vec.limit_scalings`): memory :math:`(d + W)^2`, constant in the steps.

**NTK limit.** NTP at infinite width is a linear model :math:`f(x) = x A` with
:math:`A_0 \sim N(0, I/d)` (the NNGP) trained by the same first-order MAML with the NTK
:math:`\Theta(x, x') = (1 + n_b/d)\langle x, x'\rangle` for both steps (:func:`ntk_limit`): the inner step
uses the raw-pixel kernel, which meta-training cannot change.

Reference: Yang & Hu, arXiv:2011.14522, Section 9.2 (Omniglot there; digits here).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxopt_lab.mup.parametrization import preset
from jaxopt_lab.mup.word2vec import PARAMETRIZATIONS, Params, Scalings


class Episodes(NamedTuple):
  """Digits grouped by class: ``x`` (10, M, d) with ``M`` the smallest class size, and class lists."""

  x: jax.Array
  train_classes: jax.Array
  test_classes: jax.Array


def digits_episodes(train_classes: Sequence[int] = (0, 1, 2, 3, 4),
                    test_classes: Sequence[int] = (5, 6, 7, 8, 9), dtype=jnp.float32) -> Episodes:
  """scikit-learn's digits, standardized, as a (10, M, 64) class table with a class split."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  tr, te = [int(c) for c in train_classes], [int(c) for c in test_classes]
  if set(tr) & set(te) or not set(tr + te) <= set(range(10)) or len(set(tr)) != len(tr):
    raise ValueError(f"train_classes {tr} and test_classes {te} must be disjoint digits 0..9")
  x, y = load_digits(return_X_y=True)
  x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
  m = min(int(np.sum(y == c)) for c in range(10))
  table = np.stack([x[y == c][:m] for c in range(10)])
  return Episodes(jnp.asarray(table, dtype), jnp.asarray(tr, jnp.int32), jnp.asarray(te, jnp.int32))


def sample_episode(key: jax.Array, table: jax.Array, classes: jax.Array, *, ways: int, shots: int,
                   queries: int):
  """One episode: support (ways*shots, d), labels, query (ways*queries, d), labels."""
  kc, ks = jax.random.split(key)
  chosen = jax.random.permutation(kc, classes)[:ways]
  idx = jax.vmap(lambda k: jax.random.permutation(k, table.shape[1])[:shots + queries])(
      jax.random.split(ks, ways))
  x = table[chosen[:, None], idx]  # (ways, shots + queries, d)
  labels = jnp.broadcast_to(jnp.arange(ways)[:, None], idx.shape)
  xs, xq = x[:, :shots].reshape(-1, table.shape[2]), x[:, shots:].reshape(-1, table.shape[2])
  return xs, labels[:, :shots].reshape(-1), xq, labels[:, shots:].reshape(-1)


def scalings(parametrization: str, width: int, base_width: int, d_in: int) -> Scalings:
  r"""Effective-weight scalings: input std :math:`1/\sqrt d`, readout std
  :math:`m^{-(a_2 + b_2)}/\sqrt{n_b}`, rates :math:`m^{-c - 2a_l}` (TP4 Table 1, one hidden layer)."""
  if parametrization not in PARAMETRIZATIONS:
    raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
  for name, v in (("width", width), ("base_width", base_width), ("d_in", d_in)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  (a1, a2), (b1, b2), c = (abc := preset(parametrization, 1)).a, abc.b, abc.c
  m = width / base_width
  return Scalings(m ** -(a1 + b1) / math.sqrt(d_in), m ** -(a2 + b2) / math.sqrt(base_width),
                  m ** (-c - 2 * a1), m ** (-c - 2 * a2), 1.0)


def init(key: jax.Array, d_in: int, ways: int, width: int, scal: Scalings, columns: int | None = None,
         dtype=jnp.float32) -> Params:
  """A width-``width`` network, zero-padded to ``columns`` (zero columns stay zero)."""
  ku, kc = jax.random.split(key)
  cols = columns or width
  if cols < width:
    raise ValueError(f"columns ({cols}) must be >= width ({width})")
  u = scal.embedding_std * jax.random.normal(ku, (d_in, width), dtype)
  c = scal.readout_std * jax.random.normal(kc, (ways, width), dtype)
  pad = ((0, 0), (0, cols - width))
  return Params(jnp.pad(u, pad), jnp.pad(c, pad))


def limit_init(d_in: int, ways: int, columns: int | None = None, dtype=jnp.float32) -> Params:
  r"""The limit's :math:`(P_0/\sqrt d, Q_0)`, zero-padded to ``columns`` :math:`\ge d + W`."""
  D = d_in + ways
  cols = columns or D
  if cols < D:
    raise ValueError(f"columns ({cols}) must be >= d_in + ways ({D})")
  eye = jnp.eye(D, cols, dtype=dtype)
  return Params(eye[:d_in] / math.sqrt(d_in), eye[d_in:])


def _loss(params: Params, x, y, scale):
  f = scale * (x @ params.u) @ params.c.T
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(f), y[:, None], 1))


def _sgd(params: Params, grads: Params, lr, scal: Scalings) -> Params:
  return Params(params.u - lr * scal.embedding_lr * grads.u, params.c - lr * scal.readout_lr * grads.c)


def adapt(params: Params, xs, ys, scal: Scalings, inner_lr) -> Params:
  """One inner SGD step on the support set (per-layer rates of ``scal``)."""
  return _sgd(params, jax.grad(_loss)(params, xs, ys, scal.scale), inner_lr, scal)


def query_logits(params: Params, episode, scal: Scalings, inner_lr) -> jax.Array:
  """Logits on the query set after adapting on the support set."""
  xs, ys, xq, _ = episode
  p = adapt(params, xs, ys, scal, inner_lr)
  return scal.scale * (xq @ p.u) @ p.c.T


@functools.partial(jax.jit, static_argnames=("num_steps", "meta_batch", "ways", "shots", "queries"))
def meta_train(params: Params, data_key: jax.Array, episodes: Episodes, scal: Scalings, *,
               inner_lr: float | ArrayLike, learning_rate: float | ArrayLike, num_steps: int,
               meta_batch: int = 4, ways: int = 5, shots: int = 1, queries: int = 5) -> Params:
  """First-order MAML: ``num_steps`` meta-steps over ``meta_batch`` train-class episodes each
  (episode ``j`` of step ``t`` from ``fold_in(fold_in(data_key, t), j)``); ``scal`` traced."""

  def one(p, t):
    keys = jax.vmap(lambda j: jax.random.fold_in(jax.random.fold_in(data_key, t), j))(
        jnp.arange(meta_batch))

    def grad(k):
      xs, ys, xq, yq = sample_episode(k, episodes.x, episodes.train_classes, ways=ways, shots=shots,
                                      queries=queries)
      return jax.grad(_loss)(adapt(p, xs, ys, scal, inner_lr), xq, yq, scal.scale)

    g = jax.tree.map(lambda a: a.mean(0), jax.vmap(grad)(keys))
    return _sgd(p, g, learning_rate, scal), None

  params, _ = jax.lax.scan(one, params, jnp.arange(num_steps, dtype=jnp.int32))
  return params


def test_episodes(key: jax.Array, episodes: Episodes, num: int, *, ways: int = 5, shots: int = 1,
                  queries: int = 5):
  """``num`` fixed test-class episodes (stacked tuples)."""
  return jax.vmap(lambda k: sample_episode(k, episodes.x, episodes.test_classes, ways=ways,
                                           shots=shots, queries=queries))(jax.random.split(key, num))


@jax.jit
def evaluate(params: Params, tests, scal: Scalings, inner_lr) -> tuple[jax.Array, jax.Array]:
  """Mean query accuracy after one inner step over the stacked test episodes, and the query logits
  (num, ways*queries, ways)."""
  f = jax.vmap(lambda e: query_logits(params, e, scal, inner_lr))(tests)
  return jnp.mean(jnp.argmax(f, -1) == tests[3]), f


@functools.partial(jax.jit, static_argnames=("num_steps", "base_width", "meta_batch", "ways", "shots",
                                             "queries", "centered"))
def ntk_limit(init_key: jax.Array, data_key: jax.Array, episodes: Episodes, tests, *, inner_lr,
              learning_rate, num_steps: int, base_width: int, meta_batch: int = 4, ways: int = 5,
              shots: int = 1, queries: int = 5, centered: bool = False) -> jax.Array:
  r"""Test accuracy of the NTK limit: the linear model :math:`xA`, :math:`A_0 \sim N(0, I/d)` (the NNGP
  draw; ``centered=True``: :math:`A_0 = 0`, the ensemble-mean function), trained by the same
  first-order MAML (same ``data_key``) with rates scaled by :math:`1 + n_b/d`."""
  d = episodes.x.shape[2]
  k = 1.0 + base_width / d
  # The linear model as a "network" with U = A, C = I (readout frozen): f = x A.
  a0 = jax.random.normal(init_key, (d, ways), episodes.x.dtype) / math.sqrt(d) * (not centered)
  params = Params(a0, jnp.eye(ways, dtype=a0.dtype))
  scal = Scalings(*(jnp.asarray(v, a0.dtype) for v in (1.0, 1.0, k, 0.0, 1.0)))
  params = meta_train(params, data_key, episodes, scal, inner_lr=inner_lr,
                      learning_rate=learning_rate, num_steps=num_steps, meta_batch=meta_batch,
                      ways=ways, shots=shots, queries=queries)
  return evaluate(params, tests, scal, inner_lr)[0]


class WidthSweep(NamedTuple):
  """Output of :func:`sweep_widths`.

  Attributes:
    limit_accuracy: test accuracy of the meta-trained muP limit.
    limit_logits: its adapted query logits (tests, ways*queries, ways).
    accuracy: ``(widths, seeds)`` test accuracies.
    logits: ``(widths, seeds, tests, ways*queries, ways)`` adapted query logits.
  """

  limit_accuracy: jax.Array
  limit_logits: jax.Array
  accuracy: jax.Array
  logits: jax.Array


def sweep_widths(episodes: Episodes, tests, data_key: jax.Array, init_keys: jax.Array, *,
                 parametrization: str, widths: tuple[int, ...], base_width: int, num_steps: int,
                 inner_lr: float, learning_rate: float, meta_batch: int = 4, ways: int = 5,
                 shots: int = 1, queries: int = 5) -> WidthSweep:
  """The meta-trained muP limit and ``parametrization`` networks at every width x init key on the
  episode sequence of ``data_key``, as one compiled program (runs padded to one width, scalings
  passed as arrays, so SP, NTP and muP share the compilation)."""
  from jaxopt_lab.mup.word2vec import limit_scalings  # pylint: disable=g-import-not-at-top
  widths = tuple(int(n) for n in widths)
  if not widths or min(widths) < 1:
    raise ValueError(f"widths must be a non-empty tuple of ints >= 1, got {widths!r}")
  d, seeds = int(episodes.x.shape[2]), int(jnp.shape(init_keys)[0])
  rows = [limit_scalings(base_width)] + [scalings(parametrization, n, base_width, d)
                                         for n in widths for _ in range(seeds)]
  scal = Scalings(*(np.asarray(v, np.float64) for v in zip(*rows)))
  return _sweep_core(episodes, tests, data_key, init_keys, scal, widths=widths, num_steps=num_steps,
                     inner_lr=inner_lr, learning_rate=learning_rate, meta_batch=meta_batch,
                     ways=ways, shots=shots, queries=queries)


@functools.partial(jax.jit, static_argnames=("widths", "num_steps", "meta_batch", "ways", "shots",
                                             "queries"))
def _sweep_core(episodes, tests, data_key, init_keys, scal, *, widths, num_steps, inner_lr,
                learning_rate, meta_batch, ways, shots, queries) -> WidthSweep:
  d, seeds, dtype = episodes.x.shape[2], init_keys.shape[0], episodes.x.dtype
  scal = Scalings(*(jnp.asarray(v, dtype) for v in scal))
  cols = max(max(widths), d + ways)
  starts = [jax.tree.map(lambda a: a[None], limit_init(d, ways, cols, dtype))]
  for i, n in enumerate(widths):
    sc = jax.tree.map(lambda a, i=i: a[1 + i * seeds:1 + (i + 1) * seeds], scal)
    starts.append(jax.vmap(lambda k, s, n=n: init(k, d, ways, n, s, cols, dtype))(init_keys, sc))
  start = jax.tree.map(lambda *a: jnp.concatenate(a), *starts)

  def run(ps):
    p = meta_train(ps[0], data_key, episodes, ps[1], inner_lr=inner_lr, learning_rate=learning_rate,
                   num_steps=num_steps, meta_batch=meta_batch, ways=ways, shots=shots,
                   queries=queries)
    return evaluate(p, tests, ps[1], inner_lr)

  acc, f = jax.lax.map(run, (start, scal), batch_size=seeds)
  return WidthSweep(acc[0], f[0], acc[1:].reshape(len(widths), seeds),
                    f[1:].reshape(len(widths), seeds, *f.shape[1:]))
