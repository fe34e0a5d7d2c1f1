"""Builder for GD/SGD stability sweeps (Wu & Su 2023, arXiv:2305.17490): model, data, algorithm, grid."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxopt_lab.stability import models, training
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive

MODELS = ("diagonal_net", "relu_net", "tanh_mlp")
ALGORITHMS = ("gd", "sgd")
SAMPLINGS = ("with_replacement", "without_replacement", "reshuffle")
DIGITS = 1797  # examples in scikit-learn's digits
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def _require(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)


def _check_model(config: ml_collections.ConfigDict) -> None:
  name = config.model.name
  _require(name in MODELS, f"unknown model config.model.name = {name!r}; choose from {MODELS}")
  if name == "diagonal_net":
    m = config.diagonal_net
    _require(m.d >= 1, f"config.diagonal_net.d must be >= 1, got {m.d}")
    _require(m.init_scale > 0, f"config.diagonal_net.init_scale must be > 0, got {m.init_scale}")
    _require(1 <= m.sparsity <= m.d,
             f"config.diagonal_net.sparsity must be in [1, d = {m.d}], got {m.sparsity}")
  elif name == "relu_net":
    m = config.relu_net
    _require(m.d >= 1 and m.width >= 1,
             f"config.relu_net.d and .width must be >= 1, got {m.d}, {m.width}")
    _require(m.w_std > 0 and m.a_std > 0,
             f"config.relu_net.w_std and .a_std must be > 0, got {m.w_std}, {m.a_std}")
    _require(m.teacher_width >= 1, f"config.relu_net.teacher_width must be >= 1, got {m.teacher_width}")
  else:
    hidden = tuple(config.tanh_mlp.hidden)
    _require(all(isinstance(h, int) and h >= 1 for h in hidden),
             f"config.tanh_mlp.hidden must list positive layer widths, got {hidden}")


def _check_data(config: ml_collections.ConfigDict) -> int:
  """Validates config.data; returns the number of training examples n."""
  d = config.data
  _require(d.n >= 1, f"config.data.n (training examples) must be >= 1, got {d.n}")
  _require(d.n_test >= 0, f"config.data.n_test must be >= 0, got {d.n_test}")
  _require(d.dtype in DTYPES, f"config.data.dtype must be float32 or float64, got {d.dtype!r}")
  if config.model.name == "tanh_mlp":
    _require(d.n + d.n_test <= DIGITS, f"config.data.n + n_test = {d.n} + {d.n_test} exceeds the "
             f"{DIGITS} examples of scikit-learn's digits")
  return d.n


def _check_algorithm(config: ml_collections.ConfigDict, n: int) -> None:
  a = config.algorithm
  _require(a.name in ALGORITHMS, f"unknown algorithm config.algorithm.name = {a.name!r}; "
           f"choose from {ALGORITHMS}")
  _require(a.clip >= 0, f"config.algorithm.clip must be >= 0 (0: no clipping), got {a.clip}")
  if a.name == "sgd":
    _require(a.sampling in SAMPLINGS, f"unknown config.algorithm.sampling = {a.sampling!r}; "
             f"choose from {SAMPLINGS}")
    _require(1 <= a.batch_size <= n, f"config.algorithm.batch_size = {a.batch_size} must be in "
             f"[1, n = {n}] (config.data.n training examples)")


def _monitor(config: ml_collections.ConfigDict) -> training.Monitor:
  m = config.monitor
  for field in ("power_iters", "lanczos_steps", "gn_batch_size", "hutchinson_probes",
                "frobenius_probes"):
    _require(m[field] >= 0, f"config.monitor.{field} must be >= 0 (0: off), got {m[field]}")
  every = config.sweep.record_every
  _require(every >= 1, f"config.sweep.record_every must be >= 1, got {every}")
  return training.Monitor(every=every, power_iters=m.power_iters, lanczos_steps=m.lanczos_steps,
                          gn_trace=m.gn_trace, gn_batch_size=m.gn_batch_size or None,
                          hutchinson_probes=m.hutchinson_probes, frobenius_probes=m.frobenius_probes)


def _model_and_data(config: ml_collections.ConfigDict, dtype) -> tuple[models.Model, models.Dataset]:
  d, key = config.data, jax.random.key(config.data.seed)
  if config.model.name == "diagonal_net":
    m = config.diagonal_net
    return (models.diagonal_net(m.d, init_scale=m.init_scale),
            models.sparse_regression_data(key, d=m.d, n=d.n, sparsity=m.sparsity, n_test=d.n_test,
                                          dtype=dtype))
  if config.model.name == "relu_net":
    m = config.relu_net
    return (models.relu_net(m.d, m.width, w_std=m.w_std, a_std=m.a_std),
            models.relu_teacher_data(key, d=m.d, n=d.n, teacher_width=m.teacher_width,
                                     n_test=d.n_test, dtype=dtype))
  data = models.digits_data(n_train=d.n, n_test=d.n_test, seed=d.seed, dtype=dtype)
  return models.tanh_mlp((data.x.shape[1], *config.tanh_mlp.hidden, data.y.shape[1])), data


@register_experiment("stability")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates every value, then builds the model, its data set and the GD/SGD algorithm.

  Traced hyperparameters: ``eta`` (a grid axis when several values are given) and, if
  ``config.algorithm.clip > 0``, a fixed ``clip``. The monitor measures every ``sweep.record_every``
  steps, so each record is a fresh measurement.
  """
  _check_model(config)
  n = _check_data(config)
  _check_algorithm(config, n)
  monitor = _monitor(config)
  hp = hp_from_config(config.hp)
  unknown = sorted(set(hp) - {"eta"})
  _require(not unknown, f"config.hp takes only eta (clipping is config.algorithm.clip), got {unknown}")
  _require("eta" in hp, "config.hp.eta (the step size) is missing")
  require_positive(hp, ["eta"])
  a = config.algorithm
  if a.clip > 0:
    hp["clip"] = float(a.clip)
  dtype = DTYPES[config.data.dtype]
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
  model, data = _model_and_data(config, dtype)
  if a.name == "gd":
    alg = training.gd(model, monitor)
  else:
    alg = training.sgd(model, a.batch_size, sampling=a.sampling, monitor=monitor)
  alg.validate_hyperparams(hp)
  training.check_hyperparams(hp)
  plot = ["loss"] + [k for k, on in (("sharpness", monitor.power_iters or monitor.lanczos_steps),
                                     ("gn_trace", monitor.gn_trace)) if on]
  return ExperimentSpec(alg, data, hp, plot_metrics=tuple(plot), log_y=("loss",))
