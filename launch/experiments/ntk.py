r"""Builder for NTK training sweeps (Jacot, Gabriel & Hongler 2018, arXiv:1806.07572): seeds x lr.

A finite NTK-parametrized MLP (:class:`jaxopt_lab.ntk.MLP`) is trained by full-batch gradient descent
on :math:`\mathcal{L} = \frac{1}{2n}\sum_i \|f(x_i) - y_i\|^2` (:func:`jaxopt_lab.ntk.gd_mse`), and
each recorded step is compared with the network's infinite-width limit from the same :math:`f_0`:

.. math::
    f^\infty_t(x) = f_0(x) + \Theta(x, X)\,\Theta^{-1}\big(I - (I - \eta\Theta/n)^t\big)(Y - f_0(X)),

(:func:`jaxopt_lab.ntk.tracked_gd`; :func:`jaxopt_lab.ntk.mse_predict` with ``discrete=True``, analytic :math:`\Theta` of
:func:`jaxopt_lab.ntk.mlp_kernels`); the residual's components along the top eigenvectors
:math:`v_k` of :math:`\Theta(X, X)` against their predicted decay :math:`|1 - \eta\lambda_k/n|^t`;
and the relative change of the empirical NTK :math:`\hat\Theta_t` on the training inputs
(Theorem 2: it vanishes as the width grows; Dyer & Gur-Ari 2019, arXiv:1909.11304: as 1/width).

The tasks (:func:`circle_task`, :func:`digits_task`) are the data of the paper's Figs. 1-3 in small;
the colab ``colabs/ntk.ipynb`` imports them from here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxopt_lab import ntk
from jaxopt_lab.ntk.tracking import TrackedProblem, tracked_gd
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive

TASKS = ("circle", "digits")
DIGITS_SIZE = 1797  # images in scikit-learn's digits


class Task(NamedTuple):
  """Training inputs and targets, and test inputs and targets (host arrays)."""

  x: np.ndarray
  y: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray


def circle_target(gamma: np.ndarray) -> np.ndarray:
  r"""The circle task's target :math:`f^*(\gamma) = \sin 2\gamma + \tfrac12 \cos\gamma`, shape (n, 1)."""
  gamma = np.asarray(gamma)
  return (np.sin(2 * gamma) + 0.5 * np.cos(gamma))[:, None]


def circle_angles(num_train: int) -> np.ndarray:
  r"""Training angles :math:`\gamma_i = -\pi + 2\pi (i + 1/2) / n`, equispaced, none at :math:`\pm\pi`."""
  return -np.pi + 2 * np.pi * (np.arange(num_train) + 0.5) / num_train


def circle_task(num_train: int, num_test: int, dtype=np.float32) -> Task:
  r"""Points :math:`x = (\cos\gamma, \sin\gamma)` of the unit circle (Jacot et al. 2018, Figs. 1-2):
  ``num_train`` training angles from :func:`circle_angles`, ``num_test`` test angles equispaced from
  :math:`-\pi`, targets :func:`circle_target`."""
  on_circle = lambda g: np.stack([np.cos(g), np.sin(g)], axis=1).astype(dtype)
  g_train = circle_angles(num_train)
  g_test = -np.pi + 2 * np.pi * np.arange(num_test) / num_test
  return Task(on_circle(g_train), circle_target(g_train).astype(dtype), on_circle(g_test),
              circle_target(g_test).astype(dtype))


def digits_task(num_train: int, num_test: int, dtype=np.float32) -> Task:
  r"""scikit-learn's digits (8x8 images, a stand-in for the paper's MNIST in Fig. 3): the first
  ``num_train`` images for training and the next ``num_test`` for testing; pixels centered by their
  mean over all 1797 images, each image then scaled to norm :math:`\sqrt{d}` (:math:`d = 64`, so
  :math:`\Sigma^1(x, x) = \sigma_w^2 + \sigma_b^2`); targets one-hot minus 0.1 (centered over the
  10 classes)."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  data = load_digits()
  x = data.data.astype(np.float64)
  x = (x - x.mean(axis=0))[:num_train + num_test]
  x *= np.sqrt(x.shape[1]) / np.linalg.norm(x, axis=1, keepdims=True)
  y = np.eye(10)[data.target[:num_train + num_test]] - 0.1
  x, y = x.astype(dtype), y.astype(dtype)
  return Task(x[:num_train], y[:num_train], x[num_train:], y[num_train:])


def _check_number(name: str, value, *, minimum: float, strict: bool) -> float:
  ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        and (value > minimum if strict else value >= minimum))
  if not ok:
    raise ValueError(f"config.{name} must be a finite number {'>' if strict else '>='} {minimum}, "
                     f"got {value!r}")
  return float(value)


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum or (
      maximum is not None and value > maximum):
    bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
    raise ValueError(f"config.{name} must be an integer {bound}, got {value!r}")
  return int(value)


@register_experiment("ntk")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates every value, then builds the task, the analytic kernels and the tracked GD."""
  n, t, m, s = config.network, config.task, config.measure, config.sweep
  width = _check_int("network.width", n.width, 1)
  depth = _check_int("network.depth", n.depth, 2)  # at least one hidden layer
  if n.activation not in ntk.ACTIVATIONS:
    raise ValueError(f"config.network.activation must be one of {sorted(ntk.ACTIVATIONS)}, got "
                     f"{n.activation!r}")
  sigma_w = _check_number("network.sigma_w", n.sigma_w, minimum=0.0, strict=True)
  sigma_b = _check_number("network.sigma_b", n.sigma_b, minimum=0.0, strict=False)
  if t.name not in TASKS:
    raise ValueError(f"config.task.name must be one of {TASKS}, got {t.name!r}")
  num_train = _check_int("task.num_train", t.num_train, 1)
  num_test = _check_int("task.num_test", t.num_test, 1)
  if t.name == "digits" and num_train + num_test > DIGITS_SIZE:
    raise ValueError(f"config.task.num_train + num_test = {num_train + num_test} exceeds the "
                     f"{DIGITS_SIZE} digits images")
  dtype = {"float32": np.float32, "float64": np.float64}.get(t.dtype)
  if dtype is None:
    raise ValueError(f"config.task.dtype must be float32 or float64, got {t.dtype!r}")
  if not isinstance(m.track_ntk, bool):
    raise ValueError(f"config.measure.track_ntk must be True or False, got {m.track_ntk!r}")
  num_pcs = _check_int("measure.num_pcs", m.num_pcs, 0, num_train)
  for name, minimum in (("num_seeds", 1), ("first_seed", 0), ("num_steps", 1), ("record_every", 1),
                        ("chunk_steps", 0)):
    _check_int(f"sweep.{name}", s[name], minimum)
  if s.num_steps % s.record_every or (s.chunk_steps and s.chunk_steps % s.record_every):
    raise ValueError(f"config.sweep.num_steps ({s.num_steps}) and chunk_steps ({s.chunk_steps}) "
                     f"must be multiples of record_every ({s.record_every})")
  hp = hp_from_config(config.hp)
  require_positive(hp, ["lr"])
  if set(hp) != {"lr"}:
    raise ValueError(f"config.hp takes only lr, got {sorted(hp)}")

  if dtype == np.float64 and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
  task = (circle_task if t.name == "circle" else digits_task)(num_train, num_test, dtype)
  net = ntk.MLP((task.x.shape[1],) + (width,) * (depth - 1) + (task.y.shape[1],), n.activation,
                sigma_w=sigma_w, sigma_b=sigma_b)
  kernel_train = ntk.mlp_kernels(task.x, **net.kernel_kwargs()).ntk
  kernel_test = ntk.mlp_kernels(task.x_test, task.x, **net.kernel_kwargs()).ntk
  dyn = ntk.mse_dynamics(kernel_train, task.y, learning_rate=1.0)
  lam_max = float(dyn.eigenvalues[-1])
  lr_max = 2 * num_train / lam_max
  too_big = np.atleast_1d(hp["lr"])[np.atleast_1d(hp["lr"]) >= lr_max]
  if too_big.size:
    logging.warning("lr %s >= 2 n / lambda_max(Theta) = %.3g: kernel-regime GD diverges there "
                    "(a finite network may still converge: the catapult phase)", too_big.tolist(), lr_max)
  problem = TrackedProblem(jnp.asarray(task.x), jnp.asarray(task.y), jnp.asarray(task.x_test),
                           jnp.asarray(task.y_test), dyn, kernel_test)
  alg = tracked_gd(net, track_ntk=m.track_ntk, num_pcs=num_pcs)
  alg.validate_hyperparams(hp)
  plot = ("loss", "test_loss", "gap_test") + (("ntk_change",) if m.track_ntk else ())
  return ExperimentSpec(alg, problem, hp, plot_metrics=plot, log_y=plot)
