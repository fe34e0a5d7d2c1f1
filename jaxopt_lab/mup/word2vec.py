r"""Word2Vec (skip-gram, negative sampling) as an abc-parametrized 1-hidden-layer linear network, and
its exact infinite-width muP limit and NTK limit (Yang & Hu 2021, arXiv:2011.14522, Section 9.1).

The network maps a one-hot centre word :math:`e_w \in \mathbb{R}^V` through the input layer (the
*embeddings* :math:`U \in \mathbb{R}^{V \times n}`) and the readout (the *context embeddings*
:math:`C \in \mathbb{R}^{V \times n}`) to logits :math:`f(w, c) = \langle U_w, C_c\rangle`. A positive
pair :math:`(w, c)` from a window of the corpus and :math:`K` negatives :math:`c'_k` drawn from the
unigram distribution to the power 3/4 give the loss
:math:`-\log\sigma(f(w, c)) - \sum_k \log\sigma(-f(w, c'_k))`, averaged over a batch, trained by SGD.

abc-parametrization (TP4 Table 1 with one hidden layer; effective weights :math:`W^l = m^{-a_l} w^l`,
:math:`m = n / n_{\mathrm{base}}`; SGD with learning rate :math:`\eta m^{-c}` on :math:`w^l` is SGD on
:math:`W^l` with rate :math:`\eta m^{-c - 2a_l}`). The input fan-in of a one-hot input is one, so the
embeddings start :math:`N(0, 1)` in every preset; the readout starts
:math:`N(0, m^{-2(a_2 + b_2)} / n_{\mathrm{base}})` (LeCun at the base width, where every preset is SP
with rate :math:`\eta`):

====  =====================  ============================  =====================  ==================
      embedding std           readout std                   embedding LR           readout LR
====  =====================  ============================  =====================  ==================
sp    1                       :math:`m^{-1/2}/\sqrt{n_b}`   :math:`\eta/m`         :math:`\eta/m`
ntp   1                       :math:`m^{-1/2}/\sqrt{n_b}`   :math:`\eta`           :math:`\eta/m`
mup   1                       :math:`m^{-1}/\sqrt{n_b}`     :math:`\eta m`         :math:`\eta/m`
====  =====================  ============================  =====================  ==================

**The muP limit.** In particle coordinates :math:`u_a = U_{:,a}`, :math:`v_a = C_{:,a}\, n/\sqrt{n_b}`
(both :math:`N(0, I_V)`), muP is :math:`f = \frac{\alpha}{n}\sum_a u_a v_a^\top` with
:math:`\alpha = \sqrt{n_b}` and width-free particle updates
:math:`u_a \leftarrow u_a - \frac{\eta}{\sqrt{n_b}}\chi v_a`, :math:`v_a \leftarrow v_a - \eta\sqrt{n_b}\,\chi^\top u_a`
(:math:`\chi_{wc} = \partial L/\partial f(w, c)`). Everything is linear in the initial Gaussian
:math:`Z = (u_a, v_a)(0) \in \mathbb{R}^{2V}`, so :math:`u_a(t) = P_t Z`, :math:`v_a(t) = Q_t Z` and the
infinite-width limit is the finite recursion

.. math:: f_t = \alpha P_t Q_t^\top, \quad P \leftarrow P - \tfrac{\eta}{\sqrt{n_b}}\chi Q, \quad
    Q \leftarrow Q - \eta\sqrt{n_b}\,\chi^\top P, \quad P_0 = [I_V\; 0], \; Q_0 = [0\; I_V],

i.e. the same skip-gram SGD at "width" :math:`2V` from a deterministic init, one row per word
(:func:`limit_init`; :func:`step` serves both). Equivalently the :math:`2V \times 2V` covariance
:math:`M = [P; Q][P; Q]^\top` of (embedding, context embedding) obeys
:math:`M \leftarrow (I - A) M (I - A)^\top` with :math:`A` the block matrix of the scaled :math:`\chi`.
Memory is :math:`4V^2` numbers, *constant in the number of steps* (no projection is needed at these
vocabulary sizes; TP4's projected variant is not used). The limit's embedding kernel is
:math:`K = P P^\top` (:math:`V \times V`), the limit of :math:`U U^\top / n`; cosine similarities,
analogies and WordSim correlations are functions of :math:`K` alone (:func:`embedding_kernel`).

**The NTK limit.** Under NTP (and SP) the embeddings move by :math:`O(n^{-1/2})`: at infinite width
:math:`K = I` for all time, every cosine similarity between distinct words is 0, analogy accuracy is 0
and the WordSim rank correlation is undefined (reported as 0): no feature learning. The logits still
train, as kernel regression with the diagonal NTK
:math:`\Theta((w, c), (w', c')) = \delta_{ww'}\delta_{cc'}\,\eta(1 + n_b)` from iid :math:`N(0, 1)`
NNGP logits: a lookup table of the pair logits (:func:`ntk_limit`). The task metric left to it is the
held-out negative-sampling loss, which is what the checks and the tables compare.

Data ship inside gensim's wheel (``gensim/test/test_data``): the Lee corpus (``lee_background.cor``,
300 news documents, ~60k tokens), the Google analogy questions and WordSim353
(:func:`load_dataset`; located without importing gensim).

Reference: Yang & Hu, "Feature Learning in Infinite-Width Neural Networks", arXiv:2011.14522,
Sections 6 and 9.1; Mikolov et al. 2013, arXiv:1310.4546 (negative sampling).
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import math
import pathlib
import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from jaxopt_lab.engine import Algorithm
from jaxopt_lab.mup.parametrization import preset

PARAMETRIZATIONS = ("sp", "ntp", "mup")
CORPORA = ("lee_background", "head500.noblanks")


# --------------------------------------------------------------------------------------------------
# Data.


def gensim_test_data(name: str) -> pathlib.Path:
  """Path of ``gensim/test/test_data/<name>`` (found without importing gensim).

  Raises:
    ImportError: gensim is not installed (``pip install gensim``, a dependency of jaxopt_lab).
    FileNotFoundError: the file is not in the installed wheel.
  """
  spec = importlib.util.find_spec("gensim")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("word2vec data ship in gensim's wheel: pip install gensim "
                      "(gensim>=4.3)")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "test" / "test_data" / name
  if not path.is_file():
    raise FileNotFoundError(f"{name} not found in the installed gensim ({path})")
  return path


class Word2VecData(NamedTuple):
  """A tokenized corpus with its vocabulary, skip-gram pairs and evaluation sets.

  Attributes:
    words: the vocabulary, most frequent first (index = word id).
    counts: ``(V,)`` corpus counts of the vocabulary.
    train_pairs: ``(N, 2)`` int32 (centre, context) pairs from the training documents.
    test_pairs: ``(N', 2)`` pairs from the held-out documents.
    noise: ``(V,)`` negative-sampling distribution :math:`\\propto` count^{3/4}.
    pair_weights: ``(N,)`` sampling probabilities of the training pairs (frequent-word subsampling).
    analogies: ``(Q, 4)`` in-vocabulary analogy questions a:b :: c:d.
    wordsim: ``(S, 2)`` in-vocabulary WordSim353 pairs; ``wordsim_scores`` their human scores.
    wordsim_scores: ``(S,)``.
  """

  words: tuple[str, ...]
  counts: np.ndarray
  train_pairs: np.ndarray
  test_pairs: np.ndarray
  noise: np.ndarray
  pair_weights: np.ndarray
  analogies: np.ndarray
  wordsim: np.ndarray
  wordsim_scores: np.ndarray

  @property
  def vocab_size(self) -> int:
    """:math:`V`."""
    return len(self.words)


def _tokenize(text: str) -> list[str]:
  return re.findall(r"[a-z]+", text.lower())


def _pairs(docs: list[np.ndarray], window: int) -> np.ndarray:
  out = []
  for ids in docs:
    for off in range(1, window + 1):
      if len(ids) > off:
        out.append(np.stack([ids[:-off], ids[off:]], 1))
        out.append(np.stack([ids[off:], ids[:-off]], 1))
  return np.concatenate(out).astype(np.int32) if out else np.zeros((0, 2), np.int32)


@functools.lru_cache(maxsize=8)
def load_dataset(vocab_size: int = 1000, *, corpus: str = "lee_background", window: int = 2,
                 held_out: float = 0.1, subsample: float = 1e-3) -> Word2VecData:
  r"""Reads a gensim test corpus, keeps the ``vocab_size`` most frequent words, builds pairs.

  Tokens are lowercased runs of letters; out-of-vocabulary tokens are dropped before windowing.
  The last ``held_out`` fraction of documents gives the held-out pairs. Training pairs are sampled
  with probability :math:`\propto k_w k_c`, :math:`k_w = \min(1, \sqrt{t / p_w})` (Mikolov's
  frequent-word subsampling as pair weights, so sampling stays a pure function of a key).

  Args:
    vocab_size: :math:`V` (ties in counts broken alphabetically).
    corpus: one of :data:`CORPORA` (``head500.noblanks`` is stemmed: analogies rarely apply).
    window: context half-width.
    held_out: fraction of documents held out, in [0, 1).
    subsample: :math:`t` (0 disables subsampling).

  Returns:
    :class:`Word2VecData`.

  Example:
    >>> data = load_dataset(500); data.train_pairs.shape[1]
    2
  """
  if corpus not in CORPORA:
    raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
  if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
    raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
  if not isinstance(window, int) or window < 1:
    raise ValueError(f"window must be an int >= 1, got {window!r}")
  if not 0.0 <= held_out < 1.0:
    raise ValueError(f"held_out must be in [0, 1), got {held_out!r}")
  if not subsample >= 0.0:
    raise ValueError(f"subsample must be >= 0, got {subsample!r}")
  lines = gensim_test_data(f"{corpus}.cor").read_text(errors="replace").splitlines()
  docs = [_tokenize(line) for line in lines if line.strip()]
  counter = collections.Counter(t for d in docs for t in d)
  if vocab_size > len(counter):
    raise ValueError(f"vocab_size {vocab_size} exceeds the corpus's {len(counter)} distinct words")
  words = tuple(w for w, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:vocab_size])
  index = {w: i for i, w in enumerate(words)}
  counts = np.array([counter[w] for w in words], np.float64)
  ids = [np.array([index[t] for t in d if t in index], np.int32) for d in docs]
  split = len(ids) - int(round(held_out * len(ids)))
  train, test = _pairs(ids[:split], window), _pairs(ids[split:], window)
  freq = counts / counter.total()
  keep = np.minimum(1.0, np.sqrt(subsample / freq)) if subsample > 0 else np.ones_like(freq)
  weights = keep[train[:, 0]] * keep[train[:, 1]]
  noise = counts ** 0.75
  analogies = []
  for line in gensim_test_data("questions-words.txt").read_text().splitlines():
    q = line.lower().split()
    if len(q) == 4 and all(t in index for t in q):
      analogies.append([index[t] for t in q])
  sim, scores = [], []
  for line in gensim_test_data("wordsim353.tsv").read_text().splitlines():
    if line.startswith("#"):
      continue
    a, b, s = line.lower().split("\t")
    if a in index and b in index and a != b:
      sim.append([index[a], index[b]])
      scores.append(float(s))
  return Word2VecData(words, counts, train, test, noise / noise.sum(), weights / weights.sum(),
                      np.array(analogies, np.int32).reshape(-1, 4), np.array(sim, np.int32).reshape(-1, 2),
                      np.array(scores))


# --------------------------------------------------------------------------------------------------
# The model.


class Scalings(NamedTuple):
  """Effective-weight scalings of one width: :math:`f(w, c) = s\\,\\langle U_w, C_c\\rangle`.

  Attributes:
    embedding_std: init std of :math:`U`.
    readout_std: init std of :math:`C`.
    embedding_lr: SGD rate on :math:`U` per unit :math:`\\eta`.
    readout_lr: SGD rate on :math:`C` per unit :math:`\\eta`.
    scale: the forward multiplier :math:`s` (1 for finite networks; :math:`\\alpha` in the limit).
  """

  embedding_std: float
  readout_std: float
  embedding_lr: float
  readout_lr: float
  scale: float


def scalings(parametrization: str, width: int, base_width: int = 1) -> Scalings:
  r"""Effective-weight scalings of SP / NTP / muP at ``width`` (module docstring's table).

  Derived from :func:`jaxopt_lab.mup.parametrization.preset` with one hidden layer:
  embedding std :math:`m^{-(a_1 + b_1)}`, readout std :math:`m^{-(a_2 + b_2)}/\sqrt{n_b}`,
  rates :math:`m^{-c - 2a_l}`.

  Example:
    >>> scalings("mup", 256, 64).embedding_lr
    4.0
  """
  if parametrization not in PARAMETRIZATIONS:
    raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
  for name, v in (("width", width), ("base_width", base_width)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  abc = preset(parametrization, 1)
  m = width / base_width
  (a1, a2), (b1, b2), c = abc.a, abc.b, abc.c
  return Scalings(m ** -(a1 + b1), m ** -(a2 + b2) / math.sqrt(base_width), m ** (-c - 2 * a1),
                  m ** (-c - 2 * a2), 1.0)


def limit_scalings(base_width: int = 1) -> Scalings:
  r"""The muP limit in particle form: :math:`\alpha = \sqrt{n_b}`, rates
  :math:`\eta/\sqrt{n_b}` on :math:`P` and :math:`\eta\sqrt{n_b}` on :math:`Q` (divided by the
  forward scale, since :func:`step` multiplies gradients by it)."""
  if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
    raise ValueError(f"base_width must be an int >= 1, got {base_width!r}")
  alpha = math.sqrt(base_width)
  return Scalings(1.0, 1.0, 1.0 / (alpha * alpha), 1.0, alpha)


class Params(NamedTuple):
  """Embeddings ``u`` (V, n) and context embeddings ``c`` (V, n); in the limit (V, 2V): P and Q."""

  u: jax.Array
  c: jax.Array


def init(key: jax.Array, vocab_size: int, width: int, scal: Scalings, dtype=jnp.float32) -> Params:
  """A width-``width`` network: ``u ~ N(0, embedding_std^2)``, ``c ~ N(0, readout_std^2)``."""
  ku, kc = jax.random.split(key)
  return Params(scal.embedding_std * jax.random.normal(ku, (vocab_size, width), dtype),
                scal.readout_std * jax.random.normal(kc, (vocab_size, width), dtype))


def limit_init(vocab_size: int, dtype=jnp.float32) -> Params:
  r"""The limit's :math:`P_0 = [I_V\; 0]`, :math:`Q_0 = [0\; I_V]` (rows: words, columns: the
  :math:`2V` Gaussian coordinates)."""
  eye = jnp.eye(vocab_size, dtype=dtype)
  zero = jnp.zeros_like(eye)
  return Params(jnp.concatenate([eye, zero], 1), jnp.concatenate([zero, eye], 1))


def _batch(key: jax.Array, cum_weights: jax.Array, pairs: jax.Array, cum_noise: jax.Array,
           batch_size: int, negatives: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Centres (B,), targets (B, 1 + K): context then negatives, labels (B, 1 + K) in {0, 1}."""
  kp, kn = jax.random.split(key)
  idx = jnp.searchsorted(cum_weights, jax.random.uniform(kp, (batch_size,), cum_weights.dtype))
  idx = jnp.minimum(idx, pairs.shape[0] - 1)
  neg = jnp.searchsorted(cum_noise, jax.random.uniform(kn, (batch_size, negatives), cum_noise.dtype))
  neg = jnp.minimum(neg, cum_noise.shape[0] - 1).astype(pairs.dtype)
  targets = jnp.concatenate([pairs[idx, 1:2], neg], 1)
  labels = jnp.zeros(targets.shape, cum_weights.dtype).at[:, 0].set(1.0)
  return pairs[idx, 0], targets, labels


def logits(params: Params, centres: jax.Array, targets: jax.Array, scale: float | ArrayLike = 1.0):
  """:math:`s\\,\\langle U_w, C_c\\rangle` for centres (B,) and targets (B, k) -> (B, k)."""
  return scale * jnp.einsum("bd,bkd->bk", params.u[centres], params.c[targets])


def ns_loss(params: Params, centres, targets, labels, scale=1.0) -> jax.Array:
  """Mean over the batch of the negative-sampling loss (sum over the 1 + K targets)."""
  f = logits(params, centres, targets, scale)
  return -jnp.mean(jnp.sum(jax.nn.log_sigmoid(jnp.where(labels > 0, f, -f)), -1))


def step(params: Params, centres: jax.Array, targets: jax.Array, labels: jax.Array, *,
         learning_rate: float | ArrayLike, scal: Scalings) -> Params:
  r"""One SGD step on the negative-sampling loss (sparse: only the rows in the batch move).

  :math:`\chi = \partial L/\partial f`, :math:`U_w \mathrel{-}= \eta\,\eta_U s\sum_k\chi_{wk} C_{c_k}`,
  :math:`C_{c_k} \mathrel{-}= \eta\,\eta_C s\,\chi_{wk} U_w`: the finite network with
  ``scal = scalings(...)`` and the muP limit (P, Q) with ``scal = limit_scalings(...)``.
  """
  f = logits(params, centres, targets, scal.scale)
  chi = (jax.nn.sigmoid(f) - labels) / centres.shape[0]
  uc, cc = params.u[centres], params.c[targets]
  du = jnp.einsum("bk,bkd->bd", chi, cc) * scal.scale
  dc = chi[..., None] * uc[:, None, :] * scal.scale
  return Params(params.u.at[centres].add(-learning_rate * scal.embedding_lr * du),
                params.c.at[targets].add(-learning_rate * scal.readout_lr * dc))


class Problem(NamedTuple):
  """The arrays a training run reads (a pytree: shared by every seed of a sweep)."""

  pairs: jax.Array
  cum_weights: jax.Array
  cum_noise: jax.Array
  test_centres: jax.Array
  test_targets: jax.Array
  test_labels: jax.Array


def problem(data: Word2VecData, key: jax.Array, *, negatives: int = 5, num_test: int = 2000,
            dtype=jnp.float32) -> Problem:
  """Device arrays of ``data`` and a fixed held-out batch (``num_test`` pairs, ``negatives`` each)."""
  if not isinstance(negatives, int) or negatives < 1:
    raise ValueError(f"negatives must be an int >= 1, got {negatives!r}")
  if data.test_pairs.shape[0] == 0:
    raise ValueError("the dataset has no held-out pairs (held_out = 0)")
  pairs = jnp.asarray(data.test_pairs)
  num_test = min(int(num_test), pairs.shape[0])
  cw = jnp.asarray(np.cumsum(data.pair_weights), dtype)
  cn = jnp.asarray(np.cumsum(data.noise), dtype)
  uniform = jnp.asarray(np.full(pairs.shape[0], 1.0 / pairs.shape[0]).cumsum(), dtype)
  tc, tt, tl = jax.jit(_batch, static_argnums=(4, 5))(key, uniform, pairs, cn, num_test, negatives)
  return Problem(jnp.asarray(data.train_pairs), cw, cn, tc, tt, tl)


class State(NamedTuple):
  """Training state: parameters, the run key and an int32 step counter."""

  params: Params
  key: jax.Array
  step: jax.Array


def train_algorithm(parametrization: str, width: int, vocab_size: int, *, base_width: int = 1,
                    batch_size: int = 64, negatives: int = 5, dtype=jnp.float32) -> Algorithm:
  """An engine :class:`~jaxopt_lab.engine.Algorithm` (init/step, traced ``learning_rate``).

  ``parametrization="limit"`` trains the exact muP limit (P, Q); ``width`` is then ignored.
  Metrics: ``test_loss`` (held-out negative-sampling loss) after each step.
  """
  scal = _scal(parametrization, width, base_width)
  if parametrization == "limit":
    make = lambda key: limit_init(vocab_size, dtype)
  else:
    make = lambda key: init(key, vocab_size, width, scal, dtype)
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")

  def init_fn(key, prob: Problem) -> State:
    k_init, k_run = jax.random.split(key)
    return State(make(k_init), k_run, jnp.zeros((), jnp.int32))

  def step_fn(state: State, prob: Problem, *, learning_rate) -> tuple[State, dict]:
    kb = jax.random.fold_in(state.key, state.step)
    batch = _batch(kb, prob.cum_weights, prob.pairs, prob.cum_noise, batch_size, negatives)
    params = step(state.params, *batch, learning_rate=learning_rate, scal=scal)
    loss = ns_loss(params, prob.test_centres, prob.test_targets, prob.test_labels, scal.scale)
    return State(params, state.key, state.step + 1), {"test_loss": loss}

  return Algorithm(f"word2vec_{parametrization}", init_fn, step_fn)


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size", "negatives"))
def train_from(params: Params, data_key: jax.Array, prob: Problem, scal: Scalings, *,
               learning_rate: float | ArrayLike, num_steps: int, batch_size: int = 64,
               negatives: int = 5) -> tuple[Params, jax.Array]:
  """Runs ``num_steps`` SGD steps from ``params`` (one ``lax.scan``); returns the parameters and the
  final held-out loss.

  ``scal`` is traced, so one compilation serves every width padded to a common number of columns
  (zero columns of both ``u`` and ``c`` stay zero under :func:`step`) and the limit; vmap over a
  stack of ``(params, scal)``. Step ``t`` draws its batch from ``fold_in(data_key, t)``."""
  if not isinstance(num_steps, int) or num_steps < 0:
    raise ValueError(f"num_steps must be an int >= 0, got {num_steps!r}")

  def one(p, t):
    batch = _batch(jax.random.fold_in(data_key, t), prob.cum_weights, prob.pairs, prob.cum_noise,
                   batch_size, negatives)
    return step(p, *batch, learning_rate=learning_rate, scal=scal), None

  params, _ = jax.lax.scan(one, params, jnp.arange(num_steps, dtype=jnp.int32))
  return params, ns_loss(params, prob.test_centres, prob.test_targets, prob.test_labels, scal.scale)


def padded_init(key: jax.Array, vocab_size: int, width: int, columns: int, scal: Scalings,
                dtype=jnp.float32) -> Params:
  """:func:`init` at ``width`` padded with zero columns to ``columns`` (for :func:`train_from`)."""
  if columns < width:
    raise ValueError(f"columns ({columns}) must be >= width ({width})")
  p = init(key, vocab_size, width, scal, dtype)
  pad = ((0, 0), (0, columns - width))
  return Params(jnp.pad(p.u, pad), jnp.pad(p.c, pad))


def train(init_key: jax.Array, data_key: jax.Array, prob: Problem, *, parametrization: str,
          width: int, vocab_size: int, learning_rate: float | ArrayLike, num_steps: int,
          base_width: int = 1, batch_size: int = 64, negatives: int = 5) -> tuple[Params, jax.Array]:
  """Trains one network (``parametrization`` in :data:`PARAMETRIZATIONS`) or the exact muP limit
  (``"limit"``; ``init_key`` and ``width`` unused) by :func:`train_from`.

  ``init_key`` draws the initialization and ``data_key`` the batches and negatives, so finite widths
  can share the limit's batch sequence.

  Example:
    >>> params, loss = train(k0, k1, prob, parametrization="mup", width=256, vocab_size=200,
    ...                      learning_rate=1.0, num_steps=300, base_width=64)
  """
  dtype = prob.cum_weights.dtype
  scal = _scal(parametrization, width, base_width)
  if parametrization == "limit":
    params = limit_init(vocab_size, dtype)
  else:
    params = init(init_key, vocab_size, width, scal, dtype)
  scal = Scalings(*(jnp.asarray(v, dtype) for v in scal))
  return train_from(params, data_key, prob, scal, learning_rate=learning_rate, num_steps=num_steps,
                    batch_size=batch_size, negatives=negatives)


class WidthSweep(NamedTuple):
  """Output of :func:`sweep_widths`: the limit's parameters and loss, and per width (padded) ones.

  Attributes:
    limit: the limit's (P, Q), padded with zero columns.
    limit_loss: its held-out loss.
    params: per width, the stacked (seeds, V, columns) parameters (zero columns past the width).
    loss: ``(widths, seeds)`` held-out losses.
  """

  limit: Params
  limit_loss: jax.Array
  params: tuple[Params, ...]
  loss: jax.Array


def sweep_widths(prob: Problem, data_key: jax.Array, init_keys: jax.Array, *, parametrization: str,
                 widths: tuple[int, ...], vocab_size: int, learning_rate: float | ArrayLike,
                 num_steps: int, base_width: int = 1, batch_size: int = 64,
                 negatives: int = 5) -> WidthSweep:
  """The exact muP limit and ``parametrization`` networks at every width x init key, all on the
  batch sequence of ``data_key``, as one compiled program: every run padded to
  ``max(max(widths), 2V)`` columns with its scalings traced (:func:`train_from`), mapped in groups of
  ``len(init_keys)``. The scalings are arguments, so SP, NTP and muP share the compilation."""
  widths = tuple(int(n) for n in widths)
  if not widths or min(widths) < 1:
    raise ValueError(f"widths must be a non-empty tuple of ints >= 1, got {widths!r}")
  seeds = int(jnp.shape(init_keys)[0])
  rows = [limit_scalings(base_width)] + [scalings(parametrization, n, base_width)
                                         for n in widths for _ in range(seeds)]
  scal = Scalings(*(np.asarray(v, np.float64) for v in zip(*rows)))
  return _sweep_core(prob, data_key, init_keys, scal, widths=widths, vocab_size=vocab_size,
                     learning_rate=learning_rate, num_steps=num_steps, batch_size=batch_size,
                     negatives=negatives)


@functools.partial(jax.jit, static_argnames=("widths", "vocab_size", "num_steps", "batch_size",
                                             "negatives"))
def _sweep_core(prob, data_key, init_keys, scal, *, widths, vocab_size, learning_rate, num_steps,
                batch_size, negatives) -> WidthSweep:
  V, seeds, dtype = vocab_size, init_keys.shape[0], prob.cum_weights.dtype
  scal = Scalings(*(jnp.asarray(v, dtype) for v in scal))
  cols = max(max(widths), 2 * V)
  pad = ((0, 0), (0, cols - 2 * V))
  starts = [jax.tree.map(lambda a: jnp.pad(a, pad)[None], limit_init(V, dtype))]
  for i, n in enumerate(widths):
    sc = jax.tree.map(lambda a, i=i: a[1 + i * seeds:1 + (i + 1) * seeds], scal)
    starts.append(jax.vmap(lambda k, s, n=n: padded_init(k, V, n, cols, s, dtype))(init_keys, sc))
  start = jax.tree.map(lambda *a: jnp.concatenate(a), *starts)
  run = lambda ps: train_from(ps[0], data_key, prob, ps[1], learning_rate=learning_rate,
                              num_steps=num_steps, batch_size=batch_size, negatives=negatives)
  params, losses = jax.lax.map(run, (start, scal), batch_size=seeds)
  per_width = tuple(jax.tree.map(lambda a, i=i: a[1 + i * seeds:1 + (i + 1) * seeds], params)
                    for i in range(len(widths)))
  return WidthSweep(jax.tree.map(lambda a: a[0], params), losses[0], per_width,
                    losses[1:].reshape(len(widths), seeds))


def _scal(parametrization: str, width: int, base_width: int) -> Scalings:
  if parametrization == "limit":
    return limit_scalings(base_width)
  return scalings(parametrization, width, base_width)


# --------------------------------------------------------------------------------------------------
# Evaluation.


def embedding_kernel(params: Params, width: int | None = None) -> Float[Array, "V V"]:
  r"""The embeddings' Gram matrix: :math:`U U^\top / n` for a finite network (pass ``width = n``),
  :math:`P P^\top` for the limit (``width=None``: its columns are Gaussian coordinates), so that the
  finite kernel tends to the limit's."""
  k = params.u @ params.u.T
  return k if width is None else k / width


def cosines(kernel: Float[ArrayLike, "V V"]) -> Float[Array, "V V"]:
  """Cosine similarities of the embeddings from their Gram matrix."""
  k = jnp.asarray(kernel)
  d = jnp.sqrt(jnp.clip(jnp.diag(k), 1e-30))
  return k / d[:, None] / d[None, :]


def analogy_accuracy(kernel: Float[ArrayLike, "V V"], questions: Int[ArrayLike, "Q 4"]) -> float:
  r"""3CosAdd accuracy: the share of a:b :: c:d with :math:`d = \arg\max_x \cos(x, \hat b - \hat a + \hat c)`
  over :math:`x \notin \{a, b, c\}` (unit embeddings; ties count as wrong). 0 if no question."""
  q = np.asarray(questions)
  if q.shape[0] == 0:
    return 0.0
  cos = np.asarray(cosines(kernel))
  score = cos[:, q[:, 1]] - cos[:, q[:, 0]] + cos[:, q[:, 2]]  # (V, Q)
  score[q[:, :3].T, np.arange(q.shape[0])[None]] = -np.inf
  best = score.max(0)
  unique = (score >= best[None] - 1e-9).sum(0) == 1  # an all-equal column (K = I) is no answer
  return float(np.mean((score.argmax(0) == q[:, 3]) & unique))


def wordsim_spearman(kernel: Float[ArrayLike, "V V"], pairs: Int[ArrayLike, "S 2"],
                     scores: ArrayLike) -> float:
  """Spearman correlation of embedding cosines with WordSim353 human scores (0 when the cosines are
  all equal, as in the NTK limit, or fewer than 3 pairs)."""
  p = np.asarray(pairs)
  if p.shape[0] < 3:
    return 0.0
  cos = np.asarray(cosines(kernel))[p[:, 0], p[:, 1]]
  if np.ptp(cos) < 1e-12:
    return 0.0
  return float(scipy.stats.spearmanr(cos, np.asarray(scores)).statistic)


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size", "negatives", "base_width"))
def ntk_limit(init_key: jax.Array, data_key: jax.Array, prob: Problem, *, learning_rate: float | ArrayLike, num_steps: int,
              batch_size: int = 64, negatives: int = 5, base_width: int = 1) -> jax.Array:
  r"""Held-out negative-sampling loss of the NTK limit (NTP at infinite width; same batches as
  :func:`train` with the same key).

  At infinite width NTP's logits are a Gaussian process with iid :math:`N(0, 1)` pair logits
  :math:`F_0` (the NNGP: :math:`U_w \cdot C_c` has variance :math:`n \cdot 1/n`), and train as kernel
  regression with the diagonal NTK :math:`\Theta = \eta_U |C_c|^2 + \eta_C |U_w|^2 \to 1 + n_b`
  (rates :math:`\eta` and :math:`\eta n_b / n`): a lookup table
  :math:`F_{wc} \mathrel{-}= \eta (1 + n_b)\chi_{wc}`. Embeddings stay at their init (the embedding
  kernel stays :math:`I`): no feature learning.
  """
  V = prob.cum_noise.shape[0]
  dtype = prob.cum_weights.dtype
  rate = learning_rate * (1.0 + base_width)

  def one(F, t):
    c, tg, lab = _batch(jax.random.fold_in(data_key, t), prob.cum_weights, prob.pairs, prob.cum_noise,
                        batch_size, negatives)
    chi = (jax.nn.sigmoid(F[c[:, None], tg]) - lab) / c.shape[0]
    return F.at[c[:, None], tg].add(-rate * chi), None

  F0 = jax.random.normal(init_key, (V, V), dtype)
  F, _ = jax.lax.scan(one, F0, jnp.arange(num_steps, dtype=jnp.int32))
  f = F[prob.test_centres[:, None], prob.test_targets]
  return -jnp.mean(jnp.sum(jax.nn.log_sigmoid(jnp.where(prob.test_labels > 0, f, -f)), -1))
