r"""NTK kernels: jaxopt_lab.ntk vs neural-tangents 0.6.5, analytic and empirical, same machine.

    python -m benchmarks.ntk_kernels                       # CPU targets (builds the peer venv once)
    python -m benchmarks.ntk_kernels --preset=tiny         # smoke test: seconds, no peer venv
    python -m benchmarks.ntk_kernels --preset=gpu          # analytic throughput vs the roofline
    python -m benchmarks.ntk_kernels --preset=gpu --sizes=256,512  # its printing, on a CPU
    python -m benchmarks.ntk_kernels --venv=/path/venv     # where the peer venv lives / is made

Analytic: depth-3 ReLU NTK (and NNGP) of N Gaussian inputs of 784 dims (N = 2000, 4000), float32,
NTK parametrization, sigma_w = 1.5, sigma_b = 0.1. Ours:
:func:`jaxopt_lab.ntk.analytic.mlp_kernels`.
Peer: neural-tangents' ``stax.serial(Dense, Relu, Dense, Relu, Dense)`` ``kernel_fn`` (same
sigmas, ``parameterization='ntk'``) under ``jax.jit``, with ``get=('nngp', 'ntk')`` (what ours
returns) and ``get='ntk'``. Both are compared with a float64 reference (ours in float64; the peer's
float64 kernel is checked against it at the smallest N): max abs / max rel error of the full kernel
and of its diagonal.

Empirical: NTK (traced over outputs, neural-tangents' default ``trace_axes=(-1,)``) of a
width-512 depth-3 ReLU MLP at one set of float32 weights, 256 inputs of 784 dims, 1 and 10 outputs.
Ours: :func:`jaxopt_lab.ntk.empirical.empirical_ntk` with ``method="structured"`` and
``method="jacobian"``; peer: ``nt.empirical_ntk_fn`` with each ``NtkImplementation`` (the same
weights in its stax network). Every (side, method, outputs) runs in its own process: its peak RSS
and the compiled program's memory are reported with its time and its error against ours in float64.

neural-tangents runs in its own venv (created when missing): jax/jaxlib 0.4.25, tensorflow-cpu
2.15, tf2jax 0.3.6 and neural-tangents 0.6.5 (the last two with ``--no-deps``: they name the
``tensorflow`` wheel, ``tensorflow-cpu`` provides it). Its times are taken inside its process
(imports and compilation excluded), median of the repeats, like ours (benchmarks.harness).

The ``gpu`` preset times ours alone for N up to the memory limit, float32 (inner products at
precision HIGHEST, as always in jaxopt_lab.ntk) and float64, and states each against the
elementwise memory roofline of shared/docs/roofline.md (H200: 3.3 TB/s): the least traffic is
writing the two N x N kernels once. It also prints the time the Gram matrix alone needs at the
measured HIGHEST / float64 matmul rate (50 / 52 TFLOP/s on that H200).
Prints JSON lines (harness.Bench): machine, load average, timings, ratios, accuracy, memory.

Roofline (every preset, against the peaks measured in the same run): an analytic timing's work is
the problem's least work (:func:`analytic_cost`): the symmetric input Gram's distinct entries,
:math:`N(N+1)d` FLOPs (half of the full :math:`2N^2d` a plain recursion does, which therefore tops
out at 50%) at the HIGHEST-precision float32 (or float64) matmul peak, and its compulsory traffic,
the two N x N kernels written once and the inputs read once (the recursion's ~100 FLOPs per entry
and layer are left out: about 10% of the Gram's 784 per distinct entry at d = 784);
neural-tangents' analytic timings are costed with the same work. An empirical timing carries XLA's
cost analysis of our compiled program, measured in its worker process; neural-tangents' empirical
implementations do different work each and carry none.
At N = 4000 on the 2-core CPU the least Gram is 12.5 GFLOP, so the kernel is compute-bound, and
the fraction is the share of the float32 peak reached.

Measured (issue 17, 2-core VM shared with other jobs, load 3-8, peaks in the same run): N = 2000:
20-25%, N = 4000: 14-23% of that roofline (0.33-0.65 s). Why: at N = 4000, timing our kernel
against the bare Gram in one process (best of 7), the half Gram our symmetric strips compute takes
about half of our time, the recursion (two arc-cosine layers over 8M distinct entries: a square
root, a division and the arctangent polynomial per entry, in 128-row strips) 35-40%, and the first
touch of the 128 MB of fresh output pages ~10% (a 64 MB Gram at d = 16 costs 0.08 s, nearly all of
it page faults). Closing that gap means fusing the recursion into fewer passes with fewer divisions
and square roots (one reciprocal square root per entry), which is library work in
``jaxopt_lab.ntk.analytic`` (not changed here); the GEMM itself runs near the peak.
The empirical NTK (structured) reached 81% (O = 1) and 47% (O = 10), our Jacobian contraction 19%.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import Bench, Cost, Timing, peer_venv, run_result, time_call

#: Largest (n, O, P) float32 Jacobian a Jacobian-contraction timing may build (ours or the peer's).
JACOBIAN_BUDGET_BYTES = 2 * 10**9

PRESETS = {
    "cpu": dict(sizes=[2000, 4000], d=784, dtypes=["float32"], emp_n=256, emp_width=512,
                emp_outputs=[1, 10], peer=True, empirical=True),
    "tiny": dict(sizes=[96], d=32, dtypes=["float32"], emp_n=8, emp_width=16,
                 emp_outputs=[1, 3], peer=False, empirical=True),
    "gpu": dict(sizes=[8192, 16384, 32768, 65536], d=784, dtypes=["float32", "float64"],
                emp_n=0, emp_width=0, emp_outputs=[], peer=False, empirical=False),
}
DEPTH, SIGMA_W, SIGMA_B = 3, 1.5, 0.1
PEER_IMPLEMENTATIONS = ["STRUCTURED_DERIVATIVES", "NTK_VECTOR_PRODUCTS", "JACOBIAN_CONTRACTION",
                        "AUTO"]
# shared/docs/roofline.md, one H200: elementwise traffic, HIGHEST float32 and float64 matmul rates.
ROOFLINE = dict(device="NVIDIA H200 (shared/docs/roofline.md)", bytes_per_s=3.3e12,
                flops_per_s={"float32": 50e12, "float64": 52e12})

PEER_SCRIPT = textwrap.dedent(r"""
    import json, sys, time
    import numpy as np
    cfg = json.loads(sys.argv[1])
    import jax
    if cfg.get("x64"):
      jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import neural_tangents as nt
    from neural_tangents import stax

    def timed(fn, repeats, budget):
      t0 = time.perf_counter(); out = jax.block_until_ready(fn()); first = time.perf_counter() - t0
      times = []
      while len(times) < repeats and (not times or sum(times) + times[-1] < budget):
        t0 = time.perf_counter(); jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
      return out, first, times

    def memory(jitted, *args):
      try:
        m = jitted.lower(*args).compile().memory_analysis()
        total = int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
        return total or None  # 0: not reported by this version on this backend
      except Exception:
        return None

    def peak_rss():
      # VmHWM is this process's own peak (ru_maxrss would carry the parent's peak over exec).
      with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))

    def layers(width, out):
      kw = dict(W_std=cfg["sigma_w"], b_std=cfg["sigma_b"], parameterization="ntk")
      ls = []
      for _ in range(cfg["depth"] - 1):
        ls += [stax.Dense(width, **kw), stax.Relu()]
      return stax.serial(*ls, stax.Dense(out, **kw))

    res = {"jax": jax.__version__, "neural_tangents": nt.__version__}
    if cfg["mode"] == "analytic":
      x = jnp.asarray(np.load(cfg["x"]))
      kernel_fn = jax.jit(layers(512, 1)[2], static_argnames="get")
      for name, get in (("nngp+ntk", ("nngp", "ntk")), ("ntk", "ntk")):
        out, first, times = timed(lambda: kernel_fn(x, None, get=get), cfg["repeats"],
                                  cfg["budget"])
        res[name] = {"first": first, "times": times}
      np.save(cfg["out"], np.asarray(out))
    else:
      params = np.load(cfg["params"])
      x = jnp.asarray(np.load(cfg["x"]))
      _, apply_fn, _ = layers(cfg["width"], cfg["outputs"])
      stax_params = []
      for l in range(cfg["depth"]):
        stax_params.append((jnp.asarray(params[f"w{l}"]), jnp.asarray(params[f"b{l}"])))
        if l < cfg["depth"] - 1:
          stax_params.append(())
      impl = getattr(nt.NtkImplementation, cfg["implementation"])
      ntk_fn = jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0,
                                           implementation=impl))
      try:
        out, first, times = timed(lambda: ntk_fn(x, None, stax_params), cfg["repeats"],
                                  cfg["budget"])
        res.update(first=first, times=times, compiled_bytes=memory(ntk_fn, x, None, stax_params))
        np.save(cfg["out"], np.asarray(out))
      except Exception as e:  # its fastest implementation breaks on some JAX versions
        res["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    res["peak_rss_bytes"] = peak_rss()
    print("RESULT " + json.dumps(res))
""")


def ensure_venv(venv: str) -> str:
  """The venv's python, creating the venv with neural-tangents 0.6.5 and its stack when missing."""
  return peer_venv(
      venv, "import neural_tangents, tensorflow, tf2jax, jax; assert jax.__version__ == '0.4.25'",
      [["jax==0.4.25", "jaxlib==0.4.25", "tensorflow-cpu==2.15.*", "numpy<2", "frozendict>=2.3.8",
        "absl-py", "dm-tree>=0.1.5"],
       # Both name the `tensorflow` wheel; tensorflow-cpu provides the same module.
       ["--no-deps", "tf2jax==0.3.6", "neural-tangents==0.6.5"]])


def _subprocess(cmd: list[str], cfg: dict, what: str) -> dict:
  return run_result(cmd + [json.dumps(cfg)], what, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _timing(name: str, res: dict) -> Timing:
  t = res["times"]
  return Timing(name, float(np.median(t)), min(t), max(t), len(t), res["first"])


def _errors(k, ref) -> dict[str, float]:
  """Max abs and max rel error of the whole kernel and of its diagonal against a reference."""
  k, ref = np.asarray(k, np.float64), np.asarray(ref, np.float64)
  err = np.abs(k - ref)
  rel = err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
  d = np.diag(err) if k.ndim == 2 and k.shape[0] == k.shape[1] else np.zeros(1)
  drel = d / np.maximum(np.abs(np.diag(ref)), np.finfo(np.float64).tiny) if d.size > 1 else d
  return {"max_abs": float(err.max()), "max_rel": float(rel.max()),
          "diag_max_abs": float(d.max()), "diag_max_rel": float(drel.max())}


def _load() -> list[float]:
  return [round(v, 2) for v in os.getloadavg()]


# ----------------------------------------------------------------------------------------------
# Analytic.


def _inputs(n: int, d: int, dtype) -> np.ndarray:
  return np.random.default_rng(0).normal(size=(n, d)).astype(dtype)


def _ours_analytic(x):
  from jaxopt_lab.ntk.analytic import mlp_kernels
  return mlp_kernels(x, depth=DEPTH, activation="relu", sigma_w=SIGMA_W, sigma_b=SIGMA_B)


def analytic_cost(n: int, d: int, dtype: str) -> Cost:
  """The problem's least work: the symmetric input Gram's distinct entries, :math:`N(N+1)d` FLOPs,
  at its precision's peak; the two kernels written once and the inputs read once."""
  itemsize = np.dtype(dtype).itemsize
  return Cost(float(n) * (n + 1) * d, float(2 * n * n * itemsize + n * d * itemsize),
              "float32_highest" if dtype == "float32" else "float64")


def analytic_vs_peer(bench: Bench, cfg: dict, py: str | None, repeats: int, tmp: str) -> None:
  for i, n in enumerate(cfg["sizes"]):
    x = _inputs(n, cfg["d"], np.float32)
    ref = _ours_analytic(jnp.asarray(x, jnp.float64)).ntk
    xj = jnp.asarray(x)
    bench.note(load_avg=_load(), n=n)
    cost = analytic_cost(n, cfg["d"], "float32")
    ours = bench.time(f"jaxopt_lab mlp_kernels N={n}", _ours_analytic, xj, repeats=repeats,
                      extra={"n": n, "d": cfg["d"], "dtype": "float32", "returns": "nngp+ntk"},
                      cost=cost)
    bench.note(which="ours", n=n, vs_float64=_errors(_ours_analytic(xj).ntk, ref))
    if py is None:
      continue
    path = os.path.join(tmp, f"x{n}.npy")
    np.save(path, x)
    base = dict(mode="analytic", x=path, depth=DEPTH, sigma_w=SIGMA_W, sigma_b=SIGMA_B,
                repeats=repeats, budget=120.0)
    res = _subprocess([py, "-c", PEER_SCRIPT], dict(base, out=os.path.join(tmp, "k.npy")),
                      "neural-tangents analytic")
    peer_ntk = np.load(os.path.join(tmp, "k.npy"))
    for name in ("nngp+ntk", "ntk"):
      peer = _timing(f"neural-tangents kernel_fn get={name} N={n}", res[name])
      bench.record(peer, cost=cost, measured_in="peer process", jax=res["jax"])
      bench.compare(ours, peer, label=f"analytic N={n}, peer get={name}", n=n)
    bench.note(which="neural-tangents", n=n, vs_float64=_errors(peer_ntk, ref),
               peak_rss_bytes=res["peak_rss_bytes"])
    if i == 0:  # the float64 reference is the peer's float64 kernel too
      res64 = _subprocess([py, "-c", PEER_SCRIPT],
                          dict(base, x64=True, repeats=0, out=os.path.join(tmp, "k64.npy")),
                          "neural-tangents analytic float64")
      bench.note(check="float64 reference: ours vs neural-tangents, both float64", n=n,
                 jax=res64["jax"], **_errors(ref, np.load(os.path.join(tmp, "k64.npy"))))
    bench.note(load_avg=_load(), n=n)


def analytic_throughput(bench: Bench, cfg: dict, repeats: int) -> None:
  """Ours alone, N up to the memory limit, against the elementwise roofline and the Gram's time."""
  bench.note(roofline=ROOFLINE, precision="HIGHEST (float32 inner products)",
             least_traffic="two N x N kernels written once + the inputs read once")
  for dtype in cfg["dtypes"]:
    for n in cfg["sizes"]:
      x = jnp.asarray(_inputs(n, cfg["d"], np.dtype(dtype)))
      try:
        t = bench.time(f"jaxopt_lab mlp_kernels N={n} {dtype}", _ours_analytic, x,
                       repeats=repeats, extra={"n": n, "dtype": dtype},
                       cost=analytic_cost(n, cfg["d"], dtype))
      except Exception as e:  # noqa: BLE001 (device out of memory ends the sweep for this dtype)
        if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
          bench.note(n=n, dtype=dtype, stopped="out of device memory")
          break
        raise
      itemsize = np.dtype(dtype).itemsize
      least_bytes = 2 * n * n * itemsize + n * cfg["d"] * itemsize
      t_mem = least_bytes / ROOFLINE["bytes_per_s"]
      t_gram = 2 * n * n * cfg["d"] / ROOFLINE["flops_per_s"][dtype]
      bench.note(n=n, dtype=dtype, seconds=t.median, entries_per_s=n * n / t.median,
                 elementwise_roofline_s=t_mem, fraction_of_elementwise_roofline=t_mem / t.median,
                 gram_at_peak_s=t_gram, fraction_of_gram_at_peak=t_gram / t.median)
      del x


# ----------------------------------------------------------------------------------------------
# Empirical.


def _emp_problem(cfg: dict, outputs: int):
  from jaxopt_lab.ntk.networks import MLP
  net = MLP((cfg["d"],) + (cfg["emp_width"],) * (DEPTH - 1) + (outputs,), "relu", sigma_w=SIGMA_W,
            sigma_b=SIGMA_B)
  params = net.init(jax.random.key(1), jnp.float32)
  x = _inputs(cfg["emp_n"], cfg["d"], np.float32)
  return net, params, x


def ours_empirical_worker(cfg: dict) -> dict:
  """In its own process: time one of our methods, its compiled memory, peak RSS, its kernel."""
  from jaxopt_lab.ntk import empirical
  net, params, x = _emp_problem(cfg, cfg["outputs"])
  xj = jnp.asarray(x)
  fn = lambda: empirical.empirical_ntk(net, params, xj, method=cfg["method"])
  t = time_call("", fn, repeats=cfg["repeats"])
  apply, _ = empirical._resolve(net)
  exe = empirical._empirical_jit.lower(params, xj, None, apply=apply, net=net,
                                       method=cfg["method"], output="mean",
                                       batch_size=None).compile()
  compiled = exe.memory_analysis()
  ca = exe.cost_analysis()
  ca = (ca[0] if ca else {}) if isinstance(ca, (list, tuple)) else ca
  np.save(cfg["out"], np.asarray(fn()))
  return {"first": t.first_call, "median": t.median, "min": t.min, "max": t.max,
          "repeats": t.repeats,
          "compiled_bytes": int(compiled.argument_size_in_bytes + compiled.output_size_in_bytes
                                + compiled.temp_size_in_bytes),
          "flops": float(ca.get("flops", 0.0)),
          "bytes_accessed": float(ca.get("bytes accessed", 0.0)),
          "peak_rss_bytes": _peak_rss()}


def _peak_rss() -> int:
  """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's peak, which
  Linux carries over exec)."""
  try:
    with open("/proc/self/status") as f:
      return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
  except (OSError, StopIteration):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def empirical_vs_peer(bench: Bench, cfg: dict, py: str | None, repeats: int, tmp: str) -> None:
  from jaxopt_lab.ntk import empirical
  for outputs in cfg["emp_outputs"]:
    net, params, x = _emp_problem(cfg, outputs)
    with _x64():
      p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
      ref = np.asarray(empirical.empirical_ntk(net, p64, jnp.asarray(x, jnp.float64),
                                               method="structured"))
    xpath, ppath = os.path.join(tmp, f"ex{outputs}.npy"), os.path.join(tmp, f"ep{outputs}.npz")
    np.save(xpath, x)
    np.savez(ppath, **{f"{k}{l}": np.asarray(p[k]) for l, p in enumerate(params) for k in "wb"})
    bench.note(load_avg=_load(), outputs=outputs, n=cfg["emp_n"], width=cfg["emp_width"])
    ours = {}
    num_params = sum(int(np.size(a)) for a in jax.tree.leaves(params))
    jac_bytes = cfg["emp_n"] * outputs * num_params * 4  # float32 (n, O, P) Jacobian
    for method in ("structured", "jacobian"):
      if method == "jacobian" and jac_bytes > JACOBIAN_BUDGET_BYTES:
        # The O = 10 Jacobian alone is 6.9 GB at the default sizes (its worker reached 12.4 GB):
        # over the budget that keeps the default run under 8 GB on a 24 GB machine.
        bench.note(which="ours", method=method, outputs=outputs,
                   skipped=f"the (n, O, P) Jacobian needs {jac_bytes / 1e9:.1f} GB > "
                           f"{JACOBIAN_BUDGET_BYTES / 1e9:.0f} GB budget")
        continue
      out = os.path.join(tmp, "eo.npy")
      res = _subprocess([sys.executable, "-m", "benchmarks.ntk_kernels", "--worker"],
                        dict(cfg, outputs=outputs, method=method, out=out,
                             repeats=repeats if method == "structured" else max(1, repeats // 5)),
                        f"ours {method}")
      t = Timing(f"jaxopt_lab empirical_ntk {method} O={outputs}", res["median"], res["min"],
                 res["max"], res["repeats"], res["first"])
      bench.record(t, cost=Cost(res["flops"], res["bytes_accessed"], "float32_highest",
                                "xla cost analysis (worker process)"),
                   timing="ours", measured_in="own process")
      bench.note(which="ours", method=method, outputs=outputs,
                 vs_float64=_errors(np.load(out), ref), compiled_bytes=res["compiled_bytes"],
                 peak_rss_bytes=res["peak_rss_bytes"])
      ours[method] = t
    if "jacobian" in ours:
      bench.compare(ours["structured"], ours["jacobian"],
                    label=f"empirical O={outputs}: structured vs our Jacobian contraction")
    if py is None:
      continue
    peer = {}
    for impl in PEER_IMPLEMENTATIONS:
      if impl == "JACOBIAN_CONTRACTION" and jac_bytes > JACOBIAN_BUDGET_BYTES:
        bench.note(which="neural-tangents", implementation=impl, outputs=outputs,
                   skipped=f"its Jacobian needs {jac_bytes / 1e9:.1f} GB (same budget as ours)")
        continue
      out = os.path.join(tmp, "ep.npy")
      slow = impl in ("JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "AUTO")
      res = _subprocess([py, "-c", PEER_SCRIPT],
                        dict(mode="empirical", implementation=impl, x=xpath, params=ppath,
                             depth=DEPTH, width=cfg["emp_width"], outputs=outputs,
                             sigma_w=SIGMA_W, sigma_b=SIGMA_B, out=out,
                             repeats=max(1, repeats // 5) if slow else repeats, budget=60.0),
                        f"neural-tangents {impl}")
      if "error" in res:
        bench.note(which="neural-tangents", implementation=impl, outputs=outputs,
                   error=res["error"], jax=res["jax"])
        continue
      t = _timing(f"neural-tangents {impl} O={outputs}", res)
      bench.note(timing="peer", measured_in="peer process", jax=res["jax"],
                 **dataclasses.asdict(t))
      # Its trace_axes average over the outputs, as our default output="mean" does.
      bench.note(which="neural-tangents", implementation=impl, outputs=outputs,
                 vs_float64=_errors(np.load(out).astype(np.float64), ref),
                 compiled_bytes=res["compiled_bytes"],
                 peak_rss_bytes=res["peak_rss_bytes"])
      peer[impl] = t
    if peer:
      fastest = min(peer.values(), key=lambda t: t.median)
      bench.compare(ours["structured"], fastest,
                    label=f"empirical O={outputs}: vs neural-tangents' fastest")
    bench.note(load_avg=_load(), outputs=outputs)


class _x64:
  """jax_enable_x64 for a block (the config flag, restored after)."""

  def __enter__(self):
    self.old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)

  def __exit__(self, *exc):
    jax.config.update("jax_enable_x64", self.old)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
  p.add_argument("--venv", default=os.path.join(os.path.expanduser("~"), ".cache", "jaxopt_lab",
                                                "neural_tangents_0.6.5_venv"))
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--sizes", default="", help="comma-separated N, overriding the preset's")
  p.add_argument("--part", choices=["all", "analytic", "empirical"], default="all")
  p.add_argument("--skip-peer", action="store_true", help="time ours only")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  args, rest = p.parse_known_args(argv)
  if args.worker:
    print("RESULT " + json.dumps(ours_empirical_worker(json.loads(rest[0]))))
    return
  if rest:
    p.error(f"unrecognized arguments: {rest}")
  if args.repeats < 1:
    p.error("--repeats: expected >= 1")
  cfg = dict(PRESETS[args.preset])
  if args.sizes:
    cfg["sizes"] = [int(s) for s in args.sizes.split(",")]
  bench = Bench("ntk_kernels", roofline="tiny" if args.preset == "tiny" else "full")
  bench.note(preset=args.preset, depth=DEPTH, sigma_w=SIGMA_W, sigma_b=SIGMA_B, load_avg=_load(),
             **{k: v for k, v in cfg.items() if k not in ("peer", "empirical")})
  py = None
  if cfg["peer"] and not args.skip_peer:
    py = ensure_venv(args.venv)
  with tempfile.TemporaryDirectory() as tmp:
    if args.part in ("all", "analytic"):
      if args.preset == "gpu":
        with _x64():
          analytic_throughput(bench, cfg, args.repeats)
      else:
        with _x64():  # for the float64 reference; the timed kernels are float32
          analytic_vs_peer(bench, cfg, py, args.repeats, tmp)
    if args.part in ("all", "empirical") and cfg["empirical"]:
      empirical_vs_peer(bench, cfg, py, args.repeats, tmp)


if __name__ == "__main__":
  main()
