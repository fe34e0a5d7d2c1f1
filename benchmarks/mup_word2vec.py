r"""Word2Vec in muP: SGD steps per second and memory of finite widths and of the exact limit.

    python -m benchmarks.mup_word2vec               # V = 1000, widths 2^6..2^12 and the limit
    python -m benchmarks.mup_word2vec --preset=tiny # smoke test

A skip-gram step (batch 64, 5 negatives) gathers and scatters 64 x 6 rows of the two (V, n) tables,
so it costs O(B (K + 1) n) whatever V; the exact muP limit is the same step at n = 2V from its
deterministic init (:mod:`jaxopt_lab.mup.word2vec`), so its cost is that of a width-2V network and its
memory is the 2 V x 2V state (4V^2 numbers: 16 MB at V = 1000 in float32), constant in the number of
steps. Memory is XLA's compiled temp allocation plus the output (``memory_analysis``).

TP4 states no per-step costs, so this benchmark records ours only. For scale: on text8's vocabulary
(V ~ 71k) the exact 2V x 2V state would be ~81 GB in float32, which is why a projected or truncated
limit is needed there and not here. Roofline: the gather/scatter step is bound by
latency and bytes, far below the FLOP peak, so the ratio says only that nothing here is FLOP-bound.
"""

from __future__ import annotations

import argparse

import jax

from benchmarks.harness import Bench, xla_cost
from jaxopt_lab.mup import word2vec as w2v

PRESETS = {
    "cpu": dict(vocab_size=1000, widths=(64, 256, 1024, 4096), steps=1000),
    "tiny": dict(vocab_size=100, widths=(16, 64), steps=20),
}
BASE_WIDTH, LR = 64, 1.0


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  cfg = PRESETS[args.preset]
  bench = Bench("mup_word2vec", roofline="tiny" if args.preset == "tiny" else "full")
  V, T = cfg["vocab_size"], cfg["steps"]
  prob = w2v.problem(w2v.load_dataset(V), jax.random.key(0), num_test=200)
  runs = [("mup", n) for n in cfg["widths"]] + [("limit", 2 * V)]
  for par, n in runs:
    fn = jax.jit(lambda lr, par=par, n=n: w2v.train(
        jax.random.key(1), jax.random.key(2), prob, parametrization=par, width=n, vocab_size=V,
        learning_rate=lr, num_steps=T, base_width=BASE_WIDTH)[1])
    one = lambda lr, par=par, n=n: w2v.train(  # XLA counts a scan body once: T x the 1-step program
        jax.random.key(1), jax.random.key(2), prob, parametrization=par, width=n, vocab_size=V,
        learning_rate=lr, num_steps=1, base_width=BASE_WIDTH)[1]
    mem = fn.lower(LR).compile().memory_analysis()
    name = "limit" if par == "limit" else f"mup n={n}"
    t = bench.time(f"word2vec {name} T={T}", fn, LR, repeats=args.repeats,
                   extra={"vocab_size": V, "width": n, "steps": T},
                   cost=xla_cost(one, LR) * T)
    bench.note(which=name, width=n, vocab_size=V, steps_per_second=T / t.median,
               temp_bytes=mem.temp_size_in_bytes, output_bytes=mem.output_size_in_bytes,
               state_bytes=2 * V * n * 4)


if __name__ == "__main__":
  main()
