r"""Matrix sensing (Xiong, Ding & Du 2024, arXiv:2310.01769): GD on X X^T or F G^T from small init.

    python -m launch.main --config=launch/configs/matrix_sensing.py:quick --workdir=/tmp/ms
    python -m launch.main --config=launch/configs/matrix_sensing.py --workdir=/tmp/ms_full \
        --config.algorithm.name=asymmetric_gd --config.hp.alpha="(0.1,0.3,0.5)"

Variants (``:name`` after the file):
- default: the paper's setting, 50 x 50 rank 3 matrix factorization, symmetric GD with k = 5
  (over-parameterized), alpha in {0.05, 0.1, 0.3}, 16 seeds, 20000 steps. About 2 minutes on 2 CPU
  cores; the error decays like 1/t^2 after a plateau of length ~ 1/(eta alpha^2) (measured slope
  -1.96..-2.0 and eta^2 t^2 |E|^2 -> (k - r)/4 = 0.5).
- quick: 20 x 20 rank 2 sensing with m = 300, 4 seeds, 2000 steps; a few seconds on a CPU (smoke run).
- sensing: the default with Gaussian measurements, n = 30, r = 2, m = 600 (the size of the sensing theory checks).
- asymmetric: F G^T with k = 5, imbalanced init (alpha, alpha/3): linear rate ~ 0.14 alpha^2 in MF.

Metrics (one record every ``record_every`` steps, describing the iterate after that step;
metrics.csv, figures/<metric>.png):
- ``error``: |X X^T - M*|_F^2 (symmetric) or |F G^T - M*|_F^2 (asymmetric), the squared Frobenius
  distance to the ground truth (squared units of M*, whose nonzero singular values are 1..kappa).
- ``loss``: the training objective, 1/4 |A(X X^T) - y|^2 (symmetric) or 1/2 |A(F G^T) - y|^2
  (asymmetric), summed over the m measurements (in matrix factorization A is the identity).
- ``x_norm`` (symmetric): |X|_F. ``imbalance`` (asymmetric): |F^T F - G^T G|_F, which drives the
  linear rate.

Every value is validated before compiling. A hyperparameter given as a tuple of several values is a
sweep axis (vmapped); one value is fixed for all runs.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "matrix_sensing"
  c.problem = ml_collections.ConfigDict(dict(
      n1=50, n2=0,  # n2 = 0: square (n2 = n1)
      rank=3, num_measurements=0,  # 0: matrix factorization (A = identity)
      kappa=1.0, noise=0.0, symmetric=True, seed=0, dtype="float64"))
  c.algorithm = ml_collections.ConfigDict(dict(name="symmetric_gd", k=5))
  # Traced hyperparameters; a tuple of several values is a grid axis of the sweep.
  c.hp = ml_collections.ConfigDict(dict(eta=(0.1,), alpha=(0.05, 0.1, 0.3)))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=16, first_seed=0, num_steps=20000, record_every=100, chunk_steps=5000))

  if variant == "quick":
    c.problem.update(n1=20, rank=2, num_measurements=300)
    c.algorithm.k = 4
    c.hp.alpha = (0.1, 0.3)
    c.sweep.update(num_seeds=4, num_steps=2000, record_every=50, chunk_steps=1000)
  elif variant == "sensing":
    c.problem.update(n1=30, rank=2, num_measurements=600)
    c.algorithm.k = 4
  elif variant == "asymmetric":
    c.problem.symmetric = False
    c.algorithm.name = "asymmetric_gd"
    c.hp.init_ratio = (1.0 / 3.0,)
    c.hp.alpha = (0.1, 0.3, 0.5)
    c.sweep.num_steps = 10000
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; choose quick, sensing or asymmetric")
  return c
