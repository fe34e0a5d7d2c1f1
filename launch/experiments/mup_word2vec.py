"""Builder for Word2Vec sweeps (Yang & Hu 2021, Section 9.1): parametrization, width, data, LR grid."""

from __future__ import annotations

import jax
import ml_collections

from jaxopt_lab.mup import word2vec as w2v
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive


@register_experiment("mup_word2vec")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates the config and returns the training algorithm of one width (or the limit)."""
  n, d = config.network, config.data
  if n.parametrization not in (*w2v.PARAMETRIZATIONS, "limit"):
    raise ValueError(f"config.network.parametrization must be one of "
                     f"{(*w2v.PARAMETRIZATIONS, 'limit')}, got {n.parametrization!r}")
  for name in ("width", "base_width"):
    if getattr(n, name) < 1:
      raise ValueError(f"config.network.{name} must be >= 1, got {getattr(n, name)}")
  for name in ("window", "negatives", "batch_size", "num_test"):
    if getattr(d, name) < 1:
      raise ValueError(f"config.data.{name} must be >= 1, got {getattr(d, name)}")
  hp = hp_from_config(config.hp)
  require_positive(hp, ["learning_rate"])
  data = w2v.load_dataset(d.vocab_size, window=d.window)  # raises on a bad vocabulary size
  prob = w2v.problem(data, jax.random.key(d.heldout_seed), negatives=d.negatives,
                     num_test=d.num_test)
  alg = w2v.train_algorithm(n.parametrization, n.width, d.vocab_size, base_width=n.base_width,
                            batch_size=d.batch_size, negatives=d.negatives)
  return ExperimentSpec(alg, prob, hp, plot_metrics=("test_loss",))
