r"""Word2Vec at finite width vs its exact infinite-width muP limit and the NTK limit (TP4 Section 9.1).

Yang & Hu 2021 (arXiv:2011.14522) compute the feature-learning limit of Word2Vec exactly and find
(i) finite muP networks approach it, (ii) it beats the kernel (NTK/NNGP) limits, which learn no
embeddings, (iii) wider muP networks are better. Measured here in small (:mod:`jaxopt_lab.mup.word2vec`:
skip-gram with negative sampling on the Lee corpus shipped in gensim's wheel, vocabulary of the
``vocab_size`` most frequent words, base width 64 where muP equals SP).

All three checks read one cached sweep per (preset, seed offset): the exact muP limit, the NTK limit
over ``seeds`` NNGP draws, and muP networks at each width over ``seeds`` init draws, every run on the
*same* SGD batch sequence (``data`` key), so width, not batch noise, separates them.

* ``mup_word2vec.limit_convergence``: width exponent of the RMS (over init seeds and held-out pairs)
  of :math:`f_n - f_\infty`, the trained logits on held-out pairs, and of the trained embedding kernel
  :math:`UU^\top/n - PP^\top`; the worse of the two exponents is the value. Every finite network is a
  smooth function of the Gram matrix :math:`\Omega^\top\Omega/n` of its initial Gaussian coordinates,
  whose fluctuations are :math:`n^{-1/2}` (CLT), so the gaps fall as :math:`n^{-1/2}`; second-order terms
  (relative size :math:`\sim n^{-1/2}`) bend the fit at the smallest widths, hence the band
  [-0.6, -0.4], as in ``mup.limit_convergence_*``.
* ``mup_word2vec.limit_beats_ntk``: the held-out negative-sampling loss of the NTK limit minus the muP
  limit's, in units of the seed spread (the larger std over seeds of the NTK limit's loss and of the
  widest muP network's): more than 3 spreads.
* ``mup_word2vec.wider_is_better``: for consecutive widths, the rise of the mean held-out loss in
  standard errors; the largest rise must stay below 2 (no width is significantly worse than a
  narrower one), and the details hold the gap of the widest network to the limit.

The task metric is the held-out loss, not analogy accuracy or WordSim correlation: at this corpus
size (60k tokens, vocabulary 200..2000) only tens of analogy questions and WordSim pairs are in the
vocabulary and those metrics' seed noise swamps width effects; they are reported by the colab and the
README table.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from jaxopt_lab import fitting
from jaxopt_lab.mup import word2vec as w2v
from theory_checks import mup_common as common
from theory_checks.registry import Measurement, check_key, register

PRESETS = {
    "quick": dict(vocab_size=200, widths=(64, 128, 256, 512), seeds=4, num_steps=300, num_test=500),
    "full": dict(vocab_size=1000, widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=8,
                 num_steps=5000, num_test=2000),
}
LEARNING_RATE, BASE_WIDTH, BATCH, NEGATIVES = 1.0, 64, 64, 5


@functools.partial(jax.jit, static_argnames=("vocab_size", "widths", "parametrization", "num_steps"))
def _sweep(prob: w2v.Problem, data_key, init_keys, *, vocab_size, widths, parametrization, num_steps):
  sw = w2v.sweep_widths(prob, data_key, init_keys, parametrization=parametrization, widths=widths,
                        vocab_size=vocab_size, learning_rate=LEARNING_RATE, num_steps=num_steps,
                        base_width=BASE_WIDTH, batch_size=BATCH, negatives=NEGATIVES)
  ntk_loss = jax.vmap(lambda k: w2v.ntk_limit(
      k, data_key, prob, learning_rate=LEARNING_RATE, num_steps=num_steps, batch_size=BATCH,
      negatives=NEGATIVES, base_width=BASE_WIDTH))(init_keys)
  f_inf = w2v.logits(sw.limit, prob.test_centres, prob.test_targets,
                     w2v.limit_scalings(BASE_WIDTH).scale)
  k_inf = w2v.embedding_kernel(sw.limit)
  rms_f, rms_k = [], []
  for p, n in zip(sw.params, widths):
    f = jax.vmap(lambda q: w2v.logits(q, prob.test_centres, prob.test_targets))(p)
    kern = jax.vmap(lambda q, n=n: w2v.embedding_kernel(q, n))(p)
    rms_f.append(jnp.sqrt(jnp.mean(jnp.square(f - f_inf[None]))))
    rms_k.append(jnp.sqrt(jnp.mean(jnp.square(kern - k_inf[None]))))
  return sw.limit_loss, sw.loss, ntk_loss, jnp.stack(rms_f), jnp.stack(rms_k)


@functools.lru_cache(maxsize=16)
def measure(preset_name: str, seed: int, parametrization: str = "mup") -> dict:
  """The shared sweep: limit, NTK limit and finite ``parametrization`` networks on one batch sequence."""
  cfg = PRESETS[preset_name]
  data = w2v.load_dataset(cfg["vocab_size"])
  prob = w2v.problem(data, check_key(seed, "heldout"), negatives=NEGATIVES, num_test=cfg["num_test"],
                     dtype=jnp.float64)
  init_keys = jax.random.split(check_key(seed, "init"), cfg["seeds"])
  lim_loss, loss, ntk_loss, rms_f, rms_k = _sweep(
      prob, check_key(seed, "data"), init_keys, vocab_size=cfg["vocab_size"], widths=cfg["widths"],
      parametrization=parametrization, num_steps=cfg["num_steps"])
  return dict(widths=np.array(cfg["widths"]), loss=np.asarray(loss), rms_f=np.asarray(rms_f),
              rms_k=np.asarray(rms_k), limit_loss=float(lim_loss), ntk_loss=np.asarray(ntk_loss))


def _figure(m: dict, title: str) -> Figure:
  fig = Figure(figsize=(8, 3.2), tight_layout=True)
  ax1, ax2 = fig.subplots(1, 2)
  w = m["widths"]
  ax1.loglog(w, m["rms_f"], "o-", label="RMS f_n - f_inf (held-out logits)")
  ax1.loglog(w, m["rms_k"], "s-", label="RMS UU^T/n - PP^T")
  ax1.loglog(w, m["rms_f"][0] * np.sqrt(w[0] / w), "k:", label="n^-1/2")
  ax1.set_xscale("log", base=2)
  ax1.set_xlabel("width n")
  ax1.legend(fontsize=7)
  mean, se = m["loss"].mean(1), m["loss"].std(1, ddof=1) / math.sqrt(m["loss"].shape[1])
  ax2.errorbar(w, mean, yerr=se, fmt="o-", label="muP, width n")
  ax2.axhline(m["limit_loss"], color="C2", label="muP limit")
  ax2.axhline(m["ntk_loss"].mean(), color="C3", ls="--", label="NTK limit")
  ax2.set_xscale("log", base=2)
  ax2.set_xlabel("width n")
  ax2.set_ylabel("held-out NS loss")
  ax2.legend(fontsize=7)
  fig.suptitle(title, fontsize=9)
  return fig


@register(
    id="mup_word2vec.limit_convergence", paper=common.PAPER,
    claim="Word2Vec (skip-gram, negative sampling) muP nets -> the exact infinite-width limit: width "
          "exponent of the RMS gap of held-out logits and of the embedding kernel (the worse one)",
    predicted="-0.5", band=(-0.6, -0.4))
def limit_convergence(preset_name: str, seed: int) -> Measurement:
  m = measure(preset_name, seed)
  fit_f = fitting.loglog_slope(m["widths"], m["rms_f"])
  fit_k = fitting.loglog_slope(m["widths"], m["rms_k"])
  details = {"widths": m["widths"].tolist(), "rms_logits": common.rounded(m["rms_f"]),
             "rms_kernel": common.rounded(m["rms_k"]), "slope_logits": common.rounded(fit_f.slope),
             "slope_kernel": common.rounded(fit_k.slope),
             "sqrt(n) * rms_logits": common.rounded(m["rms_f"] * np.sqrt(m["widths"]))}
  return Measurement(common.worst([fit_f.slope, fit_k.slope], -0.5), details,
                     _figure(m, "Word2Vec: muP widths -> exact limit"))


@register(
    id="mup_word2vec.limit_beats_ntk", paper=common.PAPER,
    claim="Word2Vec: the muP limit's held-out loss beats the NTK limit's (no feature learning) by more "
          "than 3 seed spreads",
    predicted="> 3", band=(3.0, math.inf))
def limit_beats_ntk(preset_name: str, seed: int) -> Measurement:
  m = measure(preset_name, seed)
  spread = max(float(np.std(m["ntk_loss"], ddof=1)), float(np.std(m["loss"][-1], ddof=1)))
  margin = float(np.mean(m["ntk_loss"])) - m["limit_loss"]
  details = {"mup_limit_loss": common.rounded(m["limit_loss"]),
             "ntk_limit_loss": common.rounded(m["ntk_loss"]), "margin": common.rounded(margin),
             "seed_spread": common.rounded(spread)}
  return Measurement(margin / spread if spread > 0 else math.nan, details)


def rise_in_standard_errors(loss: np.ndarray) -> np.ndarray:
  """For a (widths, seeds) loss table: (mean_{k+1} - mean_k) / sqrt(se_k^2 + se_{k+1}^2)."""
  mean = loss.mean(1)
  se2 = loss.var(1, ddof=1) / loss.shape[1]
  return (mean[1:] - mean[:-1]) / np.sqrt(se2[1:] + se2[:-1])


@register(
    id="mup_word2vec.wider_is_better", paper=common.PAPER,
    claim="Word2Vec under muP: held-out loss falls with width towards the limit's; largest rise "
          "between consecutive widths, in standard errors",
    predicted="< 2 (no significant rise)", band=(-math.inf, 2.0))
def wider_is_better(preset_name: str, seed: int) -> Measurement:
  m = measure(preset_name, seed)
  z = rise_in_standard_errors(m["loss"])
  details = {"widths": m["widths"].tolist(), "mean_loss": common.rounded(m["loss"].mean(1)),
             "rise_z": common.rounded(z), "mup_limit_loss": common.rounded(m["limit_loss"]),
             "widest_minus_limit": common.rounded(m["loss"][-1].mean() - m["limit_loss"]),
             "narrowest_minus_limit": common.rounded(m["loss"][0].mean() - m["limit_loss"])}
  return Measurement(float(np.max(z)), details)
