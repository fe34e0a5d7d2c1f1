r"""muTransfer: the learning rate x width sweep, under SP and muP, and where the best learning rate goes.

For each width (swept in Python) every (seed, learning rate) pair is one
:func:`jaxopt_lab.engine.run` (a scan that tracks ``diverged_at``), vmapped over seeds and learning
rates in one program. The width-dependent scalings are traced arguments, so one compile per width
serves SP, muP and any other parametrization. The best
learning rate of a width minimizes the seed-mean final loss (a run that diverged, per the engine's
``diverged_at``, counts as infinite loss). Under muP it stays put as the width grows (hyperparameter
transfer); under SP with a width-independent learning rate it drifts down roughly like
:math:`1/\text{width}`.

Tasks: :func:`digits_task` (scikit-learn's 8x8 digits, 10 classes, features standardized) and
:func:`teacher_task` (a synthetic regression task from a random teacher network).

Reference: Yang et al., "Tensor Programs V", arXiv:2203.03466 (Figure 1, Section 3); Yang & Hu,
arXiv:2011.14522.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_lab.engine.run import check_schedule, run
from jaxopt_lab.mup.parametrization import MLP, Scalings, Task, _algorithm, shape_only
from jaxopt_lab.plotting import InlineFigure


class TransferResult(NamedTuple):
  """A learning rate x width sweep.

  Attributes:
    widths: ``(W,)``.
    lrs: ``(K,)`` learning rates (a geometric grid).
    seeds: ``(S,)``.
    steps: ``(R,)`` steps of the loss records.
    loss: ``(W, S, K, R)`` training loss curves.
    diverged: ``(W, S, K)`` bool, runs that became non-finite.
    final_loss: ``(W, K)`` seed-mean loss over the last ``tail`` records (inf if any seed diverged).
    best_lr: ``(W,)`` the learning rate minimizing ``final_loss`` per width.
    best_index: ``(W,)`` its index in ``lrs``.
  """

  widths: np.ndarray
  lrs: np.ndarray
  seeds: np.ndarray
  steps: np.ndarray
  loss: np.ndarray
  diverged: np.ndarray
  final_loss: np.ndarray
  best_lr: np.ndarray
  best_index: np.ndarray

  def shift_in_grid_steps(self) -> int:
    """How far the best learning rate moves across widths, in grid steps (max index - min index)."""
    return int(self.best_index.max() - self.best_index.min())

  def best_lr_exponent(self) -> float:
    r"""Least-squares slope of :math:`\log \eta^*` vs :math:`\log n` (0: transfer; about -1: SP)."""
    return float(np.polyfit(np.log(self.widths), np.log(self.best_lr), 1)[0])


@functools.partial(jax.jit, static_argnames=("shape_net", "loss", "batch_size", "optimizer",
                                             "num_steps", "record_every"))
def _one_width(task: Task, scal: Scalings, keys: jax.Array, lrs: jax.Array, *, shape_net: MLP,
               loss: str, batch_size: int | None, optimizer, num_steps: int, record_every: int):
  # Scalings traced: one compile per width serves SP, muP and any other parametrization.
  alg = _algorithm(shape_net, loss=loss, batch_size=batch_size, optimizer=optimizer, adam_eps=1e-8,
                   traced_scalings=True)

  def one(key, lr):
    state, metrics = run(alg, key, (task, scal), {"lr": lr}, num_steps=num_steps,
                         record_every=record_every)
    return metrics["loss"], state.diverged_at, metrics["step"]

  return jax.vmap(lambda k: jax.vmap(lambda lr: one(k, lr))(lrs))(keys)


def transfer_sweep(net: MLP, widths: Sequence[int], task: Task, *, lrs: Sequence[float],
                   seeds: Sequence[int] = (0,), num_steps: int = 100, record_every: int = 10,
                   loss: str = "xent", batch_size: int | None = None,
                   optimizer: str | optax.GradientTransformation | None = None,
                   tail: int = 1) -> TransferResult:
  r"""Trains ``net`` at every width and learning rate (vmapped) and finds the best learning rate.

  Args:
    net: template :class:`~jaxopt_lab.mup.parametrization.MLP` (its ``width`` is replaced; set its
      ``base_width`` to the smallest width so that SP and muP coincide there).
    widths: the widths (Python loop).
    task: training data.
    lrs: the learning-rate grid :math:`\eta` (vmapped by the engine).
    seeds: seeds (vmapped).
    num_steps, record_every: training length and loss-record spacing.
    loss: ``"xent"`` or ``"mse"``.
    batch_size: minibatch size or None (full batch).
    optimizer: ``"sgd"``, ``"adam"`` or an optax direction (default ``net.abc.optimizer``).
    tail: number of final records averaged into ``final_loss``.

  Returns:
    :class:`TransferResult`.

  Example:
    >>> res = transfer_sweep(MLP(preset("mup", 2), 64, 32, 10, base_width=32), [32, 64, 128, 256],
    ...                      digits_task(), lrs=2.0 ** np.arange(-4, 5), num_steps=200)
    >>> res.shift_in_grid_steps()

  Reference: arXiv:2203.03466, Section 3 and Figure 1.
  """
  widths = np.asarray(list(widths))
  lrs = np.asarray(list(lrs), np.float64)
  seeds = np.asarray(list(seeds))
  if widths.size < 1 or np.any(widths < 1):
    raise ValueError(f"widths must be ints >= 1, got {widths.tolist()}")
  if lrs.size < 1 or np.any(~np.isfinite(lrs)) or np.any(lrs <= 0):
    raise ValueError(f"lrs must be positive finite numbers, got {lrs.tolist()}")
  if not isinstance(tail, int) or tail < 1 or tail > num_steps // record_every:
    raise ValueError(f"tail must be an int in [1, num_records], got {tail!r}")
  curves, diverged = [], []
  steps = None
  check_schedule(num_steps, record_every)
  if loss not in ("mse", "xent"):
    raise ValueError(f"unknown loss {loss!r}; choose 'mse' or 'xent'")
  dtype = task.x.dtype
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  for n in widths:
    net_n = dataclasses.replace(net, width=int(n))
    scal = jax.tree.map(lambda v: jnp.asarray(v, dtype), net_n.scalings())
    curve, div_at, step = _one_width(task, scal, keys, jnp.asarray(lrs, dtype),
                                     shape_net=shape_only(net_n), loss=loss, batch_size=batch_size,
                                     optimizer=optimizer, num_steps=num_steps,
                                     record_every=record_every)
    curves.append(np.asarray(curve))
    diverged.append(np.asarray(div_at) >= 0)
    steps = np.asarray(step)[0, 0]
  loss_arr = np.stack(curves)  # (W, S, K, R)
  div = np.stack(diverged)
  tail_loss = loss_arr[..., -tail:].mean(axis=-1)  # (W, S, K)
  tail_loss = np.where(div | ~np.isfinite(tail_loss), np.inf, tail_loss)
  final = tail_loss.mean(axis=1)
  best = np.argmin(final, axis=1)
  return TransferResult(widths, lrs, seeds, np.asarray(steps), loss_arr, div, final, lrs[best], best)


def plot_transfer(results: dict[str, TransferResult], title: str = "") -> InlineFigure:
  """Final training loss vs learning rate, one line per width, one panel per parametrization."""
  fig = InlineFigure(figsize=(3.6 * len(results), 3.0), tight_layout=True)
  axes = fig.subplots(1, len(results), squeeze=False)[0]
  for ax, (name, res) in zip(axes, results.items()):
    for i, n in enumerate(res.widths):
      y = np.where(np.isfinite(res.final_loss[i]), res.final_loss[i], np.nan)
      (line,) = ax.semilogx(res.lrs, y, "o-", ms=3, lw=1.2, label=f"width {n}")
      ax.axvline(res.best_lr[i], color=line.get_color(), lw=0.6, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("learning rate")
    ax.set_title(f"{name}: best-LR shift {res.shift_in_grid_steps()} steps", fontsize=9)
    ax.legend(fontsize=6)
  axes[0].set_ylabel("final training loss")
  if title:
    fig.suptitle(title, fontsize=9)
  return fig


DIGITS_SIZE = 1797  # images in scikit-learn's digits


def digits_task(num: int | None = None, dtype=None) -> Task:
  """scikit-learn's digits (1797 x 64, 10 classes), standardized features; the first ``num`` samples.

  ``num`` must be an int in ``[1, 1797]`` (None: all); anything else raises ``ValueError`` rather than
  slicing to another size than the one asked for.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

  if num is not None and (isinstance(num, bool) or not isinstance(num, (int, np.integer))
                          or not 1 <= num <= DIGITS_SIZE):
    raise ValueError(f"num (digits examples) must be an int in [1, {DIGITS_SIZE}], got {num!r}")
  x, y = load_digits(return_X_y=True)
  x = x.astype(np.float64)
  x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
  if num is not None:
    x, y = x[:num], y[:num]
  dtype = dtype or jnp.result_type(float)
  return Task(jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32))


def teacher_task(key: jax.Array, num: int = 512, d_in: int = 16, d_out: int = 1,
                 teacher_width: int = 64, dtype=None) -> Task:
  r"""Synthetic regression: :math:`y = W_2 \tanh(W_1 x) / \sqrt{k}` for a random teacher, :math:`x \sim N(0, I)`."""
  for name, v in (("num", num), ("d_in", d_in), ("d_out", d_out), ("teacher_width", teacher_width)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"{name} must be an int >= 1, got {v!r}")
  dtype = dtype or jnp.result_type(float)
  kx, k1, k2 = jax.random.split(key, 3)
  x = jax.random.normal(kx, (num, d_in), dtype)
  w1 = jax.random.normal(k1, (d_in, teacher_width), dtype) / math.sqrt(d_in)
  w2 = jax.random.normal(k2, (teacher_width, d_out), dtype) / math.sqrt(teacher_width)
  return Task(x, jnp.tanh(x @ w1) @ w2)


__all__ = ["TransferResult", "digits_task", "plot_transfer", "teacher_task", "transfer_sweep"]
