r"""Infinite-width limits: SGD steps per second and memory as the number of steps grows.

    python -m benchmarks.mup_limits               # linear T = 1e2..1e5; tanh quadrature T = 10..1000
    python -m benchmarks.mup_limits --preset=tiny # smoke test

The linear (P/Q) limit keeps O((d + d_o)^2) state whatever T (one lax.scan); the tanh limit keeps one
particle per trapezoid node (D = 2: (2R/h + 1)^2 nodes), also constant in T. Memory is XLA's
compiled temp allocation (``memory_analysis``) plus the output, recorded once at the end
(``record_every = T``); the (T, B) batch-index input is the only thing that grows. Baseline for the
same stream: the kernel (NTK) limit of the same network, whose memory is O((N + m)^2) in the number
of distinct examples.

Roofline: every timing carries T times XLA's cost analysis of the same limit at T = 1 (one step and
one record: XLA counts a scan's body once, so the cost of the whole T-step program cannot be read
off directly; the T = 1 program's setup is counted T times, so FLOPs and bytes are upper bounds).
These limits are far below the roofline, by design of the problem: a step of the linear limit
updates a 20 x 20 state from a batch of 8 (a few kFLOP), the kernel limit a 20 x 20 kernel, so a
step is a chain of microsecond ops bound by the scan's step-to-step latency, not by FLOPs or bytes;
the tanh quadrature's step is elementwise over the nodes (memory-bound, closer to the bandwidth).
What is measured here is memory and steps per second, which the roofline does not bound.
Measured (issue 17): linear 30-35%, tanh quadrature 41-61%, kernel limit 2-170% of the (byte)
bound: XLA's bytes of a cache-resident state, so these say only that nothing here is FLOP-bound.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import Bench, xla_cost
from jaxopt_lab.mup import limits

PRESETS = {
    "cpu": dict(linear=(100, 1_000, 10_000, 100_000), tanh=(10, 100, 1_000), h=0.05),
    "tiny": dict(linear=(10, 100), tanh=(5, 10), h=0.2),
}


def _problem(num_train: int, d: int, d_out: int):
  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (num_train, d), jnp.float64) / np.sqrt(d)
  y = jax.random.normal(ky, (num_train, d_out), jnp.float64)
  return x, y, x[:4]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args(argv)
  jax.config.update("jax_enable_x64", True)
  cfg = PRESETS[args.preset]
  bench = Bench("mup_limits", roofline="tiny" if args.preset == "tiny" else "full")

  def cost(limit_fn, steps, *args, **kw):  # T times the T = 1 program (see the module docstring)
    b1 = args[2][:1]
    return xla_cost(lambda lr: limit_fn(*args[:2], b1, *args[3:], lr=lr, record_every=1, **kw).f,
                    0.1, peak="float64") * steps

  x, y, xe = _problem(64, 16, 4)
  for steps in cfg["linear"]:
    b = limits.sgd_batches(jax.random.key(1), 64, steps, 8)
    fn = jax.jit(lambda lr, b=b, steps=steps: limits.linear_limit(x, y, b, xe, lr=lr,
                                                                  record_every=steps).f)
    mem = fn.lower(0.1).compile().memory_analysis()
    t = bench.time(f"linear_limit T={steps}", fn, 0.1, repeats=args.repeats,
                   extra={"steps": steps, "d": 16, "d_out": 4, "batch": 8},
                   cost=cost(limits.linear_limit, steps, x, y, b, xe))
    bench.note(which="linear_limit", steps=steps, steps_per_second=steps / t.median,
               temp_bytes=mem.temp_size_in_bytes, output_bytes=mem.output_size_in_bytes,
               batch_index_bytes=int(b.size * 4))

  x1, y1, xe1 = _problem(16, 1, 1)
  x1 = x1 * 4.0
  for steps in cfg["tanh"]:
    b = limits.sgd_batches(jax.random.key(1), 16, steps, 4)
    fn = lambda lr, b=b, steps=steps: limits.nonlinear_limit(x1, y1, b, xe1, lr=lr, h=cfg["h"],
                                                             record_every=steps).f
    t = bench.time(f"tanh_limit_quadrature T={steps}", fn, 0.5, repeats=args.repeats,
                   extra={"steps": steps, "dim": 2, "h": cfg["h"]},
                   cost=cost(limits.nonlinear_limit, steps, x1, y1, b, xe1, h=cfg["h"]))
    nodes = (int(round(18 / cfg["h"])) + 1) ** 2
    bench.note(which="tanh_limit_quadrature", steps=steps, steps_per_second=steps / t.median,
               nodes=nodes, state_bytes=nodes * 2 * 8)
    tk = bench.time(f"ntk_limit T={steps}", lambda lr, b=b, steps=steps: limits.kernel_limit(
        x1, y1, b, xe1, lr=lr, record_every=steps).f, 0.5, repeats=args.repeats,
                    extra={"steps": steps}, cost=cost(limits.kernel_limit, steps, x1, y1, b, xe1))
    bench.note(which="ntk_limit", steps=steps, steps_per_second=steps / tk.median,
               kernel_bytes=(16 + 4) ** 2 * 8)


if __name__ == "__main__":
  main()
