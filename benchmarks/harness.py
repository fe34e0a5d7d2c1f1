r"""Timing harness for benchmarks: compile excluded, results blocked on, median of repeats, JSON lines.

Every benchmark times our function and a baseline *in the same run on the same machine* and prints the
ratio; absolute times are only meaningful together with the machine record printed with them.

Each timing can also carry its work, a :class:`Cost` (FLOPs and bytes moved, counted from the
algorithm or from XLA's cost analysis of the compiled function, :func:`xla_cost`), and is then
stated against the machine's roofline measured *in the same process* (:func:`peaks`: the
achievable matmul rate per precision and the bandwidth of a large elementwise pass, once per
process):

.. math:: \text{roofline fraction} = \max(\text{flops} / \text{peak flops},
          \ \text{bytes} / \text{peak bandwidth}) / \text{measured time}.

    from benchmarks.harness import Bench, xla_cost
    bench = Bench("matrix_sensing_sweep")
    ours = bench.time("vmapped", fn, *args, cost=xla_cost(fn, *args))
    base = bench.time("python loop", loop, *args)
    bench.compare(ours, base, label="seeds=64")   # the ratio, with ours' roofline fraction
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def peer_venv(venv: str, probe: str, installs: list[list[str]]) -> str:
  """The python of a peer library's own venv at ``venv``, built when ``probe`` fails to run there.

  Args:
    venv: the venv directory.
    probe: Python source that imports (and may assert versions of) what the peer needs.
    installs: ``pip install`` argument lists, run in order in a fresh venv (e.g. torch first, then a
      peer with ``--no-deps`` so it cannot pull another torch).
  """
  py = os.path.join(venv, "bin", "python")
  if os.path.exists(py) and subprocess.run([py, "-c", probe], capture_output=True).returncode == 0:
    return py
  subprocess.run([sys.executable, "-m", "venv", venv], check=True)
  for args in installs:
    subprocess.run([py, "-m", "pip", "install", "-q", *args], check=True)
  return py


RESULT = "RESULT "  # prefix of the one JSON line a peer or worker process prints as its result


def run_result(cmd: list[str], what: str, env: dict[str, str] | None = None,
               cwd: str | None = None) -> dict[str, Any]:
  """Runs ``cmd`` and returns the JSON after its last ``RESULT `` line; raises with its stderr."""
  out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
  lines = [l for l in out.stdout.splitlines() if l.startswith(RESULT)]
  if out.returncode != 0 or not lines:
    raise RuntimeError(f"{what} failed:\n{out.stderr[-3000:]}")
  return json.loads(lines[-1][len(RESULT):])


def machine() -> dict[str, Any]:
  """What the timings were measured on: host, CPU count, JAX backend and device kind."""
  dev = jax.devices()[0]
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
  except OSError:
    pass
  return {"host": platform.node(), "cpu": cpu, "cpu_count": os.cpu_count(), "backend": dev.platform,
          "device": dev.device_kind, "num_devices": jax.device_count(), "jax": jax.__version__,
          "python": platform.python_version()}


# ----------------------------------------------------------------------------------------------
# Roofline: the machine's achievable rates, measured in the same process as the timings.

# Square matmul sides (the peak is the best of them) and elementwise-pass elements per backend
# ("full") and for smoke tests ("tiny"). CPU: up to 4096^3 float32 and 2048^3 float64 as in
# shared/docs/roofline.md, and 1024^3, which fits the caches and on the 2-core VM is as fast or
# faster (a benchmark's 1000 x 784 x 1024 GEMMs beat the 4096^3 rate); GPU: 8192^3 (4096^3 float64)
# and a 16384^2 float32 elementwise pass, as there.
_PEAK_SIZES = {
    "cpu": dict(float32=(1024, 2048, 4096), float64=(1024, 2048), elementwise=2 ** 25),
    "gpu": dict(float32=(4096, 8192), float64=(4096,), elementwise=2 ** 28),
    "tiny": dict(float32=(256,), float64=(256,), elementwise=2 ** 20),
}


def _best_seconds(fn: Callable[[], Any], repeats: int, budget_s: float) -> float:
  block(fn())  # compile and warm up
  best = float("inf")
  spent = 0.0
  for _ in range(repeats):
    t0 = time.perf_counter()
    block(fn())
    dt = time.perf_counter() - t0
    best, spent = min(best, dt), spent + dt
    if spent > budget_s:
      break
  return best


def gemm_rate(m: int, k: int, n: int, dtype: Any = jnp.float32, precision: Any = None,
              repeats: int = 5, budget_s: float = 2.0) -> float:
  """Achievable FLOP/s of one jitted ``(m, k) @ (k, n)`` product (best of up to ``repeats`` calls).

  The square case is the roofline's peak; a benchmark whose GEMMs are skinny (a batch of 64 rows)
  can state its rate against this at its own shapes too.
  """
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (m, k), jnp.float32).astype(dtype)
  b = jax.random.normal(kb, (k, n), jnp.float32).astype(dtype)
  f = jax.jit(lambda a, b: jnp.matmul(a, b, precision=precision))
  return 2.0 * m * k * n / _best_seconds(lambda: f(a, b), repeats, budget_s)


def _matmul_rate(sides: tuple[int, ...], dtype: Any, precision: Any = None) -> float:
  return max(gemm_rate(n, n, n, dtype, precision) for n in sides)


def _bandwidth(elements: int, repeats: int = 5, budget_s: float = 2.0) -> float:
  # One read and one write of a float32 array (the ReLU arc-cosine-like step of roofline.md), in
  # place: without donation a fresh output buffer per call measures page faults, not memory (on the
  # 2-core CPU: 2 GB/s instead of 12-19 GB/s).
  f = jax.jit(lambda x: jnp.maximum(x, 0.0) * 1.5 + 0.1, donate_argnums=0)
  state = [jax.random.normal(jax.random.key(0), (elements,), jnp.float32)]

  def step():
    state[0] = f(state[0])
    return state[0]

  return 2.0 * 4 * elements / _best_seconds(step, repeats, budget_s)


_PEAKS: dict[str, dict[str, Any]] = {}  # per size: the best rates measured in this process
MAX_REFRESHES = 2  # re-measurements of the peaks per process when an entry beats them


def peaks(size: str = "full", refresh: bool = False) -> dict[str, Any]:
  """The default device's achievable rates, measured once per process (best of up to 5 calls).

  On a shared machine a peak measured under load is too low, and a later entry then beats it (a
  fraction above 1); :func:`roofline` then calls this with ``refresh=True``, which measures again
  and keeps the better of the two for each rate (``refreshes`` counts these).

  Args:
    size: ``"full"`` (the backend's sizes of shared/docs/roofline.md) or ``"tiny"`` (256^3 matmuls
      and a 2^20-element pass: seconds, for smoke tests; it underestimates the peaks).
    refresh: measure again, keeping the per-rate maximum.

  Returns:
    ``flops_per_s``: matmul FLOP/s by precision: ``float32`` (default precision: TF32 on NVIDIA
    GPUs), ``float32_highest``, ``float64`` and, on accelerators, ``bfloat16``; ``bytes_per_s``:
    bandwidth of a large elementwise pass (one read, one write); the sizes used.
  """
  if size not in ("full", "tiny"):
    raise ValueError(f"size: expected 'full' or 'tiny', got {size!r}")
  if size in _PEAKS and not refresh:
    return _PEAKS[size]
  backend = jax.default_backend()
  sizes = _PEAK_SIZES["tiny" if size == "tiny" else ("cpu" if backend == "cpu" else "gpu")]
  t0 = time.perf_counter()
  flops = {"float32": _matmul_rate(sizes["float32"], jnp.float32)}
  if backend == "cpu":  # XLA:CPU ignores the precision flag: HIGHEST is the default there
    flops["float32_highest"] = flops["float32"]
  else:
    flops["float32_highest"] = _matmul_rate(sizes["float32"], jnp.float32,
                                            jax.lax.Precision.HIGHEST)
    flops["bfloat16"] = _matmul_rate(sizes["float32"], jnp.bfloat16)
  with jax.enable_x64(True):
    flops["float64"] = _matmul_rate(sizes["float64"], jnp.float64)
  bandwidth = _bandwidth(sizes["elementwise"])
  old = _PEAKS.get(size)
  if old is not None:
    flops = {k: max(v, old["flops_per_s"][k]) for k, v in flops.items()}
    bandwidth = max(bandwidth, old["bytes_per_s"])
  _PEAKS[size] = {"flops_per_s": flops, "bytes_per_s": bandwidth, "sizes": sizes,
                  "backend": backend, "seconds_to_measure": time.perf_counter() - t0,
                  "refreshes": 0 if old is None else old["refreshes"] + 1}
  return _PEAKS[size]


@dataclasses.dataclass(frozen=True)
class Cost:
  """The work of one timed call: FLOPs, bytes moved, the matmul peak that bounds it, where counted.

  ``peak`` names an entry of ``peaks()["flops_per_s"]`` (``float32``: default precision,
  ``float32_highest``, ``float64``, ``bfloat16``). ``source`` says how it was counted: from the
  algorithm (bytes: the compulsory traffic, a lower bound) or from XLA's cost analysis (bytes: every
  HLO op's operands and results: an upper bound on memory traffic when the working set fits in
  cache).
  """

  flops: float
  bytes: float
  peak: str = "float32"
  source: str = "algorithm"

  def __mul__(self, k: float) -> "Cost":
    return dataclasses.replace(self, flops=self.flops * k, bytes=self.bytes * k)

  __rmul__ = __mul__

  def __add__(self, other: "Cost") -> "Cost":
    return dataclasses.replace(self, flops=self.flops + other.flops, bytes=self.bytes + other.bytes)


def xla_cost(fn: Callable[..., Any], *args, peak: str = "float32", **kwargs) -> Cost:
  """FLOPs and bytes accessed of ``jax.jit(fn)(*args, **kwargs)`` from XLA's cost analysis.

  XLA counts a loop's body once (not times its trip count): for a ``scan`` of T steps, take the cost
  of one step and multiply (``Cost * T``).
  """
  compiled = jax.jit(fn).lower(*args, **kwargs).compile()
  ca = compiled.cost_analysis()
  if isinstance(ca, (list, tuple)):  # older JAX: one dict per computation
    ca = ca[0] if ca else {}
  return Cost(float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0)), peak,
              "xla cost analysis")



def run_cost(algorithm: Any, keys: jax.Array, problem: Any, hp: dict[str, Any], *, num_steps: int,
             record_every: int, in_axes: tuple[Any, Any, Any] = (0, None, None),
             peak: str = "float32") -> Cost:
  """XLA's cost of ``vmap(engine.run)`` over ``keys``: init + ``num_steps`` steps + the records.

  Each piece is compiled alone (XLA counts a scan's body once): the vmapped init, one vmapped step
  with its metrics dropped (what the ``record_every - 1`` unrecorded steps cost) times
  ``num_steps``,
  and the metrics of one step times the number of records. ``in_axes`` as for ``vmap(run)`` over
  ``(keys, problem, hp)``.
  """
  from jaxopt_lab.engine.run import check_schedule  # pylint: disable=g-import-not-at-top

  init = jax.vmap(lambda k, p, h: algorithm.call_init(k, p, h), in_axes=in_axes)
  states = jax.eval_shape(init, keys, problem, hp)
  step = lambda s, p, h: algorithm.call_step(s, p, h)
  vstep = jax.vmap(step, in_axes=(0, *in_axes[1:]))
  c_init = xla_cost(init, keys, problem, hp, peak=peak)
  c_step = xla_cost(lambda s, p, h: vstep(s, p, h)[0], states, problem, hp, peak=peak)
  c_full = xla_cost(vstep, states, problem, hp, peak=peak)
  check_schedule(num_steps, record_every)
  metrics = dataclasses.replace(c_full, flops=max(c_full.flops - c_step.flops, 0.0),
                                bytes=max(c_full.bytes - c_step.bytes, 0.0))
  return c_init + c_step * num_steps + metrics * (num_steps // record_every)

def roofline(seconds: float, cost: Cost, size: str = "full") -> dict[str, Any]:
  """``cost`` done in ``seconds`` against :func:`peaks`: achieved rates and roofline fractions.

  A compute fraction above 1 means the peak was measured under heavier load than the entry: the
  peaks are measured again (at most ``MAX_REFRESHES`` times per process) and the better kept. (A
  memory fraction above 1 from XLA's byte count is a cache-resident working set, not a bad peak.)
  """
  pk = peaks(size)
  if cost.peak not in pk["flops_per_s"]:
    raise ValueError(f"cost.peak: expected one of {sorted(pk['flops_per_s'])}, got {cost.peak!r}")
  if cost.flops / pk["flops_per_s"][cost.peak] > seconds and pk["refreshes"] < MAX_REFRESHES:
    pk = peaks(size, refresh=True)
  peak_flops, peak_bw = pk["flops_per_s"][cost.peak], pk["bytes_per_s"]
  t_compute, t_memory = cost.flops / peak_flops, cost.bytes / peak_bw
  return {"flops": cost.flops, "bytes": cost.bytes, "cost_source": cost.source,
          "peak": cost.peak, "peak_flops_per_s": peak_flops, "peak_bytes_per_s": peak_bw,
          "flops_per_s": cost.flops / seconds, "bytes_per_s": cost.bytes / seconds,
          "compute_fraction": t_compute / seconds, "memory_fraction": t_memory / seconds,
          "roofline_fraction": max(t_compute, t_memory) / seconds,
          "bound": "compute" if t_compute >= t_memory else "memory",
          "peak_refreshes": pk["refreshes"],
          # XLA's bytes count every op's operands: above the bandwidth, the data stayed in cache.
          **({"cache_resident": True} if t_memory > seconds else {})}


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds per call: median, min and max over ``repeats`` timed calls, and the first call's time."""

  name: str
  median: float
  min: float
  max: float
  repeats: int
  first_call: float


def block(x: Any) -> Any:
  """Waits for every array in ``x`` (jax or numpy) to be computed."""
  return jax.block_until_ready(x)


def time_call(name: str, fn: Callable[..., Any], *args, repeats: int = 5, min_seconds: float = 0.0,
              **kwargs) -> Timing:
  """Times ``fn(*args)``: one untimed warm-up call (compilation), then ``repeats`` blocked calls.

  With ``min_seconds`` > 0, repeats are added until their total reaches it (for very short calls).
  """
  t0 = time.perf_counter()
  block(fn(*args, **kwargs))
  first = time.perf_counter() - t0
  times: list[float] = []
  while len(times) < repeats or sum(times) < min_seconds:
    t0 = time.perf_counter()
    block(fn(*args, **kwargs))
    times.append(time.perf_counter() - t0)
  return Timing(name, statistics.median(times), min(times), max(times), len(times), first)


class Bench:
  """Collects timings of one benchmark and prints them as JSON lines (one per timing / comparison).

  The first lines are the machine and its roofline (:func:`peaks`, measured now unless this process
  already did); ``roofline="tiny"`` measures it at smoke-test sizes (``None``: not at all). Where an
  entry beats the peaks (measured under heavier load), they are measured again and printed again:
  the last ``roofline`` line holds the best rates seen.
  """

  def __init__(self, benchmark: str, out=None, roofline: str | None = "full"):
    self.benchmark = benchmark
    self.machine = machine()
    self.out = out or sys.stdout
    self.roofline_size = roofline
    self._rooflines: dict[str, dict[str, Any]] = {}
    self._emit({"kind": "machine", **self.machine})
    self._refreshes = 0
    if roofline is not None:
      pk = peaks(roofline)
      self._refreshes = pk["refreshes"]
      self._emit({"kind": "roofline", **pk})

  def _emit(self, record: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": self.benchmark, **record}), file=self.out, flush=True)

  def roofline(self, timing: Timing, cost: Cost | None) -> dict[str, Any]:
    """The roofline fields of ``timing`` doing ``cost`` (empty without a cost or a roofline)."""
    if cost is None or self.roofline_size is None:
      return {}
    rec = roofline(timing.median, cost, self.roofline_size)
    self._rooflines[timing.name] = rec
    if rec["peak_refreshes"] > self._refreshes:  # the peaks were measured again: print them
      self._refreshes = rec["peak_refreshes"]
      self._emit({"kind": "roofline", **peaks(self.roofline_size)})
    return rec

  def time(self, name: str, fn: Callable[..., Any], *args, repeats: int = 5,
           min_seconds: float = 0.0, extra: dict[str, Any] | None = None, cost: Cost | None = None,
           **kwargs) -> Timing:
    """Times ``fn(*args, **kwargs)`` (see :func:`time_call`) and prints the record.

    With ``cost``, the record also holds the FLOPs, bytes and roofline fraction (:func:`roofline`).
    """
    t = time_call(name, fn, *args, repeats=repeats, min_seconds=min_seconds, **kwargs)
    self.record(t, cost=cost, **(extra or {}))
    return t

  def record(self, timing: Timing, /, cost: Cost | None = None, **extra) -> None:
    """Prints a timing measured elsewhere (e.g. a peer's process), with its roofline if costed."""
    self._emit({"kind": "timing", **dataclasses.asdict(timing), **self.roofline(timing, cost),
                **extra})

  def compare(self, ours: Timing, baseline: Timing, label: str = "", **extra) -> float:
    """Prints and returns ``baseline.median / ours.median`` (> 1: ours is faster), with the roofline
    fractions of both where their costs were given."""
    ratio = baseline.median / ours.median
    fractions = {f"{side}_roofline_fraction": self._rooflines[t.name]["roofline_fraction"]
                 for side, t in (("ours", ours), ("baseline", baseline))
                 if t.name in self._rooflines}
    self._emit({"kind": "ratio", "label": label, "ours": ours.name, "baseline": baseline.name,
                "ours_s": ours.median, "baseline_s": baseline.median, "speedup": ratio,
                **fractions, **extra})
    return ratio

  def note(self, **record) -> None:
    """Prints a free-form record (e.g. memory, accuracy)."""
    self._emit({"kind": "note", **record})
