"""Timing harness for benchmarks: compile excluded, results blocked on, median of repeats, JSON lines.

Every benchmark times our function and a baseline *in the same run on the same machine* and prints the
ratio; absolute times are only meaningful together with the machine record printed with them.

    from benchmarks.harness import Bench
    bench = Bench("matrix_sensing_sweep")
    ours = bench.time("vmapped", fn, *args)
    base = bench.time("python loop", loop, *args)
    bench.compare(ours, base, label="seeds=64")
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
  """Collects timings of one benchmark and prints them as JSON lines (one per timing / comparison)."""

  def __init__(self, benchmark: str, out=None):
    self.benchmark = benchmark
    self.machine = machine()
    self.out = out or sys.stdout
    self._emit({"kind": "machine", **self.machine})

  def _emit(self, record: dict[str, Any]) -> None:
    print(json.dumps({"benchmark": self.benchmark, **record}), file=self.out, flush=True)

  def time(self, name: str, fn: Callable[..., Any], *args, repeats: int = 5, min_seconds: float = 0.0,
           extra: dict[str, Any] | None = None, **kwargs) -> Timing:
    """Times ``fn(*args, **kwargs)`` (see :func:`time_call`) and prints the record."""
    t = time_call(name, fn, *args, repeats=repeats, min_seconds=min_seconds, **kwargs)
    self._emit({"kind": "timing", **dataclasses.asdict(t), **(extra or {})})
    return t

  def compare(self, ours: Timing, baseline: Timing, label: str = "", **extra) -> float:
    """Prints and returns ``baseline.median / ours.median`` (> 1: ours is faster)."""
    ratio = baseline.median / ours.median
    self._emit({"kind": "ratio", "label": label, "ours": ours.name, "baseline": baseline.name,
                "ours_s": ours.median, "baseline_s": baseline.median, "speedup": ratio, **extra})
    return ratio

  def note(self, **record) -> None:
    """Prints a free-form record (e.g. memory, accuracy)."""
    self._emit({"kind": "note", **record})
