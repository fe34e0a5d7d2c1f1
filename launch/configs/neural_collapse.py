r"""Neural collapse (Tirer, Huang & Niles-Weed 2023, arXiv:2210.16658): the central-path flow, or an MLP.

    python -m launch.main --config=launch/configs/neural_collapse.py:quick --workdir=/tmp/nc
    python -m launch.main --config=launch/configs/neural_collapse.py --workdir=/tmp/nc_full \
        --config.hp.lambda_H="(0.0,0.01,0.1,0.5)" --config.sweep.num_seeds=1024
    python -m launch.main --config=launch/configs/neural_collapse.py:full_metrics,quick --workdir=/tmp/nc_all
    python -m launch.main --config=launch/configs/neural_collapse.py:mlp --workdir=/tmp/nc_mlp

Central path (``model = "central_path"``, the default): dH/dt = -[W*(H)^T (W*(H) H - Y) + lambda_H H]
from Gaussian class features H_0 (one draw per seed), integrated by RK4 with step dt, seeds x
lambda_W x lambda_H in one compile. Default: K = 4, n = d = 10, lambda_W = sqrt(2), lambda_H in
{0, 0.1}, dt = 1e-3 to t = 20, 64 seeds: about a minute on 2 CPU cores; NC1~ falls from ~1.3 to
~0.55 (lambda_H = 0) and ~0.06 (lambda_H = 0.1).

Variants (``:name`` after the file; combine with commas, e.g. ``:mlp,quick``):
- quick: 8 seeds, the same flow time t = 20 with dt = 0.02 (RK4 is still accurate there: NC1~ at
  t = 20 agrees with dt = 0.01 to 4 decimals), 1000 steps, about 3 s: medians at t = 20 of 0.58
  (lambda_H = 0) and 0.061 (lambda_H = 0.1). With the MLP: 30 images per class, width 32, 2 layers,
  2 seeds, 200 steps (about 25 s wall on a loaded 2-core machine, mostly compiling).
- full_metrics: the central path also records NC1-NC4 with W = W*(H_t) (an SVD per record). At t = 20
  (quick): NC1 0.037 / 0.00017, nc3_self_duality 0.37 / 0.27, nc4 0 for lambda_H = 0 / 0.1.
- mlp: a ReLU MLP (width 64, 3 feature layers) on 150 images per class of scikit-learn's digits,
  trained by full-batch Adam (lr 3e-3) on MSE to one-hot labels (``mlp.loss = "ce"`` for
  cross-entropy), weight decay lambda_feat in {0, 5e-4, 1e-3} on the feature layers and lambda_cls
  = 5e-4 on the classifier, 4 seeds, 2000 steps; it records NC1-NC4 of the penultimate features with
  the trained classifier (the paper's Section 5 in small: more feature weight decay, more collapse).

Metrics (one record every ``record_every`` steps, describing the state after that step; metrics.csv):
- ``nc1_tilde``: tr Sigma_W / tr Sigma_B, the within-class over between-class scatter of H
  (dimensionless; 0 is full collapse of every class onto its mean).
- ``tr_sigma_w``, ``tr_sigma_b``: the two traces (squared feature units).
- ``scaled_tr_sigma_w``, ``scaled_tr_sigma_b``: the traces times exp(2 lambda_H t), which removes the
  weight decay's uniform shrinkage (Theorem 3.1: the scaled within-class trace still decreases).
- ``t``: the flow time, ``step * dt`` (central path only).
- full_metrics and mlp (all dimensionless, 0 at exact collapse): ``nc1`` = tr(Sigma_W Sigma_B^+) / K
  (Papyan's NC1); ``nc2_etf_means`` / ``nc2_etf_w``: distance of the normalized Gram of the centred
  class means / classifier rows to the simplex ETF's, with ``nc2_equinorm_*``, ``nc2_equiangular_*``,
  ``nc2_maxangle_*``; ``nc3_self_duality`` |W^T/|W| - M/|M||_F^2 (M: centred means),
  ``nc3_duality_etf``; ``nc4_ncc_mismatch``: fraction of samples where the classifier and the
  nearest class mean disagree.
- mlp also: ``objective`` (loss plus both weight-decay terms) and ``accuracy`` (training set).
"""

import ml_collections

VARIANTS = ("quick", "full_metrics", "mlp")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  chosen = [v for v in variant.split(",") if v]
  unknown = [v for v in chosen if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown variant(s) {unknown}; choose from {VARIANTS} (comma-separated)")
  c = ml_collections.ConfigDict()
  c.experiment = "neural_collapse"
  c.model = "central_path"  # or "mlp"
  c.problem = ml_collections.ConfigDict(dict(
      num_classes=4, n=10, d=10, dt=1e-3, mean_scale=1.0, noise=1.0))
  # Central path: also record NC1-NC4 with W = W*(H) (an SVD per record). The MLP always does.
  c.measure = ml_collections.ConfigDict(dict(full_metrics=False))
  c.mlp = ml_collections.ConfigDict(dict(n_per_class=150, width=64, depth=3, loss="mse"))
  c.hp = ml_collections.ConfigDict(dict(lambda_W=(2.0**0.5,), lambda_H=(0.0, 0.1)))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=64, first_seed=0, num_steps=20000, record_every=200, chunk_steps=5000))
  if "full_metrics" in chosen:
    c.measure.full_metrics = True
  if "mlp" in chosen:
    c.model = "mlp"
    c.hp = ml_collections.ConfigDict(dict(lambda_feat=(0.0, 5e-4, 1e-3), lambda_cls=(5e-4,),
                                          lr=(3e-3,)))
    c.sweep.update(num_seeds=4, num_steps=2000, record_every=100, chunk_steps=1000)
  if "quick" in chosen:
    if c.model == "mlp":
      c.mlp.update(n_per_class=30, width=32, depth=2)
      c.sweep.update(num_seeds=2, num_steps=200, record_every=50, chunk_steps=100)
    else:
      c.problem.dt = 0.02
      c.sweep.update(num_seeds=8, num_steps=1000, record_every=50, chunk_steps=500)
  return c
