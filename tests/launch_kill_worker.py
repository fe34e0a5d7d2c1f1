"""Subprocess for the kill-during-write tests: runs a launcher config, SIGKILLing itself at a chosen write.

    python tests/launch_kill_worker.py WORKDIR [NAME[#N]:fsync|replace|hold]

``metrics.csv:partial`` kills in the middle of the first write into metrics.csv (or its temporary
copy), half of it on disk; ``:fsync`` kills once the temporary copy is written but before it is moved
into place; ``:replace`` kills just before the move; ``#N`` picks the N-th file of that name
(status.json is written twice a run); ``:hold`` sleeps at the move instead, holding the workdir's lock.
"""

import builtins
import collections
import os
import signal
import sys
import time

from tests.test_launch import ms_config, small_sweep  # pylint: disable=g-import-not-at-top

from launch import experiment  # pylint: disable=g-import-not-at-top


class _Hit(Exception):
  pass


def main():
  workdir = sys.argv[1]
  if len(sys.argv) > 2:
    target, mode = sys.argv[2].rsplit(":", 1)
    name, _, nth = target.partition("#")
    nth = int(nth or 1)
    seen = collections.Counter()

    def hit(path):
      base = os.path.basename(path)
      base = base[1:].split(".tmp-")[0] if ".tmp-" in base else base
      if base != name:
        return
      seen[name] += 1
      if seen[name] != nth:
        return
      if mode == "hold":
        print("holding", flush=True)
        time.sleep(600)
      if mode == "partial":
        raise _Hit
      os.kill(os.getpid(), signal.SIGKILL)

    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
      real_fsync(fd)
      if mode == "fsync":
        hit(os.readlink(f"/proc/self/fd/{fd}"))

    def replace(src, dst, *a, **k):
      if mode in ("replace", "hold"):
        hit(dst)
      return real_replace(src, dst, *a, **k)

    real_open = builtins.open

    class HalfWriter:
      """A file whose first write puts half its data on disk, then the process dies."""

      def __init__(self, f):
        self._f = f

      def write(self, data):
        self._f.write(data[:max(len(data) // 2, 1)])
        self._f.flush()
        real_fsync(self._f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

      def __getattr__(self, attr):
        return getattr(self._f, attr)

      def __enter__(self):
        return self

      def __exit__(self, *exc):
        return self._f.__exit__(*exc)

    def open_(file, mode="r", *a, **k):
      f = real_open(file, mode, *a, **k)
      if mode_ == "partial" and any(c in mode for c in "wax") and isinstance(file, str):
        try:
          hit(file)
        except _Hit:
          return HalfWriter(f)
      return f

    mode_ = mode
    os.fsync, os.replace, builtins.open = fsync, replace, open_
  experiment.run_config(small_sweep(ms_config()), workdir)


if __name__ == "__main__":
  main()
