"""Builder for matrix-sensing sweeps (Xiong, Ding & Du 2024): config -> problem, algorithm, grid."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from jaxopt_lab.matrix_sensing import algorithms, problem
from launch.experiment import ExperimentSpec, hp_from_config, register_experiment, require_positive

ALGORITHMS = {
    "symmetric_gd": algorithms.symmetric_gd,
    "asymmetric_gd": algorithms.asymmetric_gd,
    "asymmetric_gd_one_step": algorithms.asymmetric_gd_one_step,
}


@register_experiment("matrix_sensing")
def build(config: ml_collections.ConfigDict) -> ExperimentSpec:
  """Validates the config's values and unpacks them into the library's arguments."""
  p, a = config.problem, config.algorithm
  if a.name not in ALGORITHMS:
    raise ValueError(f"unknown matrix-sensing algorithm {a.name!r}; choose from {sorted(ALGORITHMS)}")
  symmetric = a.name == "symmetric_gd" or p.symmetric
  if a.name == "symmetric_gd" and not p.symmetric:
    raise ValueError("symmetric_gd fits X X^T and needs config.problem.symmetric = True")
  n_min = min(p.n1, p.n2 or p.n1)
  if not 1 <= p.rank <= n_min:
    raise ValueError(f"config.problem.rank = {p.rank} must be in [1, {n_min}] (the matrix is "
                     f"{p.n1} x {p.n2 or p.n1})")
  if a.k < p.rank:
    raise ValueError(f"config.algorithm.k = {a.k} is below the rank {p.rank}: the truth cannot be fit")
  if a.k > n_min:
    raise ValueError(f"config.algorithm.k = {a.k} exceeds the matrix dimension {n_min}")
  hp = hp_from_config(config.hp)
  require_positive(hp, ["eta", "alpha", "init_ratio", "switch_tol"])
  dtype = {"float32": jnp.float32, "float64": jnp.float64}.get(p.dtype)
  if dtype is None:
    raise ValueError(f"config.problem.dtype must be float32 or float64, got {p.dtype!r}")
  if dtype == jnp.float64 and not jax.config.jax_enable_x64:
    jax.config.update("jax_enable_x64", True)
  prob = problem.make_problem(
      jax.random.key(p.seed), n1=p.n1, n2=p.n2 or None, rank=p.rank,
      num_measurements=p.num_measurements or None, kappa=p.kappa, symmetric=symmetric, noise=p.noise,
      dtype=dtype)
  alg = ALGORITHMS[a.name](a.k)
  alg.validate_hyperparams(hp)
  extra = ("imbalance",) if a.name != "symmetric_gd" else ()
  # Over-parameterized symmetric GD converges like 1/t^2 (a power law: log-log axes); exact
  # parameterization and asymmetric GD converge linearly (exponentially: log error, linear steps).
  power_law = a.name == "symmetric_gd" and a.k > p.rank
  return ExperimentSpec(alg, prob, hp, plot_metrics=("error", "loss") + extra,
                        log_y=("error", "loss") + extra, log_x=("error", "loss") if power_law else ())
