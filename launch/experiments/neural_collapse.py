"""Builder for neural-collapse sweeps (Tirer, Huang & Niles-Weed 2023): the central-path flow over
seeds x lambda_W x lambda_H, or an MLP on digits over seeds x weight decays x learning rates."""

from __future__ import annotations

import math

import jax
import ml_collections

from jaxopt_lab.neural_collapse import features, flows
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive

MODELS = ("central_path", "mlp")
# What the figures show: NC1 to NC4 (one statistic each) when they are recorded.
_FULL_PLOTS = ("nc1", "nc2_etf_w", "nc3_self_duality", "nc4_ncc_mismatch")


@register_experiment("neural_collapse")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates the config; the central path (one Gaussian H_0 per seed) or the MLP on digits."""
  if config.model not in MODELS:
    raise ValueError(f"config.model must be one of {MODELS}, got {config.model!r}")
  return _build_mlp(config) if config.model == "mlp" else _build_central_path(config)


def _build_central_path(config: ml_collections.ConfigDict) -> ExperimentSpec:
  p = config.problem
  if p.num_classes < 2 or p.n < 1:
    raise ValueError(f"need num_classes >= 2 and n >= 1 samples per class, got {p.num_classes}, {p.n}")
  if p.d < p.num_classes:
    raise ValueError(f"feature dimension d = {p.d} < num_classes = {p.num_classes}: the collapse "
                     "theory (a simplex of K class means) needs d >= K")
  if not p.dt > 0 or not math.isfinite(p.dt):
    raise ValueError(f"the integrator step dt must be positive, got {p.dt}")
  for name in ("mean_scale", "noise"):
    if not p[name] >= 0 or not math.isfinite(p[name]):
      raise ValueError(f"config.problem.{name} must be a finite number >= 0, got {p[name]}")
  hp = hp_from_config(config.hp)
  require_positive(hp, ["lambda_W", "lambda_H"], allow_zero=["lambda_H"])
  jax.config.update("jax_enable_x64", True)  # Theorem 3.1's monotonicity is checked to 1e-12
  full = bool(config.measure.full_metrics)
  alg = flows.central_path_algorithm(num_classes=p.num_classes, n=p.n, d=p.d, dt=p.dt,
                                     mean_scale=p.mean_scale, noise=p.noise, full_metrics=full)
  alg.validate_hyperparams(hp)
  plots = ("nc1_tilde",) + (_FULL_PLOTS if full else ())
  return ExperimentSpec(alg, None, hp, plot_metrics=plots, log_y=plots[:-1] if full else plots)


def _build_mlp(config: ml_collections.ConfigDict) -> ExperimentSpec:
  m = config.mlp
  if m.loss not in ("mse", "ce"):
    raise ValueError(f"config.mlp.loss must be 'mse' or 'ce', got {m.loss!r}")
  if m.width < 1 or m.depth < 1:
    raise ValueError(f"config.mlp.width and depth must be >= 1, got {m.width}, {m.depth}")
  hp = hp_from_config(config.hp)
  require_positive(hp, ["lambda_feat", "lambda_cls", "lr"], allow_zero=["lambda_feat", "lambda_cls"])
  jax.config.update("jax_enable_x64", True)
  data = features.load_digits_balanced(m.n_per_class)  # ValueError names n_per_class if out of range
  alg = features.mlp_algorithm(num_classes=data.num_classes, width=m.width, depth=m.depth, loss=m.loss)
  alg.validate_hyperparams(hp)
  plots = _FULL_PLOTS + ("accuracy",)
  return ExperimentSpec(alg, (data.H, data.labels), hp, plot_metrics=plots, log_y=_FULL_PLOTS[:-1])
