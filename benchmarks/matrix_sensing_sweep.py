r"""Matrix-sensing seed sweep: the engine's vmapped sweep vs a Python loop over seeds vs a naive sweep.

    python -m benchmarks.matrix_sensing_sweep                 # CPU sizes (n = 30, m = 600, 200 steps)
    python -m benchmarks.matrix_sensing_sweep --preset=gpu    # roofline sizes (n = 50, m = 1000, 500 steps)

Three ways to run S seeds of symmetric GD (k = r + 2, small init) on one sensing problem:
- ours: ``jit(vmap(run))`` with the sensing operator shared by all seeds (what ``sweep`` compiles), so a
  step is one (m x n^2) @ (n^2 x S) matrix product;
- loop: the same jitted single-seed run called once per seed from Python;
- naive: every seed builds and uses its own dense sensing matrices (the sweep timed in
  ../shared/docs/roofline.md: 2.5 ms per seed at 64 seeds on an H200).
Prints JSON lines: the machine and its roofline, each timing with its FLOPs, bytes and roofline
fraction (XLA's cost analysis of init, one step and one record, :func:`benchmarks.harness.run_cost`;
the naive sweep adds the per-seed problem generation), per-seed costs and the speedups.

Roofline, 2-core CPU (issue 17): the shared-operator sweep is a GEMM of (m x n^2) by (n^2 x S) per
step, so at 64 seeds it is compute-bound near the float32 peak; at 1 seed it is a matrix-vector
product re-reading the operator every step, memory-bound in principle but the 2.2 MB operator (CPU
sizes) stays in cache, so XLA's byte count, an upper bound on DRAM traffic, can put it above 1.
The Python loop pays one dispatch per seed and the S = 1 product per seed; the naive sweep reads
S different operators per step (bandwidth-bound) and builds them first. Each seed count also notes
the rate its step's (m x n^2) by (n^2 x S) product reaches alone on this machine.

Measured (issue 17, load 4-8, CPU preset): 64 seeds 0.27 s (108 GFLOP/s), 41-67% of the float32
roofline (the square-GEMM peak itself moved between 161 and 265 GFLOP/s between runs), while the
step's 600 x 900 x 64 GEMM alone reached 126 GFLOP/s: the sweep runs at ~85% of what its shape
allows. 16 seeds: that GEMM alone 92 GFLOP/s; 1 seed: a matrix-vector product (9 GFLOP/s alone) on a
cache-resident operator, so its bytes-based fraction (above 1) only says the data stayed in cache.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from benchmarks import harness
from benchmarks.harness import Bench, run_cost, xla_cost
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
  bench = Bench("matrix_sensing_sweep", roofline="tiny" if args.preset == "tiny" else "full")
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

  steps, every = cfg["steps"], cfg["steps"] // 10
  cost_of = functools.partial(run_cost, alg, hp=HP, num_steps=steps, record_every=every)
  one_cost = cost_of(jax.random.split(jax.random.key(1), 1), problem)
  for s in cfg["seeds"]:
    keys = jax.random.split(jax.random.key(1), s)
    problems = jax.eval_shape(jax.vmap(make), jax.random.split(keys[0], s))
    naive_cost = (xla_cost(jax.vmap(make), keys) +
                  cost_of(keys, problems, in_axes=(0, 0, None)))
    t_ours = bench.time(f"vmapped_shared_operator S={s}", ours, keys, problem,
                        repeats=args.repeats, extra={"seeds": s}, cost=cost_of(keys, problem))
    t_loop = bench.time(f"python_loop_over_seeds S={s}", loop, keys, problem, repeats=args.repeats,
                        extra={"seeds": s}, cost=one_cost * s)
    t_naive = bench.time(f"naive_per_seed_operator S={s}", naive, keys, repeats=args.repeats,
                         extra={"seeds": s}, cost=naive_cost)
    # A step's main product, (m x n^2) by (n^2 x S): the rate its shape allows on this machine.
    bench.note(seeds=s, step_gemm_shape=[cfg["m"], cfg["n"] ** 2, s],
               step_gemm_gflop_per_s=harness.gemm_rate(cfg["m"], cfg["n"] ** 2, s, dtype) / 1e9)
    bench.note(seeds=s, ours_ms_per_seed=1e3 * t_ours.median / s,
               loop_ms_per_seed=1e3 * t_loop.median / s, naive_ms_per_seed=1e3 * t_naive.median / s)
    bench.compare(t_ours, t_loop, label=f"seeds={s}")
    bench.compare(t_ours, t_naive, label=f"seeds={s}")


if __name__ == "__main__":
  main()
