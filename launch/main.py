r"""Runs one experiment config as a sweep and writes its results to a workdir.

    python -m launch.main --config=launch/configs/matrix_sensing.py:quick --workdir=/tmp/ms \
        --config.hp.alpha="(0.05,0.1)" --config.sweep.num_seeds=16

Writes to the workdir: config.json, runs.csv (one row per run: seed, hyperparameters, divergence),
metrics.csv (tidy: one row per run and record), summary.csv (mean, standard error and quantiles over
seeds), divergence.json, figures/*.png, checkpoints/ and, last, status.json (``complete`` once every
file is in place). Run again with the same config and workdir to resume an interrupted sweep; a
different config (or a changed library) in the same workdir is refused, and ``--restart`` deletes the
earlier run's files and starts over. A user mistake (a bad flag, override, variant or config file,
a bad value, a workdir in use) is one ``error:`` line on stderr and exit status 1, never a traceback.
"""

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from launch import experiment

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results and checkpoints.")
_RESTART = flags.DEFINE_bool("restart", False, "Delete the workdir's earlier results and checkpoints "
                             "and start over (instead of resuming).")
flags.mark_flags_as_required(["config", "workdir"])


def one_line(e: BaseException) -> str:
  """An exception as one line: the last line of an embedded traceback, newlines and quotes collapsed."""
  text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
  text = text.replace("\\n", "\n")
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if not lines:
    return type(e).__name__
  if any(line.startswith("Traceback") for line in lines):  # a config file's own error, wrapped by absl
    head = lines[0].split(": Error whilst")[0].rstrip(":")
    return f"{head}: {lines[-1]}"
  errno = [line for line in lines if line.startswith("[Errno")]
  if errno:  # ml_collections' "Failed loading config file ... Attempted [...]: path [Errno 2] ..."
    return errno[-1]
  return " ".join(lines).replace("\\", "")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with every failure (and a config file that cannot load) as one line."""
  try:
    rest = flags.FLAGS(argv)
    try:
      loaded = _CONFIG.value is not None and _CONFIG.value.to_dict() is not None  # loads lazily
    except Exception as e:  # pylint: disable=broad-except  # a missing or broken config file
      raise ValueError(f"--config={flags.FLAGS['config'].serialize().split('=', 1)[-1]} cannot be "
                       f"loaded: {one_line(e).split('  ')[-1]}") from None
    if not loaded:
      raise ValueError("--config did not load a config")
    return rest
  except SyntaxError as e:  # raised while importing the config file
    sys.exit(f"error: --config file {e.filename} does not parse: {e.msg} (line {e.lineno})")
  except (AttributeError, KeyError) as e:  # raised by ml_collections on a misspelt override
    msg = one_line(e).replace("'", "")
    if "has no attribute get_config" in msg:
      sys.exit("error: --config file defines no get_config(variant) function")
    sys.exit(f"error: unknown config field in an override: {msg}")
  except Exception as e:  # pylint: disable=broad-except  # flags, config files: all user input
    sys.exit(f"error: {one_line(e)}")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments: {argv[1:]}")
  # JAX logs "Unable to initialize backend 'tpu'" at INFO on any machine without one: harmless noise.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  experiment.maybe_initialize_distributed()
  try:
    experiment.run_config(_CONFIG.value, _WORKDIR.value, restart=_RESTART.value)
  except ValueError as e:  # bad config values, workdir problems: one line, no traceback
    sys.exit(f"error: {one_line(e)}")


def run() -> None:
  """``app.run(main)`` with every user mistake reported in one line."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
