r"""Runs one experiment config as a sweep and writes its results to a workdir.

    python -m launch.main --config=launch/configs/matrix_sensing.py:quick --workdir=/tmp/ms \
        --config.hp.alpha="(0.05,0.1)" --config.sweep.num_seeds=16

Writes to the workdir: config.json, runs.csv (one row per run: seed, hyperparameters, divergence),
metrics.csv (tidy: one row per run and record), summary.csv (mean, standard error and quantiles over
seeds), divergence.json, figures/*.png and checkpoints/. Run again with the same config and workdir to
resume an interrupted sweep; a different config in the same workdir is refused.
"""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from launch import experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # JAX logs "Unable to initialize backend 'tpu'" at INFO on any machine without one: harmless noise.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  experiment.maybe_initialize_distributed()
  try:
    experiment.run_config(_CONFIG.value, _WORKDIR.value)
  except ValueError as e:  # bad config values, workdir problems: one line, no traceback
    sys.exit(f"error: {e}")


def run() -> None:
  """``app.run(main)`` with a misspelt ``--config.*`` override reported in one line."""
  try:
    app.run(main)
  except (AttributeError, KeyError) as e:  # raised by ml_collections while parsing overrides
    msg = str(e.args[0] if e.args else e)
    msg = msg.replace("\\n", " ").replace("\n", " ").replace("\\", "").replace("'", "")
    sys.exit(f"error: unknown config field in an override: {msg}")


if __name__ == "__main__":
  run()
