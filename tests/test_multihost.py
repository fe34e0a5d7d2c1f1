"""Two CPU processes joined by jax.distributed run one sharded sweep equal to a single-process one."""

import os
import socket
import subprocess
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

from jaxopt_lab.engine.sweep import sweep
from tests.multihost_worker import PROBLEM, SWEEP
from tests.toy import TOY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


class MultiHostTest(absltest.TestCase):

  def _launch(self, d, tag):
    port = _free_port()
    procs = []
    for pid in range(2):
      env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
                 JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(pid))
      procs.append(subprocess.Popen(
          [sys.executable, os.path.join(REPO, "tests", "multihost_worker.py"),
           os.path.join(d, f"{tag}{pid}.npz"), os.path.join(d, "ck")],
          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
      out, _ = p.communicate(timeout=240)
      self.assertEqual(p.returncode, 0, out[-3000:])
    return [np.load(os.path.join(d, f"{tag}{pid}.npz")) for pid in range(2)]

  def test_two_processes_equal_one_and_resume(self):
    single = sweep(TOY, jnp.array(PROBLEM), on_chunk=None, **SWEEP)  # 4 forced devices, one process
    with tempfile.TemporaryDirectory() as d:
      first = self._launch(d, "a")
      again = self._launch(d, "b")  # same checkpoint dir: resumes past the last chunk
    for r in first + again:
      np.testing.assert_array_equal(r["loss"], single.metrics["loss"])
      np.testing.assert_array_equal(r["x"], single.final_state.inner.x)
    self.assertEqual([int(r["resumed"]) for r in first], [-1, -1])
    self.assertEqual([int(r["resumed"]) for r in again], [2, 2])  # both chunks were already done


if __name__ == "__main__":
  absltest.main()
