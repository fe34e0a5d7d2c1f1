"""Builder for abc-parametrized MLP training sweeps (Yang & Hu 2021): preset, width, task, LR grid."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxopt_lab.mup import parametrization as P
from jaxopt_lab.mup import transfer
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive

TASKS = ("digits", "teacher")


@register_experiment("mup")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates the config and returns the training algorithm of one width with its LR grid."""
  n, t = config.network, config.task
  if n.depth < 1 or n.width < 1 or n.base_width < 1:
    raise ValueError(f"depth, width and base_width must be >= 1, got {n.depth}, {n.width}, {n.base_width}")
  if t.name not in TASKS:
    raise ValueError(f"unknown task {t.name!r}; choose from {TASKS}")
  if t.loss not in ("mse", "xent"):
    raise ValueError(f"unknown loss {t.loss!r}; choose mse or xent")
  if t.name == "teacher" and t.loss != "mse":
    raise ValueError("the teacher task is a regression: use loss='mse'")
  limit = transfer.DIGITS_SIZE if t.name == "digits" else None
  if t.num_examples < 0 or (limit and t.num_examples > limit):
    bound = f"[0, {limit}]" if limit else ">= 0"
    raise ValueError(f"config.task.num_examples must be in {bound} (0: the default), got "
                     f"{t.num_examples}")
  if t.batch_size < 0:
    raise ValueError(f"config.task.batch_size must be >= 0 (0: full batch), got {t.batch_size}")
  hp = hp_from_config(config.hp)
  require_positive(hp, ["lr"])
  if n.c is not None and not np.isfinite(n.c):
    raise ValueError(f"config.network.c must be a finite learning-rate exponent, got {n.c}")
  abc = P.preset(n.preset, n.depth, n.optimizer, c=n.c)  # raises on unknown preset/optimizer names
  if t.name == "digits":
    task = transfer.digits_task(t.num_examples or None, dtype=jnp.float32)
    d_in, d_out = task.x.shape[1], 10
    if t.loss == "mse":
      task = P.Task(task.x, jax.nn.one_hot(task.y, 10, dtype=task.x.dtype))
  else:
    task = transfer.teacher_task(jax.random.key(t.seed), num=t.num_examples or 512, dtype=jnp.float32)
    d_in, d_out = task.x.shape[1], task.y.shape[1]
  if t.batch_size and t.batch_size > task.x.shape[0]:
    raise ValueError(f"batch_size {t.batch_size} exceeds the {task.x.shape[0]} training examples")
  net = P.MLP(abc, d_in, n.width, d_out, activation=n.activation, base_width=n.base_width)
  alg = P.train_algorithm(net, loss=t.loss, batch_size=t.batch_size or None)
  return ExperimentSpec(alg, task, hp, plot_metrics=("loss",), log_y=("loss",))
