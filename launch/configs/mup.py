r"""Training an abc-parametrized MLP (SP / NTP / MFP / muP) over a learning-rate grid at one width.

    python -m launch.main --config=launch/configs/mup.py:quick --workdir=/tmp/mup
    for w in 64 128 256 512 1024; do python -m launch.main --config=launch/configs/mup.py \
        --config.network.width=$w --config.network.preset=sp --config.network.c=0 \
        --workdir=/tmp/mup_sp_$w; done

Learning rates are a vmapped sweep axis; widths are shapes, swept in Python (one compile each), so a
muTransfer study is one command per width and the best LR per width is read off summary.csv (or use
jaxopt_lab.mup.transfer.transfer_sweep and the colab). Default: muP (Yang & Hu 2021, arXiv:2011.14522),
2 hidden layers, width 256 (base width 32, where muP equals SP), scikit-learn's digits with cross
entropy, full batch, 200 steps, 4 seeds x 8 learning rates: about a minute on 2 CPU cores; muP's
best LR stays put as the width grows. SP's preset for SGD has c = 1 (its learning rate already
scales as 1/width: the kernel regime); with a width-independent learning rate,
``--config.network.c=0``, SP's best LR shrinks like 1/width.
Variants: quick (width 64, 40 steps, 2 seeds; seconds), teacher (synthetic regression, MSE).

Metrics (one record every ``record_every`` steps; metrics.csv, figures/loss.png):
- ``loss``: the training loss on the batch at the parameters after that step (full batch by default):
  mean cross-entropy in nats (``xent``, digits) or (1/2n) sum_i |f(x_i) - y_i|^2 (``mse``, teacher).
  The best learning rate per width is the one with the lowest final loss (summary.csv).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "mup"
  c.network = ml_collections.ConfigDict(dict(
      preset="mup", depth=2, width=256, base_width=32, activation="relu", optimizer="sgd",
      c=ml_collections.config_dict.placeholder(float)))  # None: the preset's learning-rate exponent
  c.task = ml_collections.ConfigDict(dict(
      name="digits", loss="xent", num_examples=0, batch_size=0, seed=0))  # 0: all examples / full batch
  c.hp = ml_collections.ConfigDict(dict(lr=tuple(2.0**k for k in range(-5, 3))))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=4, first_seed=0, num_steps=200, record_every=10, chunk_steps=100))
  if variant == "quick":
    c.network.width = 64
    c.task.num_examples = 512
    c.hp.lr = (0.25, 1.0, 4.0)
    c.sweep.update(num_seeds=2, num_steps=40, record_every=10, chunk_steps=20)
  elif variant == "teacher":
    c.task.update(name="teacher", loss="mse")
    c.network.activation = "tanh"
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; choose quick or teacher")
  return c
