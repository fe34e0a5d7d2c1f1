r"""Finite NTK-parametrized MLPs trained by full-batch GD on MSE, against their infinite-width limit.

    python -m launch.main --config=launch/configs/ntk.py:quick --workdir=/tmp/ntk_quick
    python -m launch.main --config=launch/configs/ntk.py --workdir=/tmp/ntk
    python -m launch.main --config=launch/configs/ntk.py:digits --workdir=/tmp/ntk_digits
    for w in 64 256 1024 4096; do python -m launch.main --config=launch/configs/ntk.py \
        --config.network.width=$w --workdir=/tmp/ntk_w$w; done

Jacot, Gabriel & Hongler 2018 (arXiv:1806.07572): the setting of their Figs. 1-2 (ReLU, depth 4 =
3 hidden layers, sigma_w = 1, sigma_b = 0.1, loss (1/2n) sum (f - y)^2, GD rate 1.0, inputs on the
unit circle, 4 training points, target sin(2 gamma) + cos(gamma) / 2). Seeds x learning rates are
one vmapped sweep; width, depth and activation are shapes (one command per value, as above).
Recorded every ``record_every`` steps (metrics.csv): train and test loss; ``gap_train`` and
``gap_test``, the RMS distance (over RMS target) between the network's outputs and the
infinite-width kernel-regime GD prediction from the same f_0,
f_t = f_0 + Theta(x, X) Theta^{-1} (I - (I - eta Theta / n)^t) (Y - f_0(X)) with the analytic NTK;
``ntk_change`` = ||Theta_hat_t - Theta_hat_0||_F / ||Theta_hat_0||_F on the training inputs; and,
per top eigenvector v_k of the analytic NTK Gram (k = 1 the largest), ``pc{k}_residual`` =
||v_k^T (f_t(X) - Y)|| and ``pc{k}_predicted`` = its kernel-regime value ||v_k^T (f_0(X) - Y)||
|1 - eta lambda_k / n|^t.

Default: width 512, 8 seeds x lr (0.5, 1.0), 1000 steps: about a minute on 2 CPU cores (measured:
58 CPU-seconds; 164 s wall on a shared machine at load average ~10). At lr 1.0, median over seeds:
the train loss falls from ~0.25 (step 10) to < 1e-5, test loss ~0.007, gap_test ~0.066 (0.072 at
width 256: it shrinks slowly with the width), ntk_change ~0.06 (0.13 at width 256: ~1/width).
quick: width 64, 2 seeds, 100 steps (seconds). digits (Fig. 3 in small; scikit-learn's digits
standing in for MNIST): 256 training and 256 test images (pixels centered, each image scaled to
norm sqrt(64)), targets one-hot - 0.1, width 512, 4 seeds, lr 1.0, 500 steps: 54 CPU-seconds (83 s
wall at load ~9); the train loss falls from ~0.56 to ~0.05, test loss ~0.27, gap_test ~0.19,
ntk_change ~0.05, and the residual falls along the top kernel principal components at close to
the predicted rates eta lambda_k / n (pc{k}_residual vs pc{k}_predicted; see colabs/ntk.ipynb).
Combine variants with a comma:
``ntk.py:digits,quick``.
"""

import ml_collections

VARIANTS = ("quick", "digits")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  chosen = [v for v in variant.split(",") if v]
  unknown = [v for v in chosen if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown variant(s) {unknown}; choose from {VARIANTS} (comma-separated)")
  c = ml_collections.ConfigDict()
  c.experiment = "ntk"
  c.network = ml_collections.ConfigDict(dict(
      width=512, depth=4, activation="relu", sigma_w=1.0, sigma_b=0.1))
  c.task = ml_collections.ConfigDict(dict(name="circle", num_train=4, num_test=64, dtype="float32"))
  c.measure = ml_collections.ConfigDict(dict(track_ntk=True, num_pcs=4))
  c.hp = ml_collections.ConfigDict(dict(lr=(0.5, 1.0)))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=8, first_seed=0, num_steps=1000, record_every=10, chunk_steps=500))
  if "digits" in chosen:
    c.task.update(name="digits", num_train=256, num_test=256)
    c.hp.lr = (1.0,)
    c.sweep.update(num_seeds=4, num_steps=500, record_every=10, chunk_steps=250)
  if "quick" in chosen:
    c.network.width = 64
    if c.task.name == "digits":
      c.task.update(num_train=64, num_test=64)
    c.sweep.update(num_seeds=2, num_steps=100, record_every=10, chunk_steps=50)
  return c
