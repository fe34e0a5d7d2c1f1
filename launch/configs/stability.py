r"""GD and SGD over seeds x step sizes with curvature traced in the loop (Wu & Su 2023, arXiv:2305.17490).

    python -m launch.main --config=launch/configs/stability.py:quick --workdir=/tmp/stab_quick
    python -m launch.main --config=launch/configs/stability.py --workdir=/tmp/stab_sgd
    python -m launch.main --config=launch/configs/stability.py:gd --workdir=/tmp/stab_gd
    python -m launch.main --config=launch/configs/stability.py:relu --workdir=/tmp/stab_relu \
        --config.hp.eta="(0.01,0.02)" --config.sweep.num_seeds=2

Metrics (metrics.csv; every ``sweep.record_every`` steps, measured on the full training set at the
parameters after that step):
- ``loss``: (1/n) sum_i (1/2) |f(x_i) - y_i|^2; ``test_loss``: the same on ``data.n_test`` held-out
  examples (absent when n_test = 0).
- ``grad_norm`` |grad L|_2; ``param_norm`` |theta|_2; the model's norms: diagonal net ``l1`` =
  |u * v|_1 (the norm SGD's implicit bias controls), ``sq_norm`` |u|^2 + |v|^2, ``balance``
  |u^2 - v^2|_1; ReLU net ``path_norm`` = sum_j |a_j| |w_j|, ``sq_norm``, ``balance``.
- ``sharpness``: lambda_max(H) of the training loss (20 warm-started power iterations; 1/eta units:
  GD is stable while sharpness * eta / 2 <= 1), with ``sharpness_residual`` |Hv - lambda v|.
- ``gn_trace``: the exact Gauss-Newton trace (1/n) sum_i |grad_theta f(x_i)|^2 (= tr H at an
  interpolating minimum); ``frob_sq``: a 20-probe estimate of |H|_F^2.

runs.csv / divergence.json say which runs diverged and when. The SGD stability bound to read off
metrics.csv: at the end of a B = 1 run, gn_trace * eta / 2 <= 1; GD only keeps sharpness * eta / 2 <= 1.

Variants (``:name`` after the file); wall times measured on 2 CPU cores (load average 2-5), most of
each one compiling:
- default: online SGD (B = 1, uniform with replacement, gradient clipping at 30) on the diagonal linear
  network f(x) = <u * v, x> (d = 200, n = 60, 3-sparse beta*, u, v ~ N(0, 1)), eta in {0.02, 0.03,
  0.04, 0.06, 0.08, 0.12}, 8 seeds, 60000 steps: about 20 s. Expected: no run diverges, every final
  loss < 1e-16, gn_trace * eta / 2 at the end 0.88, 0.79, 0.68, 0.48, 0.34, 0.19 (median over seeds;
  max 0.89: all <= 1), sharpness * eta / 2 < 0.05, l1 falling from ~72 to ~4.7 (|beta*|_1 = 3) and
  test_loss from ~8 to ~0.02.
- gd: full-batch GD, eta in {0.02, 0.04, 0.08, 0.12}, 4 seeds, 6000 steps (about 20 s): GD converges
  where it lands, gn_trace * eta / 2 ~1.2, 2.3, 4.7, 7.0 (> 1) while sharpness * eta / 2 <= 0.38;
  l1 stays ~88-89 and test_loss ~14.
- relu / relu_gd: the two-layer ReLU net f(x) = sum_j a_j relu(w_j . x) (d = 20, m = 50, n = 60, x on
  the sphere of radius sqrt(d), one-neuron teacher, large init w ~ N(0, 0.3^2), a ~ N(0, 1.5^2)),
  eta in {0.005, 0.01, 0.02, 0.04}, 2 seeds. SGD (60000 steps, about 30 s): gn_trace * eta / 2 =
  0.74, 0.59, 0.49, 0.67, path_norm 38 -> 5.0 and test_loss 3.4 -> 0.08 as eta grows. GD (6000 steps,
  about 30 s): gn_trace * eta / 2 = 2.2, 4.5, 8.7, 14, path_norm ~56-61, test_loss ~7-8.
- eos: GD on the MSE to one-hot labels of a tanh MLP 64-32-32-10 on 250 of scikit-learn's digits,
  eta in {0.3, 0.35, 0.4}, 1200 steps, sharpness every 10 steps (GN trace off), about 30 s. The
  sharpness * eta / 2 rises from 0.66-0.83, reaches 0.9 at steps 390 / 150 / 60 and then has median
  1.002 / 1.009 / 1.012 (it hovers at 2/eta) while the loss keeps falling (0.09-0.16 -> ~0.03):
  the edge of stability (Cohen et al. 2021, arXiv:2103.00065).
- quick: the default with 2 seeds x eta in {0.04, 0.12} and 2000 steps (a smoke run, about 15 s).

Every value is validated before anything compiles (a one-line ValueError naming the field). A
hyperparameter given as a tuple of several values is a vmapped sweep axis; one value is fixed.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "stability"
  c.model = ml_collections.ConfigDict(dict(name="diagonal_net"))  # or relu_net, tanh_mlp
  # Each model's own settings; only the chosen model's section is read.
  c.diagonal_net = ml_collections.ConfigDict(dict(d=200, init_scale=1.0, sparsity=3))
  c.relu_net = ml_collections.ConfigDict(dict(d=20, width=50, w_std=0.3, a_std=1.5, teacher_width=1))
  c.tanh_mlp = ml_collections.ConfigDict(dict(hidden=(32, 32)))  # 64 pixels -> hidden -> 10 classes
  # n: training examples (tanh_mlp: of the digits); seed: the data's (kept apart from run seeds).
  c.data = ml_collections.ConfigDict(dict(n=60, n_test=1000, seed=10_000, dtype="float64"))
  # name: gd or sgd; batch_size and sampling are SGD's; clip: max gradient norm (0: no clipping).
  c.algorithm = ml_collections.ConfigDict(dict(
      name="sgd", batch_size=1, sampling="with_replacement", clip=30.0))
  # What each record measures (every sweep.record_every steps); 0 switches a measurement off.
  c.monitor = ml_collections.ConfigDict(dict(
      power_iters=20, lanczos_steps=0, gn_trace=True, gn_batch_size=0, hutchinson_probes=0,
      frobenius_probes=20))
  c.hp = ml_collections.ConfigDict(dict(eta=(0.02, 0.03, 0.04, 0.06, 0.08, 0.12)))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=8, first_seed=0, num_steps=60_000, record_every=1000, chunk_steps=20_000))

  if variant == "quick":
    c.hp.eta = (0.04, 0.12)
    c.sweep.update(num_seeds=2, num_steps=2000, record_every=500, chunk_steps=1000)
  elif variant == "gd":
    c.algorithm.update(name="gd", clip=0.0)
    c.hp.eta = (0.02, 0.04, 0.08, 0.12)
    c.sweep.update(num_seeds=4, num_steps=6000, chunk_steps=6000)
  elif variant in ("relu", "relu_gd"):
    c.model.name = "relu_net"
    c.hp.eta = (0.005, 0.01, 0.02, 0.04)
    c.sweep.update(num_seeds=2, num_steps=60_000, chunk_steps=20_000)
    if variant == "relu_gd":
      c.algorithm.update(name="gd", clip=0.0)
      c.sweep.update(num_steps=6000, chunk_steps=6000)
  elif variant == "eos":
    c.model.name = "tanh_mlp"
    c.data.update(n=250, n_test=0)
    c.algorithm.update(name="gd", clip=0.0)
    c.monitor.update(power_iters=8, gn_trace=False, frobenius_probes=0)
    c.hp.eta = (0.3, 0.35, 0.4)
    c.sweep.update(num_seeds=1, num_steps=1200, record_every=10, chunk_steps=600)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; choose quick, gd, relu, relu_gd or eos")
  return c
