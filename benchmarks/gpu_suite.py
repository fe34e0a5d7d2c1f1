r"""Every benchmark's accelerator sizes on one device, in one command, as JSON lines (issue 17).

    python -m benchmarks.gpu_suite --out=DIR                  # GPU sizes, ~8 minutes on one H200
    python -m benchmarks.gpu_suite --out=DIR --preset=tiny    # seconds, any machine (tests run it)
    python -m benchmarks.gpu_suite --out=DIR --sections=matrix_sensing,ntk_analytic

Writes ``DIR/results.jsonl`` (and prints the same lines): first the machine and its roofline
(:func:`benchmarks.harness.peaks`, measured in this process: matmul FLOP/s at default precision
(TF32 on NVIDIA GPUs), HIGHEST, bfloat16 and float64, and the bandwidth of a large elementwise
pass), then one line per entry with the device, the JAX version, the time (median of repeats,
compile excluded), its FLOPs and bytes, the roofline fraction and, where a baseline runs in the same
run, the peer's time and the ratio. Sections:

- ``matrix_sensing``: symmetric GD (n = 50, m = 1000 Gaussian measurements, k = r + 2, 500 steps)
  vmapped over 1, 64, 1024 and 16384 seeds, the operator shared (what ``sweep`` compiles); ms per
  seed and seeds/s; at 64 seeds also the naive sweep (dense sensing matrices built per seed: 2.5 ms
  per seed on an H200 in shared/docs/roofline.md) as the peer. Aim: <= 0.25 ms/seed at 1024 seeds.
- ``ntk_analytic``: depth-3 ReLU NTK + NNGP of N = 8192..32768 Gaussian 784-dim inputs, float32,
  :func:`jaxopt_lab.ntk.analytic.mlp_kernels` against :func:`plain_relu_ntk` (the recursion as a
  user writes it in jnp, Gram at HIGHEST) in the same run; both checked on ``ref_rows`` rows against
  the float64 kernel (max relative error), so the ratio is at stated accuracies. Aim: ours <= 0.6x
  plain.
- ``ntk_empirical``: :func:`jaxopt_lab.ntk.empirical.empirical_ntk` (``structured``) of a depth-3
  ReLU MLP, width 2048, 4096 inputs of 784 dims, 10 outputs (trace), float32.
- ``hessian``: top eigenvalue (20 Lanczos steps, 30 power-iteration products) and the trace (100
  Hutchinson probes) of the loss of a 1,068,810-parameter tanh MLP 784-1024-256-10 on 4096 Gaussian
  inputs with one-hot targets (scikit-learn's digits are not needed), float32.
- ``mup_coord_check``: :func:`jaxopt_lab.mup.coord_check.coord_check` of
  :mod:`benchmarks.mup_coord_check`'s MLP at widths 2^7..2^14, 10 seeds, 3 SGD steps.
- ``neural_collapse``: central-path flows (RK4, K = 4, n = d = 10, 200 steps) vmapped over 16384
  seeds x 4 lambda_H; flows per second.
- ``torch_peers``: microsoft/mup's ``get_coord_data`` and PyHessian on the same problems, on the GPU
  when torch sees one, only where ``mup`` / ``pyhessian`` import in this Python (no venv is built:
  the GPU machine has no network); otherwise one line per peer saying it was skipped.

Each section runs in a ``try``: an exception is recorded as an ``error`` line and the next section
runs. Each section has a time cap (``cap_s``; the GPU caps add up to 475 s) and the suite a budget
(``budget_s``, 480 s): once either is exceeded, the remaining sizes are recorded as skipped (a size
already started finishes, so the sizes grow from small to large). On an H200 every section is
expected well inside its cap (the largest single items: the N = 32768 kernels, ~0.1 s each, and the
coordinate check to 2^14, ~4 TFLOP plus 8 compiles); the GPU numbers are still to be measured.
The suite imports only JAX, NumPy and the lab's library (no ml_collections, scikit-learn or pandas),
which the tests check by running it with those made unimportable.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness
from benchmarks import mup_coord_check as mcc
from benchmarks import stability_pyhessian as sph
from benchmarks.harness import Cost, Timing
from benchmarks.ntk_kernels import analytic_cost
from jaxopt_lab.engine import run
from jaxopt_lab.matrix_sensing import problem as msp
from jaxopt_lab.matrix_sensing.algorithms import symmetric_gd
from jaxopt_lab.mup.coord_check import coord_check
from jaxopt_lab.mup.parametrization import MLP, Task, preset
from jaxopt_lab.neural_collapse.flows import central_path_algorithm
from jaxopt_lab.ntk import empirical, networks
from jaxopt_lab.ntk.analytic import mlp_kernels
from jaxopt_lab.stability import curvature, models

PRESETS: dict[str, dict[str, Any]] = {
    "gpu": dict(
        roofline="full", repeats=5, budget_s=480,
        matrix_sensing=dict(n=50, m=1000, steps=500, seeds=(1, 64, 1024, 16384), naive_seeds=64,
                            cap_s=75),
        ntk_analytic=dict(sizes=(8192, 16384, 32768), d=784, ref_rows=256, cap_s=90),
        ntk_empirical=dict(n=4096, d=784, width=2048, outputs=10, cap_s=45),
        hessian=dict(d=784, hidden=(1024, 256), n=4096, lanczos_steps=20, power_iters=30,
                     trace_probes=100, tasks=("lanczos", "power", "hutchinson"), cap_s=60),
        mup_coord_check=dict(widths=tuple(2 ** k for k in range(7, 15)), seeds=10, steps=3,
                             batch=64, d_in=3072, cap_s=100),
        neural_collapse=dict(seeds=16384, steps=200, cap_s=45),
        torch_peers=dict(cap_s=60),
    ),
    "tiny": dict(
        roofline="tiny", repeats=1, budget_s=120,
        # No naive sweep at tiny sizes: its per-seed problem generation is 4 s of compiling.
        matrix_sensing=dict(n=8, m=64, steps=10, seeds=(4,), naive_seeds=0, cap_s=30),
        ntk_analytic=dict(sizes=(64,), d=16, ref_rows=8, cap_s=30),
        ntk_empirical=dict(n=16, d=8, width=16, outputs=2, cap_s=30),
        hessian=dict(d=16, hidden=(16,), n=32, lanczos_steps=4, power_iters=4, trace_probes=4,
                     tasks=("lanczos", "hutchinson"), cap_s=30),
        mup_coord_check=dict(widths=(16, 32, 64), seeds=2, steps=2, batch=8, d_in=16, cap_s=30),
        neural_collapse=dict(seeds=4, steps=8, cap_s=30),
        torch_peers=dict(cap_s=30),
    ),
}
SECTIONS = ("matrix_sensing", "ntk_analytic", "ntk_empirical", "hessian", "mup_coord_check",
            "neural_collapse", "torch_peers")
DEPTH, SIGMA_W, SIGMA_B = 3, 1.5, 0.1  # as benchmarks.ntk_kernels


class Suite:
  """Writes the JSON lines of one suite run; one :class:`Section` per section."""

  def __init__(self, out_dir: str, preset: str, stream=None):
    self.cfg = PRESETS[preset]
    self.preset = preset
    os.makedirs(out_dir, exist_ok=True)
    self.path = os.path.join(out_dir, "results.jsonl")
    self.file = open(self.path, "w")  # pylint: disable=consider-using-with
    self.stream = stream if stream is not None else sys.stdout
    self.start = time.perf_counter()
    dev = jax.devices()[0]
    self.common = {"suite": "gpu_suite", "preset": preset, "device": dev.device_kind,
                   "backend": dev.platform, "jax": jax.__version__}

  def write(self, record: dict[str, Any]) -> None:
    line = json.dumps({**self.common, **record}, default=float)
    print(line, file=self.file, flush=True)
    print(line, file=self.stream, flush=True)

  def close(self) -> None:
    self.file.close()


class CapReached(Exception):
  """A section ran past its time cap."""


class Section:
  """One section's entries: timing, costing and writing them; knows the section's time cap."""

  def __init__(self, suite: Suite, name: str):
    self.suite, self.name = suite, name
    self.cfg = suite.cfg[name]
    self.repeats = suite.cfg["repeats"]
    self.start = time.perf_counter()

  def over_cap(self) -> bool:
    now = time.perf_counter()
    return (now - self.start > self.cfg["cap_s"]
            or now - self.suite.start > self.suite.cfg["budget_s"])

  def skip_rest(self, what: list[Any]) -> None:
    """Records that ``what`` (the sizes left) were skipped for the time cap."""
    now = time.perf_counter()
    self.suite.write({"section": self.name, "skipped": [str(w) for w in what],
                      "reason": f"time cap reached: section {now - self.start:.1f} s of "
                                f"{self.cfg['cap_s']} s, suite {now - self.suite.start:.1f} s of "
                                f"{self.suite.cfg['budget_s']} s"})

  def sizes(self, values) -> Any:
    """Yields ``values`` until the time cap, then records the rest as skipped."""
    values = list(values)
    for i, v in enumerate(values):
      if i > 0 and self.over_cap():
        self.skip_rest(values[i:])
        return
      yield v

  def time(self, name: str, fn: Callable[..., Any], *args, repeats: int | None = None) -> Timing:
    return harness.time_call(name, fn, *args, repeats=repeats or self.repeats)

  def entry(self, name: str, t: Timing, cost: Cost | None, peer: Timing | None = None,
            **extra) -> dict[str, Any]:
    """Writes one entry: time, FLOPs, bytes, roofline fraction, and the peer's ratio if one ran."""
    rec: dict[str, Any] = {"section": self.name, "entry": name, "time_s": t.median, "min_s": t.min,
                           "max_s": t.max, "repeats": t.repeats, "first_call_s": t.first_call}
    if cost is not None:
      rec.update(harness.roofline(t.median, cost, self.suite.cfg["roofline"]))
    if peer is not None:
      rec.update(peer=peer.name, peer_time_s=peer.median, peer_ratio=peer.median / t.median)
    rec.update(extra)
    self.suite.write(rec)
    return rec


# ----------------------------------------------------------------------------------------------
# Sections.


def matrix_sensing(sec: Section) -> None:

  c = sec.cfg
  rank, hp = 3, {"alpha": 0.1, "eta": 0.1}
  alg = symmetric_gd(k=rank + 2)
  make = functools.partial(msp.make_problem, n1=c["n"], rank=rank, num_measurements=c["m"],
                           dtype=jnp.float32)
  problem = make(jax.random.key(0))
  steps, every = c["steps"], c["steps"] // 10
  one_run = functools.partial(run, alg, num_steps=steps, record_every=every)
  ours = jax.jit(lambda keys, p: jax.vmap(one_run, in_axes=(0, None, None))(keys, p, hp))

  @jax.jit
  def naive(keys):
    def per_seed(key):
      k_problem, k_run = jax.random.split(key)
      return one_run(k_run, make(k_problem), hp)
    return jax.vmap(per_seed)(keys)

  cost_of = functools.partial(harness.run_cost, alg, hp=hp, num_steps=steps, record_every=every)
  for s in sec.sizes(c["seeds"]):
    keys = jax.random.split(jax.random.key(1), s)
    t = sec.time(f"vmapped S={s}", ours, keys, problem)
    peer = None
    if s == c["naive_seeds"]:
      peer = sec.time(f"naive per-seed operators S={s}", naive, keys)
    sec.entry(f"symmetric GD, shared operator, {s} seeds", t, cost_of(keys, problem), peer=peer,
              seeds=s, ms_per_seed=1e3 * t.median / s, seeds_per_s=s / t.median,
              n=c["n"], m=c["m"], steps=steps,
              peer_ms_per_seed=None if peer is None else 1e3 * peer.median / s)


def plain_relu_ntk(x1: jax.Array, x2: jax.Array, depth: int, sigma_w: float,
                   sigma_b: float) -> tuple[jax.Array, jax.Array]:
  r"""The depth-``depth`` ReLU NNGP and NTK (NTK parametrization) as a user writes them in jnp.

  :math:`\Sigma^0 = \sigma_w^2 x x'^\top / d + \sigma_b^2`, then per layer the arc-cosine step
  :math:`\Sigma' = \sigma_w^2 \sqrt{q q'}(\sin\theta + (\pi - \theta)\cos\theta) / 2\pi
  + \sigma_b^2`, :math:`\dot\Sigma = \sigma_w^2 (\pi - \theta) / 2\pi`,
  :math:`\Theta' = \Sigma' + \dot\Sigma\Theta`
  (Jacot et al. 2018, arXiv:1806.07572; Cho & Saul 2009). The Gram at HIGHEST precision; the
  baseline the suite times :func:`jaxopt_lab.ntk.analytic.mlp_kernels` against.
  """
  d = x1.shape[1]
  sw2, sb2 = sigma_w ** 2, sigma_b ** 2
  q12 = sw2 * jnp.matmul(x1, x2.T, precision=jax.lax.Precision.HIGHEST) / d + sb2
  q1 = sw2 * jnp.sum(x1 * x1, axis=1) / d + sb2
  q2 = sw2 * jnp.sum(x2 * x2, axis=1) / d + sb2
  ntk = q12
  for _ in range(depth - 1):
    norm = jnp.sqrt(q1[:, None] * q2[None, :])
    cos = jnp.clip(q12 / norm, -1.0, 1.0)
    theta = jnp.arccos(cos)
    e12 = norm * (jnp.sqrt(1.0 - cos * cos) + (jnp.pi - theta) * cos) / (2 * jnp.pi)
    ed12 = (jnp.pi - theta) / (2 * jnp.pi)
    ntk = sw2 * e12 + sb2 + sw2 * ed12 * ntk
    q12 = sw2 * e12 + sb2
    q1, q2 = sw2 * q1 / 2 + sb2, sw2 * q2 / 2 + sb2
  return q12, ntk


def _max_rel(k, ref) -> float:
  k, ref = np.asarray(k, np.float64), np.asarray(ref, np.float64)
  return float(np.max(np.abs(k - ref) / np.abs(ref)))


def ntk_analytic(sec: Section) -> None:

  c = sec.cfg
  ours = jax.jit(lambda x: tuple(mlp_kernels(x, depth=DEPTH, activation="relu", sigma_w=SIGMA_W,
                                             sigma_b=SIGMA_B)))
  plain = jax.jit(lambda x: plain_relu_ntk(x, x, DEPTH, SIGMA_W, SIGMA_B))
  for n in sec.sizes(c["sizes"]):
    x = np.random.default_rng(0).normal(size=(n, c["d"])).astype(np.float32)
    rows = np.linspace(0, n - 1, c["ref_rows"]).astype(int)
    with jax.enable_x64(True):  # reference rows: our kernel in float64 (the tests hold it to 1e-12)
      ref = np.asarray(mlp_kernels(jnp.asarray(x[rows], jnp.float64), jnp.asarray(x, jnp.float64),
                                   depth=DEPTH, activation="relu", sigma_w=SIGMA_W,
                                   sigma_b=SIGMA_B).ntk)
    xj = jnp.asarray(x)
    t_plain = sec.time(f"plain jnp recursion N={n}", plain, xj)
    err_plain = _max_rel(plain(xj)[1][rows], ref)
    t = sec.time(f"mlp_kernels N={n}", ours, xj)
    err_ours = _max_rel(ours(xj)[1][rows], ref)
    cost = analytic_cost(n, c["d"], "float32")
    plain_frac = harness.roofline(t_plain.median, cost, sec.suite.cfg["roofline"])
    sec.entry(f"analytic ReLU NTK+NNGP N={n} float32", t, cost, peer=t_plain, n=n, d=c["d"],
              ours_over_plain=t.median / t_plain.median, ours_max_rel_err=err_ours,
              plain_max_rel_err=err_plain, plain_roofline_fraction=plain_frac["roofline_fraction"],
              reference=f"float64 mlp_kernels, {c['ref_rows']} rows x N")
    del xj


def ntk_empirical(sec: Section) -> None:

  c = sec.cfg
  net = networks.MLP((c["d"],) + (c["width"],) * (DEPTH - 1) + (c["outputs"],), "relu",
                     sigma_w=SIGMA_W, sigma_b=SIGMA_B)
  params = net.init(jax.random.key(1), jnp.float32)
  x = jax.random.normal(jax.random.key(2), (c["n"], c["d"]), jnp.float32)
  fn = jax.jit(lambda p, x: empirical.empirical_ntk(net, p, x, method="structured"))
  t = sec.time("empirical_ntk structured", fn, params, x)
  cost = harness.xla_cost(fn, params, x, peak="float32_highest")
  sec.entry(f"empirical NTK structured, width {c['width']}, {c['n']} x {c['d']}, "
            f"{c['outputs']} outputs", t, cost, **{k: v for k, v in c.items() if k != "cap_s"})


def _hessian_problem(c: dict):

  kx, ky = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (c["n"], c["d"]), jnp.float32)
  y = jax.nn.one_hot(jax.random.randint(ky, (c["n"],), 0, 10), 10, dtype=jnp.float32)
  model = models.tanh_mlp((c["d"], *c["hidden"], 10))
  params = model.init(jax.random.key(0), jnp.float32)
  return model, params, x, y


def hessian(sec: Section) -> None:

  c = sec.cfg
  model, params, x, y = _hessian_problem(c)
  num_params = sum(p.size for p in jax.tree.leaves(params))
  loss_of = lambda p, x, y: models.mse(model.apply(p, x), y)
  hvp_cost = harness.xla_cost(lambda p, v, x, y: curvature.hvp(lambda q: loss_of(q, x, y), p, v),
                              params, params, x, y)
  tasks = {
      "lanczos": (f"top eigenvalue, lanczos {c['lanczos_steps']} steps", c["lanczos_steps"],
                  lambda p, x, y, k: curvature.top_eigenvalues_lanczos(
                      lambda q: loss_of(q, x, y), p, k, num_steps=c["lanczos_steps"]).values[0]),
      "power": (f"top eigenvalue, power iteration {c['power_iters']} products", c["power_iters"],
                lambda p, x, y, k: curvature.top_eigenvalues_power(
                    lambda q: loss_of(q, x, y), p, k, num_iters=c["power_iters"]).values[0]),
      "hutchinson": (f"trace, hutchinson {c['trace_probes']} probes", c["trace_probes"],
                     lambda p, x, y, k: tuple(curvature.hutchinson_trace(
                         lambda q: loss_of(q, x, y), p, k, num_probes=c["trace_probes"]))),
  }
  for task in sec.sizes(c["tasks"]):
    name, products, fn = tasks[task]
    f = jax.jit(fn)
    t = sec.time(name, f, params, x, y, jax.random.key(1))
    value = jax.device_get(f(params, x, y, jax.random.key(1)))
    sec.entry(name, t, hvp_cost * products, params=int(num_params), examples=c["n"],
              hvps=products, value=np.asarray(value).tolist(),
              cost_note="products x XLA's cost of one forward-over-reverse HVP")


def mup_coord_check(sec: Section) -> None:

  c = sec.cfg
  kx, ky = jax.random.split(jax.random.key(0))
  task = Task(jax.random.normal(kx, (c["batch"], c["d_in"]), jnp.float32),
              jax.random.randint(ky, (c["batch"],), 0, mcc.D_OUT))
  net = MLP(preset("mup", 2), c["d_in"], c["widths"][0], mcc.D_OUT, activation="tanh",
            base_width=c["widths"][0], bias=True, sigma=3 ** -0.5, init_distribution="uniform")
  # The widths up to 2^11 first (a number even if the cap then stops the rest), then all of them.
  for top in sec.sizes(sorted({min(5, len(c["widths"])), len(c["widths"])})):
    widths = list(c["widths"][:top])
    cfg = dict(c, widths=widths)
    fn = lambda widths=widths: coord_check(net, widths, task, seeds=range(c["seeds"]),
                                           lr=mcc.LR, num_steps=c["steps"], loss="xent").size
    t = sec.time(f"coord_check widths {widths[0]}..{widths[-1]}", fn, repeats=1)
    sec.entry(f"coord check widths {widths[0]}..{widths[-1]}, {c['seeds']} seeds, "
              f"{c['steps']} steps", t, Cost(mcc.gemm_flops(cfg, True), mcc.weight_bytes(cfg)),
              widths=widths, seeds=c["seeds"], steps=c["steps"])


def neural_collapse(sec: Section) -> None:

  c = sec.cfg
  lam_h = jnp.asarray((0.0, 0.01, 0.1, 0.5))
  alg = central_path_algorithm(num_classes=4, n=10, d=10, dt=1e-3)
  one = functools.partial(run, alg, problem=None, num_steps=c["steps"],
                          record_every=c["steps"] // 4)
  flow = lambda key, lh: one(key, hp={"lambda_W": 2.0 ** 0.5, "lambda_H": lh})
  with jax.enable_x64(True):  # as the benchmark and the theory checks
    grid = jax.jit(jax.vmap(jax.vmap(flow, in_axes=(None, 0)), in_axes=(0, None)))
    keys = jax.random.split(jax.random.key(0), c["seeds"])
    lam = lam_h.astype(jnp.float64)
    t = sec.time("central-path flows", grid, keys, lam)
    flows = c["seeds"] * lam.size
    cost = harness.run_cost(alg, jnp.repeat(keys, lam.size), None,
                            {"lambda_W": jnp.asarray(2.0 ** 0.5),
                             "lambda_H": jnp.tile(lam, c["seeds"])},
                            num_steps=c["steps"], record_every=c["steps"] // 4,
                            in_axes=(0, None, {"lambda_W": None, "lambda_H": 0}), peak="float64")
  sec.entry(f"central-path flows, {c['seeds']} seeds x 4 lambda_H, {c['steps']} RK4 steps", t, cost,
            flows=flows, flows_per_s=flows / t.median, steps=c["steps"])


def torch_peers(sec: Section) -> None:
  """microsoft/mup and PyHessian on this Python's torch, where they import; else a skip line."""
  have_torch = importlib.util.find_spec("torch") is not None
  for peer, module in sec.sizes([("microsoft/mup", "mup"), ("PyHessian", "pyhessian")]):
    if not have_torch or importlib.util.find_spec(module) is None:
      sec.suite.write({"section": sec.name, "peer": peer, "skipped":
                       f"{'torch' if not have_torch else module} is not importable in "
                       f"{sys.executable} (the suite builds no venv)"})
      continue
    (_peer_mup if module == "mup" else _peer_pyhessian)(sec)


def _torch_cuda() -> bool:
  out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                       capture_output=True, text=True, check=False)
  return out.stdout.strip() == "True"


def _peer_mup(sec: Section) -> None:

  c = dict(sec.suite.cfg["mup_coord_check"])
  c["widths"] = list(c["widths"])
  cuda = _torch_cuda()
  res = mcc.run_mup(sys.executable, {k: v for k, v in c.items() if k != "cap_s"},
                    dict(os.environ), 1, cuda=cuda)
  t = Timing("mup.get_coord_data", float(np.median(res["times"])), min(res["times"]),
             max(res["times"]), len(res["times"]), res["first"])
  sec.entry(f"microsoft/mup get_coord_data widths {c['widths'][0]}..{c['widths'][-1]}", t,
            Cost(mcc.gemm_flops(c, False), mcc.weight_bytes(c)), torch=res["torch"],
            torch_device="cuda" if cuda else "cpu")


def _peer_pyhessian(sec: Section) -> None:

  c = sec.suite.cfg["hessian"]
  model, params, x, y = _hessian_problem(c)
  loss_of = lambda p, x, y: models.mse(model.apply(p, x), y)
  hvp_cost = harness.xla_cost(lambda p, v, x, y: curvature.hvp(lambda q: loss_of(q, x, y), p, v),
                              params, params, x, y)
  num_params = sum(p.size for p in jax.tree.leaves(params))
  cuda = _torch_cuda()
  with tempfile.TemporaryDirectory() as tmp:
    npz = os.path.join(tmp, "problem.npz")
    arrays = {"x": np.asarray(x), "y": np.asarray(y),
              "v": np.asarray(jax.random.normal(jax.random.key(3), (num_params,), jnp.float32))}
    for i, (w, b) in enumerate(params):
      arrays[f"w{i}"], arrays[f"b{i}"] = np.asarray(w), np.asarray(b)
    np.savez(npz, **arrays)
    cfg = dict(hidden=c["hidden"], trace_probes=c["trace_probes"], slq_steps=2, slq_probes=1)
    res = sph.run_pyhessian(sys.executable, cfg, npz, dict(os.environ), 3, default_trace=False,
                            cuda=cuda)
  for key, what in (("eig", "top eigenvalue (tol 1e-3)"),
                    ("trace", f"trace, {c['trace_probes']} probes")):
    t = sph._timing(f"pyhessian {key}", res[key])  # pylint: disable=protected-access
    hvps = float(np.median([r["hvps"] for r in res[key][1:]]))
    sec.entry(f"PyHessian {what}", t, hvp_cost * hvps, hvps=hvps, torch=res["torch"],
              torch_device="cuda" if cuda else "cpu")


SECTION_FNS: dict[str, Callable[[Section], None]] = {
    "matrix_sensing": matrix_sensing, "ntk_analytic": ntk_analytic, "ntk_empirical": ntk_empirical,
    "hessian": hessian, "mup_coord_check": mup_coord_check, "neural_collapse": neural_collapse,
    "torch_peers": torch_peers,
}


def run_suite(out_dir: str, preset: str, sections=SECTIONS, stream=None,
              section_fns: dict[str, Callable[[Section], None]] | None = None) -> str:
  """Runs ``sections`` of ``preset``, one JSON line per entry into ``out_dir/results.jsonl``.

  Returns the path of the JSON lines. An exception in a section is recorded as its ``error`` line.
  """
  fns = section_fns or SECTION_FNS
  suite = Suite(out_dir, preset, stream)
  t0 = time.perf_counter()
  try:
    suite.write({"kind": "machine", **harness.machine()})
    suite.write({"kind": "roofline", **harness.peaks(suite.cfg["roofline"])})
    for name in sections:
      sec = Section(suite, name)
      if time.perf_counter() - suite.start > suite.cfg["budget_s"]:
        sec.skip_rest(["the whole section"])
        continue
      try:
        fns[name](sec)
      except Exception as e:  # noqa: BLE001 (one section's failure must not end the suite)
        suite.write({"section": name, "error": f"{type(e).__name__}: {str(e)[:2000]}",
                     "traceback": traceback.format_exc()[-3000:]})
      suite.write({"section": name, "kind": "section_done",
                   "seconds": time.perf_counter() - sec.start})
    suite.write({"kind": "done", "seconds": time.perf_counter() - t0})
  finally:
    suite.close()
  return suite.path


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", required=True, help="directory for results.jsonl")
  p.add_argument("--preset", choices=sorted(PRESETS), default="gpu")
  p.add_argument("--sections", default=",".join(SECTIONS),
                 help=f"comma-separated subset of {','.join(SECTIONS)}")
  args = p.parse_args(argv)
  sections = [s for s in args.sections.split(",") if s]
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    p.error(f"--sections: unknown {unknown}; expected a subset of {list(SECTIONS)}")
  run_suite(args.out, args.preset, sections)


if __name__ == "__main__":
  main()
