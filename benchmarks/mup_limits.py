r"""Infinite-width limits: SGD steps per second and memory as the number of steps grows.

    python -m benchmarks.mup_limits               # linear T = 1e2..1e5; tanh quadrature T = 10..1000
    python -m benchmarks.mup_limits --preset=tiny # smoke test

The linear (P/Q) limit keeps O((d + d_o)^2) state whatever T (one lax.scan); the tanh limit keeps one
particle per trapezoid node (D = 2: (2R/h + 1)^2 nodes), also constant in T. Memory is XLA's
compiled temp allocation (``memory_analysis``) plus the output, recorded once at the end
(``record_every = T``); the (T, B) batch-index input is the only thing that grows. Baseline for the
same stream: the kernel (NTK) limit of the same network, whose memory is O((N + m)^2) in the number
of distinct examples.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import Bench
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
  bench = Bench("mup_limits")

  x, y, xe = _problem(64, 16, 4)
  for steps in cfg["linear"]:
    b = limits.sgd_batches(jax.random.key(1), 64, steps, 8)
    fn = jax.jit(lambda lr, b=b, steps=steps: limits.linear_limit(x, y, b, xe, lr=lr,
                                                                  record_every=steps).f)
    mem = fn.lower(0.1).compile().memory_analysis()
    t = bench.time(f"linear_limit T={steps}", fn, 0.1, repeats=args.repeats,
                   extra={"steps": steps, "d": 16, "d_out": 4, "batch": 8})
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
                   extra={"steps": steps, "dim": 2, "h": cfg["h"]})
    nodes = (int(round(18 / cfg["h"])) + 1) ** 2
    bench.note(which="tanh_limit_quadrature", steps=steps, steps_per_second=steps / t.median,
               nodes=nodes, state_bytes=nodes * 2 * 8)
    tk = bench.time(f"ntk_limit T={steps}", lambda lr, b=b, steps=steps: limits.kernel_limit(
        x1, y1, b, xe1, lr=lr, record_every=steps).f, 0.5, repeats=args.repeats,
                    extra={"steps": steps})
    bench.note(which="ntk_limit", steps=steps, steps_per_second=steps / tk.median,
               kernel_bytes=(16 + 4) ** 2 * 8)


if __name__ == "__main__":
  main()
