r"""Central-path flows (Tirer, Huang & Niles-Weed 2023) vmapped over seeds x lambda_H in one compile.

    python -m benchmarks.neural_collapse_flows                  # 1024 seeds x 4 lambda_H, CPU sizes
    python -m benchmarks.neural_collapse_flows --preset=tiny    # smoke test

Times ``jit(vmap(vmap(run)))`` of the engine's central-path algorithm (RK4, K = 4, n = d = 10) against
a Python loop over seeds of the jitted single flow, in the same run; prints seeds per second (counting
every (seed, lambda_H) pair as one flow) and the speedup, each timing with its FLOPs, bytes and
roofline fraction (XLA's cost analysis of init, one step and one record,
:func:`benchmarks.harness.run_cost`).

Roofline: far below it, by construction. A flow's state is a few 10 x 4 and 4 x 10 matrices; each
RK4 stage is a handful of tiny matmuls and elementwise ops, so even vmapped over 4096 flows a step
is ~10 MFLOP spread over dozens of small batched ops, each too small to reach the GEMM rate, and
the step-to-step dependency of the scan leaves nothing to overlap. The loop's single flows are pure
dispatch/latency. What the vmap buys is the ratio against the loop, not the roofline.
Measured (issue 17, load ~4): 44% (vmapped) and 38% (loop) of the bandwidth bound, by XLA's byte
count, which counts every small op's operands although the whole state stays in cache: the compute
fractions (7% and 6% of the float64 peak) are the honest ones.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from benchmarks.harness import Bench, run_cost
from jaxopt_lab.engine import run
from jaxopt_lab.neural_collapse.flows import central_path_algorithm

PRESETS = {"cpu": dict(seeds=1024, loop_seeds=16, steps=200), "tiny": dict(seeds=8, loop_seeds=2, steps=10)}
LAMBDA_H = (0.0, 0.01, 0.1, 0.5)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  cfg = PRESETS[args.preset]
  jax.config.update("jax_enable_x64", True)
  bench = Bench("neural_collapse_flows", roofline="tiny" if args.preset == "tiny" else "full")
  bench.note(preset=args.preset, lambda_H=LAMBDA_H, K=4, n=10, d=10, dt=1e-3, **cfg)
  alg = central_path_algorithm(num_classes=4, n=10, d=10, dt=1e-3)
  one = functools.partial(run, alg, problem=None, num_steps=cfg["steps"], record_every=cfg["steps"] // 4)
  lam_h = jnp.asarray(LAMBDA_H)

  def flow(key, lh):
    return one(key, hp={"lambda_W": 2.0**0.5, "lambda_H": lh})

  grid = jax.jit(jax.vmap(jax.vmap(flow, in_axes=(None, 0)), in_axes=(0, None)))
  single = jax.jit(flow)

  def loop(keys):
    return [single(k, lh) for k in keys for lh in lam_h]

  keys = jax.random.split(jax.random.key(0), cfg["seeds"])

  def cost(seeds):  # the (seed, lambda_H) grid flattened: the same work as the nested vmap
    flat_keys = jnp.repeat(keys[:seeds], len(LAMBDA_H))
    hp = {"lambda_W": jnp.asarray(2.0**0.5), "lambda_H": jnp.tile(lam_h, seeds)}
    return run_cost(alg, flat_keys, None, hp, num_steps=cfg["steps"],
                    record_every=cfg["steps"] // 4, in_axes=(0, None, {"lambda_W": None,
                                                                       "lambda_H": 0}),
                    peak="float64")

  t_grid = bench.time("vmapped_seeds_x_lambda_H", grid, keys, lam_h, repeats=args.repeats,
                      extra={"flows": cfg["seeds"] * len(LAMBDA_H)}, cost=cost(cfg["seeds"]))
  loop_keys = keys[:cfg["loop_seeds"]]
  t_loop = bench.time("python_loop", loop, loop_keys, repeats=args.repeats,
                      extra={"flows": cfg["loop_seeds"] * len(LAMBDA_H)},
                      cost=cost(1) * cfg["loop_seeds"])
  per_flow_grid = t_grid.median / (cfg["seeds"] * len(LAMBDA_H))
  per_flow_loop = t_loop.median / (cfg["loop_seeds"] * len(LAMBDA_H))
  bench.note(vmapped_flows_per_second=1 / per_flow_grid, loop_flows_per_second=1 / per_flow_loop,
             vmapped_seeds_per_second=1 / (per_flow_grid * len(LAMBDA_H)))
  bench.note(kind_detail="per-flow speedup", speedup=per_flow_loop / per_flow_grid)


if __name__ == "__main__":
  main()
