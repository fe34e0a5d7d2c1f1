r"""Matrix-sensing seed sweep: the engine's vmapped sweep vs a Python loop over seeds vs a naive sweep.

    python -m benchmarks.matrix_sensing_sweep                 # CPU sizes (n = 30, m = 600, 200 steps)
    python -m benchmarks.matrix_sensing_sweep --preset=gpu    # roofline sizes (n = 50, m = 1000, 500 steps)

Three ways to run S seeds of symmetric GD (k = r + 2, small init) on one sensing problem:
- ours: ``jit(vmap(run))`` with the sensing operator shared by all seeds (what ``sweep`` compiles), so a
  step is one (m x n^2) @ (n^2 x S) matrix product;
- loop: the same jitted single-seed run called once per seed from Python;
- naive: every seed builds and uses its own dense sensing matrices (the sweep timed in
  ../shared/docs/roofline.md: 2.5 ms per seed at 64 seeds on an H200).
Prints JSON lines: the machine, each timing, per-seed costs and the speedups.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from benchmarks.harness import Bench
from jaxopt_lab.engine import run
from jaxopt_lab.matrix_sensing import problem as msp
from jaxopt_lab.matrix_sensing.algorithms import symmetric_gd

PRESETS = {
    "cpu": dict(n=30, m=600, steps=200, seeds=(1, 16, 64)),
    "gpu": dict(n=50, m=1000, steps=500, seeds=(1, 64, 1024)),
    "tiny": dict(n=8, m=100, steps=10, seeds=(1, 4)),  # smoke test of the script itself
}
RANK = 3
HP = {"alpha": 0.1, "eta": 0.1}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  cfg = PRESETS[args.preset]
  if args.dtype == "float64":
    jax.config.update("jax_enable_x64", True)
  dtype = jnp.dtype(args.dtype)
  bench = Bench("matrix_sensing_sweep")
  bench.note(preset=args.preset, dtype=args.dtype, rank=RANK, k=RANK + 2, **{
      k: v for k, v in cfg.items() if k != "seeds"})

  alg = symmetric_gd(k=RANK + 2)
  make = functools.partial(msp.make_problem, n1=cfg["n"], rank=RANK, num_measurements=cfg["m"],
                           dtype=dtype)
  problem = make(jax.random.key(0))
  one_run = functools.partial(run, alg, num_steps=cfg["steps"], record_every=cfg["steps"] // 10)

  @jax.jit
  def ours(keys, problem):
    return jax.vmap(one_run, in_axes=(0, None, None))(keys, problem, HP)

  single = jax.jit(one_run)

  def loop(keys, problem):
    return [single(k, problem, HP) for k in keys]

  @jax.jit
  def naive(keys):
    def per_seed(key):
      k_problem, k_run = jax.random.split(key)
      return one_run(k_run, make(k_problem), HP)
    return jax.vmap(per_seed)(keys)

  for s in cfg["seeds"]:
    keys = jax.random.split(jax.random.key(1), s)
    t_ours = bench.time("vmapped_shared_operator", ours, keys, problem, repeats=args.repeats,
                        extra={"seeds": s})
    t_loop = bench.time("python_loop_over_seeds", loop, keys, problem, repeats=args.repeats,
                        extra={"seeds": s})
    t_naive = bench.time("naive_per_seed_operator", naive, keys, repeats=args.repeats,
                         extra={"seeds": s})
    bench.note(seeds=s, ours_ms_per_seed=1e3 * t_ours.median / s,
               loop_ms_per_seed=1e3 * t_loop.median / s, naive_ms_per_seed=1e3 * t_naive.median / s)
    bench.compare(t_ours, t_loop, label=f"seeds={s}")
    bench.compare(t_ours, t_naive, label=f"seeds={s}")


if __name__ == "__main__":
  main()
