r"""Word2Vec (skip-gram, negative sampling) in SP / NTP / muP at one width, or its exact muP limit.

    python -m launch.main --config=launch/configs/mup_word2vec.py:quick --workdir=/tmp/w2v
    for p in sp ntp mup; do for w in 64 256 1024 4096; do python -m launch.main \
        --config=launch/configs/mup_word2vec.py --config.network.parametrization=$p \
        --config.network.width=$w --workdir=/tmp/w2v_${p}_$w; done; done
    python -m launch.main --config=launch/configs/mup_word2vec.py \
        --config.network.parametrization=limit --workdir=/tmp/w2v_limit

Yang & Hu 2021 (arXiv:2011.14522), Section 9.1, in small: the Lee corpus shipped in gensim's wheel
(``pip install 'jaxopt_lab[word2vec]'``), vocabulary of the 1000 most frequent words (the limit then
trains P, Q of 1000 x 2000: 16 MB in float32, constant in the steps), window 2, 5 negatives, batch 64,
base width 64 (where every parametrization is SP with this learning rate), 5000 SGD steps, 4 seeds
x 2 learning rates: a few minutes per width on 2 CPU cores. Expected (colab and README): the muP
limit's held-out loss is the lowest, muP widths approach it from above, NTP and SP stay near or
above the NTK limit's. Variant quick: vocabulary 200, width 64, 50 steps, 2 seeds (seconds).

Metrics (metrics.csv, figures/test_loss.png): ``test_loss``, the negative-sampling loss (nats, sum
over the positive and the negatives) on a fixed held-out batch of pairs from the last 10% of
documents, after each step. Analogy accuracy and WordSim353 correlation need the trained embeddings:
see :func:`jaxopt_lab.mup.word2vec.analogy_accuracy` and the colab.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.experiment = "mup_word2vec"
  c.network = ml_collections.ConfigDict(dict(parametrization="mup", width=256, base_width=64))
  c.data = ml_collections.ConfigDict(dict(vocab_size=1000, window=2, negatives=5, batch_size=64,
                                          num_test=2000, heldout_seed=0))
  c.hp = ml_collections.ConfigDict(dict(learning_rate=(0.5, 1.0)))
  c.sweep = ml_collections.ConfigDict(dict(
      num_seeds=4, first_seed=0, num_steps=5000, record_every=250, chunk_steps=2500))
  if variant == "quick":
    c.network.width = 64
    c.data.update(vocab_size=200, num_test=200)
    c.hp.learning_rate = (1.0,)
    c.sweep.update(num_seeds=2, num_steps=50, record_every=10, chunk_steps=50)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; choose quick")
  return c
