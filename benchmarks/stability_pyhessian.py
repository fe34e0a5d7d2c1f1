r"""Curvature of a ~1M-parameter MLP: jaxopt_lab.stability.curvature vs PyHessian, same Hessian, same run.

    python -m benchmarks.stability_pyhessian                    # 784-1024-256-10, 1000 examples
    python -m benchmarks.stability_pyhessian --preset=tiny      # seconds, ours only (no PyTorch)
    python -m benchmarks.stability_pyhessian --venv=/path/venv  # where PyHessian's venv lives / is made

The problem: scikit-learn's digits (1000 training images, centred) upsampled bilinearly from 8x8 to
28x28 (784 inputs), a tanh MLP 784-1024-256-10 (1,068,810 parameters) at its LeCun-normal init
(:func:`jaxopt_lab.stability.models.tanh_mlp`, key 0), loss :math:`\frac1n\sum_i\frac12\|f(x_i)-y_i\|^2`
with one-hot targets, float32 on both sides. Our weights, inputs and targets are written to an
``.npz`` and loaded into the same ``nn.Sequential`` in the PyTorch process, which checks the loss and
one Hessian-vector product against ours (so both estimate the same Hessian).

Tasks, each timed inside its own process (imports, setup and compilation excluded; our compile time
is reported separately), median over ``--repeats`` calls after one warm-up call, each call with a
fresh random start / fresh probes:

1. Top eigenvalue. PyHessian: ``hessian.eigenvalues()`` (power iteration, ``maxIter=100``, stops when
   two Rayleigh quotients agree to relative ``tol=1e-3``). Ours:
   :func:`~jaxopt_lab.stability.curvature.top_eigenvalues_power` with a fixed number of products
   (``power_iters``) and :func:`~jaxopt_lab.stability.curvature.top_eigenvalues_lanczos`
   (``lanczos_steps`` products). Errors of all against a reference: our Lanczos in float64 with
   ``ref_steps`` steps. The top of this spectrum is clustered (lambda_2 / lambda_1 = 0.934), so power
   iteration is slow: in the run of 2026-11-28 (2 cores, load 2.1) 30 products left relative errors of
   0.7-1.1% and PyHessian's tol stop 0.5-7% after 16-37 products, while 20 Lanczos products
   reached 3e-7. Neither power iteration meets 1e-3 here; the Lanczos line does.
2. Trace: Hutchinson with 100 Rademacher probes on both sides (PyHessian's ``trace(maxIter=100,
   tol=0)``: with its default ``tol=1e-3`` it stops when the running mean moves by < 0.1%, whose
   probe count is also reported). Both estimates with their standard errors.
3. Spectral density: SLQ with 50 Lanczos steps and ``slq_probes`` probes (PyHessian's
   ``density(iter=50, n_v=slq_probes)``); compared by the quadrature's :math:`\mathrm{tr}\,H`,
   :math:`\|H\|_F^2` and top node.

PyHessian runs in its own venv (created when missing): ``pip install torch==2.13.0`` (the local CPU
wheel) and ``pip install --no-deps pyhessian==0.1`` (its only release on PyPI) plus numpy; torch uses
as many threads as XLA (``os.cpu_count()``), with tuned malloc (``--malloc=tuned``, the default:
:func:`benchmarks.mup_coord_check.tuned_malloc_env`, faster for PyTorch), default malloc, or both. PyHessian 0.1's ``density`` calls
``torch.eig``, which torch 2 removed (it raises); the PyTorch process installs a replacement
``torch.eig`` built on ``torch.linalg.eigh`` (the tridiagonal is symmetric, so it returns the same
eigenpairs) before calling it. Nothing else of PyHessian is changed.
Prints JSON lines (harness.Bench): machine, load, timings, ratios per task, accuracies.

Roofline: each task's work is its number of Hessian-vector products times XLA's cost analysis of one
of ours (forward-over-reverse, float32; Lanczos' reorthogonalization, 2 d k FLOPs a step, is left
out, under 1%); PyHessian's timings are costed with its own counted products and the same
per-product cost (its double-backward HVP does the same GEMMs). One HVP on the CPU preset is ~6
GEMM passes of 1000 x 784 x 1024: compute-bound, so the fraction is the share of the float32
matmul peak reached.
Measured (issue 17, ours only, two runs at load ~5 and ~8): power iteration 78-130%, Lanczos
40-130%, Hutchinson 46-96%, SLQ 22%+ (the 8-load run). Above 1 means the work is overcounted or the
peak undercounted: the peak measured under heavier load than the entry (it is measured again then,
see :func:`benchmarks.harness.roofline`), or XLA hoisting the products' loop-invariant primal pass
out of the loop, so products x one whole HVP is an upper bound on the work. Either way these tasks
run at the GEMM rate; ``jax.linearize`` of the gradient (to reuse the primal pass explicitly) gave
the same program and time as ``jvp`` of ``grad`` in a 20-product scan (checked in issue 17).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from benchmarks.harness import Bench, Timing, peer_venv, run_result, xla_cost
from benchmarks.mup_coord_check import tuned_malloc_env
from jaxopt_lab.stability import curvature, models

PRESETS = {
    "cpu": dict(side=28, hidden=(1024, 256), n=1000, power_iters=30, lanczos_steps=20,
                trace_probes=100, trace_batch=1, slq_steps=50, slq_probes=2, ref_steps=60,
                repeats=3, peer=True),
    "tiny": dict(side=8, hidden=(32,), n=100, power_iters=20, lanczos_steps=10, trace_probes=10,
                 trace_batch=1, slq_steps=10, slq_probes=2, ref_steps=30, repeats=1, peer=False),
}
PYHESSIAN = "pyhessian==0.1"

TORCH_SCRIPT = textwrap.dedent(r"""
    import json, statistics, sys, time
    import numpy as np
    import torch, torch.nn as nn
    cfg = json.loads(sys.argv[1])
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    arr = np.load(cfg["npz"])
    nl = cfg["layers"]
    mods = []
    for i in range(nl):
      w, b = arr[f"w{i}"], arr[f"b{i}"]
      lin = nn.Linear(*w.shape)
      with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
        lin.bias.copy_(torch.from_numpy(b))
      mods += [lin] + ([nn.Tanh()] if i < nl - 1 else [])
    device = "cuda" if cfg.get("cuda") else "cpu"
    model = nn.Sequential(*mods).to(device)
    x, y = torch.from_numpy(arr["x"]).to(device), torch.from_numpy(arr["y"]).to(device)
    crit = lambda out, t: 0.5 * ((out - t) ** 2).sum(dim=1).mean()

    def eig_shim(a, eigenvectors=False):  # torch.eig (removed in torch 2) for a symmetric matrix
      vals, vecs = torch.linalg.eigh(a)
      return torch.stack([vals, torch.zeros_like(vals)], dim=1), vecs
    torch.eig = eig_shim
    import importlib
    ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports the class)
    calls = [0]
    hvp = ph.hessian_vector_product
    def counted(*a):
      calls[0] += 1
      return hvp(*a)
    ph.hessian_vector_product = counted

    t0 = time.perf_counter()
    h = ph.hessian(model, crit, data=(x, y), cuda=device == "cuda")
    setup = time.perf_counter() - t0
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "setup_s": setup,
           "loss": float(crit(model(x), y))}
    v = torch.from_numpy(arr["v"]).to(device)
    parts, o = [], 0
    for p in h.params:
      k = p.numel()
      parts.append(v[o:o + k].reshape(p.shape[::-1]).T.contiguous() if p.ndim == 2
                   else v[o:o + k].reshape(p.shape))
      o += k
    hv = ph.hessian_vector_product(h.gradsH, h.params, parts)
    out["hv"] = torch.cat([(t.T if t.ndim == 2 else t).reshape(-1) for t in hv]).tolist()

    def timed(fn):
      rec = []
      for _ in range(cfg["repeats"] + 1):  # the first call is the warm-up
        calls[0] = 0
        t0 = time.perf_counter()
        res = fn()
        rec.append({"s": time.perf_counter() - t0, "hvps": calls[0], "res": res})
      return rec

    out["eig"] = timed(lambda: h.eigenvalues(maxIter=100, tol=1e-3)[0][0])
    def trace():
      s = np.asarray(h.trace(maxIter=cfg["trace_probes"], tol=0.0))
      return [float(s.mean()), float(s.std(ddof=1) / np.sqrt(s.size))]
    out["trace"] = timed(trace)
    def density():
      nodes, weights = h.density(iter=cfg["slq_steps"], n_v=cfg["slq_probes"])
      return [np.real(nodes).tolist(), np.real(weights).tolist()]
    out["density"] = timed(density)
    if cfg["default_trace"]:
      calls[0] = 0
      s = h.trace()
      out["default_trace"] = {"probes": calls[0], "value": float(np.mean(s))}
    print("RESULT " + json.dumps(out))
""")


def digits_upsampled(n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
  """Digits (centred, one-hot targets) resized bilinearly from 8x8 to ``side`` x ``side``."""
  data = models.digits_data(n_train=n, n_test=0, dtype=np.float32)
  img = np.asarray(data.x, np.float64).reshape(n, 8, 8)
  t = np.linspace(0.0, 7.0, side)
  lo = np.minimum(np.floor(t).astype(int), 6)
  interp = np.zeros((side, 8))
  interp[np.arange(side), lo] = 1.0 - (t - lo)
  interp[np.arange(side), lo + 1] = t - lo
  x = np.einsum("ai,nij,bj->nab", interp, img, interp).reshape(n, side * side)
  return x.astype(np.float32), np.asarray(data.y, np.float32)


def ensure_venv(venv: str) -> str:
  """The venv's python, creating the venv with torch 2.13.0 and PyHessian 0.1 when missing."""
  return peer_venv(venv, "import torch, numpy, pyhessian",
                   [["torch==2.13.0"], ["--no-deps", PYHESSIAN, "numpy"]])  # deps: numpy, torch


def run_pyhessian(py: str, cfg: dict, npz: str, env: dict[str, str], repeats: int,
                  default_trace: bool, cuda: bool = False) -> dict:
  """PyHessian's eigenvalue, trace and density timed in a process of ``py`` (GPU with ``cuda``)."""
  arg = json.dumps({"npz": npz, "layers": len(cfg["hidden"]) + 1, "repeats": repeats,
                    "threads": os.cpu_count() or 1, "trace_probes": cfg["trace_probes"],
                    "slq_steps": cfg["slq_steps"], "slq_probes": cfg["slq_probes"],
                    "default_trace": default_trace, "cuda": cuda})
  return run_result([py, "-c", TORCH_SCRIPT, arg], "PyHessian run", env=env)


def _timing(name: str, rec: list[dict]) -> Timing:
  times = [r["s"] for r in rec[1:]]
  return Timing(name, float(np.median(times)), min(times), max(times), len(times), rec[0]["s"])


def _quadrature_stats(nodes, weights, d: int) -> dict[str, float]:
  """tr H, |H|_F^2 and the top node of an SLQ result (rows: probes)."""
  nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
  return {"trace": float(d * np.mean(np.sum(weights * nodes, axis=1))),
          "frobenius_sq": float(d * np.mean(np.sum(weights * nodes ** 2, axis=1))),
          "top_node": float(nodes.max()), "weight_sums": np.sum(weights, axis=1).round(6).tolist()}


def _rel(a: float, ref: float) -> float:
  return abs(a - ref) / abs(ref)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--venv", default="/tmp/pyhessian_bench_venv")
  p.add_argument("--repeats", type=int, default=None, help="timed calls per task (default: preset)")
  p.add_argument("--skip-peer", action="store_true", help="time ours only (no PyTorch)")
  p.add_argument("--with-peer", action="store_true", help="run PyHessian even where the preset does not")
  p.add_argument("--malloc", choices=["default", "tuned", "both"], default="tuned",
                 help="malloc of the PyTorch process")
  p.add_argument("--trace-batch", type=int, default=None,
                 help="Hutchinson probes per vmapped chunk (0: all at once; default: preset)")
  args = p.parse_args(argv)
  cfg = dict(PRESETS[args.preset])
  repeats = args.repeats or cfg["repeats"]
  if args.trace_batch is not None:
    cfg["trace_batch"] = args.trace_batch or None
  bench = Bench("stability_pyhessian", roofline="tiny" if args.preset == "tiny" else "full")
  bench.note(preset=args.preset, load_avg_start=os.getloadavg(), **cfg)

  x, y = digits_upsampled(cfg["n"], cfg["side"])
  sizes = (x.shape[1], *cfg["hidden"], y.shape[1])
  model = models.tanh_mlp(sizes)
  params = model.init(jax.random.key(0), jnp.float32)
  w_flat = ravel_pytree(params)[0]
  d = int(w_flat.size)
  loss_of = lambda p, x, y: models.mse(model.apply(p, x), y)
  xj, yj = jnp.asarray(x), jnp.asarray(y)
  bench.note(model=f"tanh MLP {'-'.join(map(str, sizes))}", params=d, examples=cfg["n"],
             dtype="float32", loss=float(loss_of(params, xj, yj)))

  tasks = {
      f"power iteration, {cfg['power_iters']} products": lambda p, x, y, k: curvature.top_eigenvalues_power(
          lambda q: loss_of(q, x, y), p, k, num_iters=cfg["power_iters"]).values[0],
      f"lanczos, {cfg['lanczos_steps']} steps": lambda p, x, y, k: curvature.top_eigenvalues_lanczos(
          lambda q: loss_of(q, x, y), p, k, num_steps=cfg["lanczos_steps"]).values[0],
      f"hutchinson, {cfg['trace_probes']} probes": lambda p, x, y, k: tuple(curvature.hutchinson_trace(
          lambda q: loss_of(q, x, y), p, k, num_probes=cfg["trace_probes"],
          batch_size=cfg["trace_batch"])),
      f"slq, {cfg['slq_probes']} x {cfg['slq_steps']} steps": lambda p, x, y, k: tuple(curvature.slq(
          lambda q: loss_of(q, x, y), p, k, num_probes=cfg["slq_probes"], num_steps=cfg["slq_steps"])),
  }
  hvp_cost = xla_cost(lambda p, v, x, y: curvature.hvp(lambda q: loss_of(q, x, y), p, v), params,
                      params, xj, yj)
  products = dict(zip(tasks, (cfg["power_iters"], cfg["lanczos_steps"], cfg["trace_probes"],
                              cfg["slq_probes"] * cfg["slq_steps"])))
  bench.note(hvp_cost=dataclasses.asdict(hvp_cost), products_per_task=products)
  ours, outs = {}, {}
  for name, fn in tasks.items():
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(params, xj, yj, jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    keys = iter(jax.random.split(jax.random.key(1), repeats + 1))
    results = []

    def call(compiled=compiled, keys=keys, results=results):
      results.append(compiled(params, xj, yj, next(keys)))
      return results[-1]

    ours[name] = bench.time(f"jaxopt_lab {name}", call, repeats=repeats,
                            extra={"compile_s": compile_s}, cost=hvp_cost * products[name])
    outs[name] = jax.device_get(results[1:])  # the warm-up call's result left out, as for PyHessian

  # Reference top eigenvalue: Lanczos in float64.
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    ref_fn = jax.jit(lambda p, x, y, k: curvature.top_eigenvalues_lanczos(
        lambda q: loss_of(q, x, y), p, k, k=2, num_steps=cfg["ref_steps"]))
    t0 = time.perf_counter()
    ref = jax.device_get(ref_fn(p64, jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64),
                                jax.random.key(2)))
  lam = float(ref.values[0])
  bench.note(reference="lanczos float64", steps=cfg["ref_steps"], lambda_max=lam,
             lambda_2=float(ref.values[1]), residual_bound=float(ref.residuals[0]),
             seconds=time.perf_counter() - t0)

  names = list(tasks)
  acc = {
      "eig_power": [_rel(float(v), lam) for v in outs[names[0]]],
      "eig_lanczos": [_rel(float(v), lam) for v in outs[names[1]]],
  }
  bench.note(which="ours", task="top eigenvalue", power_rel_err=acc["eig_power"],
             lanczos_rel_err=acc["eig_lanczos"])
  bench.note(which="ours", task="trace", estimates=[[float(v), float(s)] for v, s in outs[names[2]]])
  slq_ours = [_quadrature_stats(nodes, weights, d) for nodes, weights in outs[names[3]]]
  bench.note(which="ours", task="slq", per_call=slq_ours)
  if args.skip_peer or not (cfg["peer"] or args.with_peer):
    bench.note(load_avg_end=os.getloadavg())
    return

  py = ensure_venv(args.venv)
  v = np.asarray(jax.random.normal(jax.random.key(3), (d,), jnp.float32))
  hv_ours = np.asarray(jax.jit(lambda p, v: curvature.hessian_operator(
      lambda q: loss_of(q, xj, yj), p)[0](v))(params, jnp.asarray(v)))
  envs = []
  if args.malloc in ("default", "both"):
    envs.append((dict(os.environ), "default malloc"))
  if args.malloc in ("tuned", "both"):
    envs.append(tuned_malloc_env())
  with tempfile.TemporaryDirectory() as tmp:
    npz = os.path.join(tmp, "problem.npz")
    arrays = {"x": x, "y": y, "v": v}
    for i, (w, b) in enumerate(params):
      arrays[f"w{i}"], arrays[f"b{i}"] = np.asarray(w), np.asarray(b)
    np.savez(npz, **arrays)
    for i, (env, label) in enumerate(envs):
      res = run_pyhessian(py, cfg, npz, env, repeats, default_trace=(i == 0))
      hv_err = float(np.linalg.norm(np.asarray(res["hv"]) - hv_ours) / np.linalg.norm(hv_ours))
      bench.note(which="pyhessian", malloc=label, torch=res["torch"], threads=res["threads"],
                 setup_s=res["setup_s"], loss=res["loss"], hvp_rel_diff_vs_ours=hv_err,
                 default_trace=res.get("default_trace"))
      eig_err = [_rel(r["res"], lam) for r in res["eig"][1:]]
      bench.note(which="pyhessian", malloc=label, task="top eigenvalue", rel_err=eig_err,
                 hvps=[r["hvps"] for r in res["eig"][1:]])
      bench.note(which="pyhessian", malloc=label, task="trace",
                 estimates=[r["res"] for r in res["trace"][1:]])
      slq_theirs = [_quadrature_stats(*r["res"], d) for r in res["density"][1:]]
      bench.note(which="pyhessian", malloc=label, task="slq", per_call=slq_theirs)
      pairs = [("eig", names[0], "top eigenvalue (power iteration)"),
               ("eig", names[1], "top eigenvalue (ours: lanczos)"),
               ("trace", names[2], "trace (hutchinson)"), ("density", names[3], "slq density")]
      for key, ours_name, label_task in pairs:
        theirs = _timing(f"pyhessian {key} ({label})", res[key])
        if ours_name != names[1]:  # the eigenvalue timing is compared twice, printed once
          hvps = float(np.median([r["hvps"] for r in res[key][1:]]))
          bench.record(theirs, cost=hvp_cost * hvps, measured_in="pyhessian process", hvps=hvps)
        extra = {}
        if key == "eig":
          extra = {"ours_median_rel_err": float(np.median(acc["eig_power" if "power" in ours_name
                                                              else "eig_lanczos"])),
                   "pyhessian_median_rel_err": float(np.median(eig_err)),
                   "pyhessian_median_hvps": float(np.median([r["hvps"] for r in res[key][1:]]))}
        bench.compare(ours[ours_name], theirs, label=f"{label_task}, {label}", **extra)
  bench.note(load_avg_end=os.getloadavg())


if __name__ == "__main__":
  main()
