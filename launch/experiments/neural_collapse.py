"""Builder for central-path flow sweeps (Tirer, Huang & Niles-Weed 2023): seeds x lambda_W x lambda_H."""

from __future__ import annotations

import math

import jax
import ml_collections

from jaxopt_lab.neural_collapse import flows
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive


@register_experiment("neural_collapse")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates the config; each seed draws its own Gaussian class features H_0 (d x K n)."""
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
  alg = flows.central_path_algorithm(num_classes=p.num_classes, n=p.n, d=p.d, dt=p.dt,
                                     mean_scale=p.mean_scale, noise=p.noise)
  return ExperimentSpec(alg, None, hp, plot_metrics=("nc1_tilde",), log_y=("nc1_tilde",))
