r"""Central-path gradient flow of the unconstrained features model (Tirer, Huang & Niles-Weed 2023).

    python -m launch.main --config=launch/configs/neural_collapse.py:quick --workdir=/tmp/nc
    python -m launch.main --config=launch/configs/neural_collapse.py --workdir=/tmp/nc_full \
        --config.hp.lambda_H="(0.0,0.01,0.1,0.5)" --config.sweep.num_seeds=1024

dH/dt = -[W*(H)^T (W*(H) H - Y) + lambda_H H] from Gaussian class features H_0 (one draw per seed),
integrated by RK4 with step dt; the metrics (NC1~ = tr Sigma_W / tr Sigma_B and the traces) are
recorded along the path. Default: K = 4, n = d = 10, lambda_W = sqrt(2), lambda_H in {0, 0.1},
dt = 1e-3 to t = 20, 64 seeds: about a minute on 2 CPU cores; NC1~ falls from ~1.3 to ~0.55
(lambda_H = 0) and ~0.06 (lambda_H = 0.1). quick: 8 seeds, the same flow time t = 20 with
dt = 0.02 (RK4 is still accurate there: NC1~ at t = 20 agrees with dt = 0.01 to 4 decimals), 1000
steps, about 3 s: medians at t = 20 of 0.58 (lambda_H = 0) and 0.061 (lambda_H = 0.1).

Metrics (one record every ``record_every`` steps, describing the state after that step; metrics.csv):
- ``nc1_tilde``: tr Sigma_W / tr Sigma_B, the within-class over between-class scatter of H
  (dimensionless; 0 is full collapse of every class onto its mean).
- ``tr_sigma_w``, ``tr_sigma_b``: the two traces (squared feature units).
- ``scaled_tr_sigma_w``, ``scaled_tr_sigma_b``: the traces times exp(2 lambda_H t), which removes the
  weight decay's uniform shrinkage (Theorem 3.1: the scaled within-class trace still decreases).
- ``t``: the flow time, ``step * dt``.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "neural_collapse"
  c.problem = ml_collections.ConfigDict(dict(
      num_classes=4, n=10, d=10, dt=1e-3, mean_scale=1.0, noise=1.0))
  c.hp = ml_collections.ConfigDict(dict(lambda_W=(2.0**0.5,), lambda_H=(0.0, 0.1)))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=64, first_seed=0, num_steps=20000, record_every=200, chunk_steps=5000))
  if variant == "quick":
    c.problem.dt = 0.02
    c.sweep.update(num_seeds=8, num_steps=1000, record_every=50, chunk_steps=500)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; choose quick")
  return c
