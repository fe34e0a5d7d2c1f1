r"""Coordinate check: jaxopt_lab.mup vs microsoft/mup's own ``get_coord_data`` on the same MLP.

    python -m benchmarks.mup_coord_check                    # widths 2^7..2^13, 3 steps, 10 seeds
    python -m benchmarks.mup_coord_check --preset=tiny      # smoke test (widths 2^5..2^7, 2 seeds)
    python -m benchmarks.mup_coord_check --venv=/path/venv  # where the PyTorch venv lives / is made
    python -m benchmarks.mup_coord_check --skip-mup --seed-batch=0 --key-impl=rbg  # ours' options

The MLP: ``d_in -> n -> n -> 10``, tanh, biases, PyTorch's ``nn.Linear`` default init (uniform,
variance 1/(3 fan_in)), muP with base width 2^7 by mup's own rules (``set_base_shapes`` with
``MuReadout``, ``MuSGD``: input weights and every hidden bias at LR eta * m, hidden weights eta, readout
weights eta * m through the 1/m readout multiplier, readout bias eta), cross-entropy on one fixed
batch (64 Gaussian CIFAR-shaped inputs, d_in = 3072), SGD eta = 0.1, 3 steps, 10 seeds per width:
what mup's coordinate-check examples run. Ours: :func:`jaxopt_lab.mup.coord_check.coord_check` on
:class:`~jaxopt_lab.mup.parametrization.MLP` with ``preset("mup", 2)``, ``base_width = 128``,
``sigma = 3^-1/2``, uniform init, float32: the same network family and the same rules (abc form:
equal by the symmetry). Both record the mean |activation| of every layer at each step.

microsoft/mup runs in its own venv (created when missing): ``pip install torch==2.13.0`` (the CPU
wheel on this machine's local index makes it fast), ``pip install --no-deps mup==1.0.0``, and mup's
runtime imports ``pyyaml numpy pandas``. mup's time is measured inside its process (imports excluded),
with default malloc and again with tuned malloc (jemalloc via LD_PRELOAD when installed, otherwise
glibc tunables that keep large buffers off mmap/munmap, and MALLOC_ARENA_MAX=2).
Ours runs one seed at a time (``seed_batch=1``, the default) with threefry keys (JAX's default; the
draws are ``jax.random``'s bit for bit); ``--seed-batch`` and ``--key-impl`` time the alternatives.
Compilation (one program per width) is excluded from both medians like mup's first call; its
per-width backend-compile seconds are printed from ``jax.monitoring``.
Prints JSON lines (harness.Bench): machine, timings, ratios, fitted exponents of both for comparison.

Measured (``--preset=cpu``, 2-core Sapphire Rapids VM shared with other jobs, issue 6): ours
25.5 s (load 4-5; 27.6-29.5 s in a rerun at load 1.6-2), compile 1-4.5 s per width (first call
47-84 s); mup 37.3 s with default malloc and 41.1 s with jemalloc (load 1.9-3.7): 1.3-1.6x, not
the 3x asked for. Both are bound by the same dense GEMMs at the widest sizes (1416 GFLOP for mup,
1595 for ours, 68% of it at n = 8192; ours ran at 56-63 GFLOP/s, mup at 35-38 GFLOP/s).

Roofline: both timings carry the GEMM FLOPs of :func:`gemm_flops` and the weight traffic of
:func:`weight_bytes` (compulsory: weights written at init, read by the forward and backward passes
and rewritten by the update each step), against the float32 matmul peak measured in the same run.
At the CPU sizes the run is compute-bound (batch 64 against n x n weights), so the fraction is the
share of the 4096^3 GEMM rate reached. It is well under 1 because a batch of 64 is a skinny GEMM
(64 x 3072 by 3072 x n, 64 x n by n x n): each weight is used 64 times per pass, so the GEMMs run
at a fraction of the square-GEMM rate, and the narrow widths (n <= 1024, a third of the program
count) are dispatch- and tanh-bound; neither is a choice of ours (the batch is mup's example's).
Measured (issue 17, load 4-6): 48 s, 24% of the square-GEMM roofline (33 GFLOP/s against 138);
the note at the end measures the GEMMs of the widest width alone in the same run: 48-50 GFLOP/s
for the forward products (64 x n by n x n) and 32 GFLOP/s for the weight gradients (n x 64 by
64 x n), so the run is at the rate its own shapes allow. More would need fewer, fatter GEMMs
(several seeds' batches stacked into one product, which SGD on separate networks does not allow
without changing the experiment).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks.harness import Bench, Cost, Timing, peer_venv, run_result
from jaxopt_lab import fitting
from jaxopt_lab.mup.coord_check import coord_check
from jaxopt_lab.mup.parametrization import MLP, Task, preset

PRESETS = {
    "cpu": dict(widths=[2 ** k for k in range(7, 14)], seeds=10, steps=3, batch=64, d_in=3072),
    "small": dict(widths=[2 ** k for k in range(7, 12)], seeds=10, steps=3, batch=64, d_in=3072),
    "tiny": dict(widths=[2 ** k for k in range(5, 8)], seeds=2, steps=3, batch=8, d_in=64),
}
LR, D_OUT = 0.1, 10

TORCH_SCRIPT = textwrap.dedent(r"""
    import json, sys, time
    import numpy as np
    import torch, torch.nn as nn
    from mup import MuReadout, set_base_shapes
    from mup.coord_check import get_coord_data
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    d_in, base = cfg["d_in"], cfg["base"]

    class MLP(nn.Module):
      def __init__(self, width):
        super().__init__()
        self.fc1 = nn.Linear(d_in, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = MuReadout(width, 10)
      def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(torch.tanh(self.fc1(x)))))

    def lazy(width):
      return lambda: set_base_shapes(MLP(width), MLP(base), delta=MLP(2 * base))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(cfg["batch"], d_in, generator=g)
    y = torch.randint(0, 10, (cfg["batch"],), generator=g)
    models = {w: lazy(w) for w in cfg["widths"]}
    run = lambda: get_coord_data(models, [(x, y)], optimizer="sgd", lr=cfg["lr"], mup=True,
                                 nsteps=cfg["steps"], nseeds=cfg["seeds"],
                                 cuda=cfg.get("cuda", False),
                                 show_progress=False, lossfn="xent")
    t0 = time.perf_counter(); df = run(); first = time.perf_counter() - t0
    times = []
    for _ in range(cfg["repeats"]):
      t0 = time.perf_counter(); df = run(); times.append(time.perf_counter() - t0)
    l1 = {}
    for (w, mod, t), v in df.groupby(["width", "module", "t"])["l1"].mean().items():
      l1.setdefault(mod, {}).setdefault(str(t), {})[str(w)] = float(v)
    print("RESULT " + json.dumps({"first": first, "times": times, "l1": l1,
                                  "torch": torch.__version__}))
""")


def ensure_venv(venv: str) -> str:
  """The venv's python, creating the venv with torch 2.13.0 and mup 1.0.0 when missing."""
  return peer_venv(venv, "import torch, mup, yaml, pandas",
                   [["torch==2.13.0"], ["--no-deps", "mup==1.0.0"],
                    ["pyyaml", "numpy", "pandas"]])  # the last: mup's runtime imports


def tuned_malloc_env() -> tuple[dict[str, str], str]:
  """Environment for tuned malloc: jemalloc if installed, else glibc tunables; and its label."""
  env = dict(os.environ, MALLOC_ARENA_MAX="2")
  jemalloc = sorted(glob.glob("/usr/lib/*/libjemalloc.so*") + glob.glob("/usr/lib/libjemalloc.so*"))
  if jemalloc:
    env["LD_PRELOAD"] = jemalloc[0]
    return env, f"jemalloc ({jemalloc[0]}), MALLOC_ARENA_MAX=2"
  # Keep big activations and weights on the heap (no mmap/munmap page faults per allocation).
  env["GLIBC_TUNABLES"] = ("glibc.malloc.mmap_threshold=4294967296:"
                           "glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=268435456")
  return env, "glibc tunables (mmap/trim threshold 4 GiB, top_pad 256 MiB), MALLOC_ARENA_MAX=2"


def run_mup(py: str, cfg: dict, env: dict[str, str], repeats: int, cuda: bool = False) -> dict:
  """mup's ``get_coord_data`` timed in a process of ``py`` (on the GPU with ``cuda``)."""
  arg = json.dumps({**cfg, "lr": LR, "base": cfg["widths"][0], "repeats": repeats,
                    "threads": os.cpu_count() or 1, "cuda": cuda})
  return run_result([py, "-c", TORCH_SCRIPT, arg], "mup run", env=env)


def gemm_flops(cfg: dict, extra_forward: bool) -> float:
  r"""Matrix-multiply FLOPs of the run: per step :math:`2B(2P + n^2 + 10n)` (forward, weight
  gradients, input gradients of layers 2 and 3; :math:`P = d n + n^2 + 10 n` weights), ``steps``
  steps per seed and width, plus one forward per seed and width for ours' recorded step ``T``."""
  total = 0.0
  for n in cfg["widths"]:
    p = cfg["d_in"] * n + n * n + D_OUT * n
    per_step = 2 * cfg["batch"] * (2 * p + n * n + D_OUT * n)
    last = 2 * cfg["batch"] * p if extra_forward else 0
    total += cfg["seeds"] * (cfg["steps"] * per_step + last)
  return total


def weight_bytes(cfg: dict) -> float:
  """Compulsory float32 weight traffic: per seed and width, written once at init, then read twice
  (forward, backward) and rewritten once (the update) at each step."""
  total = 0.0
  for n in cfg["widths"]:
    p = cfg["d_in"] * n + n * n + D_OUT * n
    total += cfg["seeds"] * 4 * p * (1 + 3 * cfg["steps"])
  return total


def _timing(name: str, times: list[float], first: float) -> Timing:
  return Timing(name, float(np.median(times)), min(times), max(times), len(times), first)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--venv", default="/tmp/mup_bench_venv")
  p.add_argument("--repeats", type=int, default=1)
  p.add_argument("--skip-mup", action="store_true", help="time ours only")
  p.add_argument("--seed-batch", type=int, default=1,
                 help="ours: seeds per lax.map iteration (1: one at a time; 0: vmap all seeds)")
  p.add_argument("--key-impl", default="threefry2x32", help="ours: JAX key implementation")
  args = p.parse_args(argv)
  cfg = PRESETS[args.preset]
  bench = Bench("mup_coord_check", roofline="tiny" if args.preset == "tiny" else "full")
  bench.note(preset=args.preset, lr=LR, d_out=D_OUT, loadavg=os.getloadavg(), **cfg)

  kx, ky = jax.random.split(jax.random.key(0))
  task = Task(jax.random.normal(kx, (cfg["batch"], cfg["d_in"]), jnp.float32),
              jax.random.randint(ky, (cfg["batch"],), 0, D_OUT))
  net = MLP(preset("mup", 2), cfg["d_in"], cfg["widths"][0], D_OUT, activation="tanh",
            base_width=cfg["widths"][0], bias=True, sigma=3 ** -0.5, init_distribution="uniform")
  seed_batch = args.seed_batch or None
  compiles: list[float] = []  # seconds of tracing, lowering and XLA compilation of each width

  def on_event(event: str, seconds: float, fun_name: str = "", **kw) -> None:
    del kw
    if "_one_width" in fun_name and event.startswith("/jax/core/compile/"):
      if event.endswith("jaxpr_trace_duration"):
        compiles.append(0.0)
      if compiles:
        compiles[-1] += seconds

  jax.monitoring.register_event_duration_secs_listener(on_event)
  results = []

  def ours():
    results.append(coord_check(net, cfg["widths"], task, seeds=range(cfg["seeds"]), lr=LR,
                               num_steps=cfg["steps"], loss="xent", seed_batch=seed_batch,
                               key_impl=args.key_impl))
    return results[-1].size

  t_ours = bench.time("jaxopt_lab.coord_check", ours, repeats=args.repeats,
                      extra={"widths": cfg["widths"], "seeds": cfg["seeds"],
                             "seed_batch": seed_batch, "key_impl": args.key_impl,
                             "loadavg_after": os.getloadavg()},
                      cost=Cost(gemm_flops(cfg, True), weight_bytes(cfg)))
  bench.note(which="ours", compile_s_per_width=[round(c, 2) for c in compiles],
             num_compiles=len(compiles))
  cc = results[-1]
  bench.note(which="ours", gemm_gflop=round(gemm_flops(cfg, True) / 1e9, 1),
             gemm_gflop_per_s=round(gemm_flops(cfg, True) / 1e9 / t_ours.median, 1))
  # The achievable rate at the widest width's own shapes (a batch of rows against n x n weights):
  # what the skinny GEMMs allow, next to the square-GEMM peak of the roofline line.
  n, b = cfg["widths"][-1], cfg["batch"]
  bench.note(which="gemm rates at the widest width", width=n, batch=b,
             hidden_forward_gflop_per_s=harness.gemm_rate(b, n, n) / 1e9,
             input_forward_gflop_per_s=harness.gemm_rate(b, cfg["d_in"], n) / 1e9,
             weight_gradient_gflop_per_s=harness.gemm_rate(n, b, n) / 1e9)
  ex_ours = cc.exponents("size")[1:].round(3).tolist()
  bench.note(which="ours", size_exponents_by_step=ex_ours, layers=list(cc.layers))
  if args.skip_mup:
    return
  py = ensure_venv(args.venv)
  bench.note(loadavg_before_mup=os.getloadavg())
  res_default = run_mup(py, cfg, dict(os.environ), args.repeats)
  t_default = _timing("mup.get_coord_data (default malloc)", res_default["times"], res_default["first"])
  mup_cost = Cost(gemm_flops(cfg, False), weight_bytes(cfg))
  bench.record(t_default, cost=mup_cost, measured_in="mup process")
  env, label = tuned_malloc_env()
  res_tuned = run_mup(py, cfg, env, args.repeats)
  bench.note(loadavg_after_mup=os.getloadavg())
  t_tuned = _timing(f"mup.get_coord_data ({label})", res_tuned["times"], res_tuned["first"])
  bench.record(t_tuned, cost=mup_cost, measured_in="mup process")
  bench.note(which="mup", gemm_gflop=round(gemm_flops(cfg, False) / 1e9, 1),
             gemm_gflop_per_s_default=round(gemm_flops(cfg, False) / 1e9 / t_default.median, 1),
             gemm_gflop_per_s_tuned=round(gemm_flops(cfg, False) / 1e9 / t_tuned.median, 1))
  bench.compare(t_ours, t_default, label="default malloc", torch=res_default["torch"])
  bench.compare(t_ours, t_tuned, label="tuned malloc", torch=res_tuned["torch"])
  first = lambda t: Timing(t.name + " (first call)", t.first_call, t.first_call, t.first_call, 1,
                           t.first_call)
  bench.compare(first(t_ours), first(t_tuned), label="first calls (ours compiles), tuned malloc")
  # mup's l1 records at its t = 1..3 are ours at steps 0..2 (it records before each update).
  widths = np.asarray(cfg["widths"], np.float64)
  ex_mup = {}
  for mod, by_t in res_tuned["l1"].items():
    if mod:
      ex_mup[mod] = [round(fitting.loglog_slope(widths, [by_t[t][str(w)] for w in cfg["widths"]]).slope, 3)
                     for t in sorted(by_t)]
  bench.note(which="mup", l1_exponents_by_step=ex_mup,
             ours_same_steps=cc.exponents("size")[:cfg["steps"]].round(3).T.tolist())


if __name__ == "__main__":
  main()
