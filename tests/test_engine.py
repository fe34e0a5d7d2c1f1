"""Tests of the run/sweep engine: scan records, vmap = loop, sharding, chunks, divergence, checkpoints."""

import functools
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from unittest import mock

from jaxopt_lab.engine import Algorithm, run
from jaxopt_lab.engine import checkpoint as ckpt
from jaxopt_lab.engine.sweep import sweep
from tests.toy import TOY, toy_init, toy_step

A = jnp.array([1.0, 2.0, 4.0])
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RunTest(parameterized.TestCase):

  def test_records_match_python_loop(self):
    hp = {"lr": 0.1, "scale": 1.0}
    state, m = jax.jit(functools.partial(run, TOY, num_steps=12, record_every=4))(
        jax.random.key(3), A, hp)
    s = toy_init(jax.random.key(3), A, scale=1.0)
    losses = []
    for _ in range(12):
      s, mm = toy_step(s, A, lr=0.1)
      losses.append(mm["loss"])
    np.testing.assert_allclose(m["loss"], np.array(losses)[3::4], rtol=1e-12)
    np.testing.assert_array_equal(m["step"], [4, 8, 12])
    np.testing.assert_allclose(state.inner.x, s.x, rtol=1e-12)
    self.assertEqual(int(state.diverged_at), -1)

  @parameterized.parameters(jnp.float32, jnp.float64)
  def test_dtype_stable_through_scan(self, dtype):
    state, m = run(TOY, jax.random.key(0), A.astype(dtype), {"lr": 0.1, "scale": 1.0},
                   num_steps=4, record_every=2)
    self.assertEqual(state.inner.x.dtype, dtype)
    self.assertEqual(m["loss"].dtype, dtype)
    self.assertEqual(state.step.dtype, jnp.int32)

  def test_divergence_step_is_exact(self):
    # A state that turns non-finite exactly after step `blowup` (a traced hyperparameter).
    def init(key, problem, *, blowup):
      del key, blowup
      return (problem, jnp.zeros((), jnp.int32))

    def step(state, problem, *, blowup):
      x, t = state
      x = jnp.where(t + 1 >= blowup, jnp.inf, x + problem)
      return (x, t + 1), {"x": x[0]}

    alg = Algorithm("blowup", init, step)
    for blowup, expected in [(37, 37), (1, 1), (500, -1)]:
      state, _ = run(alg, jax.random.key(0), A, {"blowup": blowup}, num_steps=100, record_every=10)
      self.assertEqual(int(state.diverged_at), expected)

  def test_bad_schedule_and_hyperparams(self):
    with self.assertRaisesRegex(ValueError, "multiple of record_every"):
      run(TOY, jax.random.key(0), A, {"lr": 0.1, "scale": 1.0}, num_steps=10, record_every=3)
    with self.assertRaisesRegex(ValueError, r"unknown hyperparameter\(s\) \['lrr'\]"):
      sweep(TOY, A, seeds=[0], hp={"lrr": 0.1, "scale": 1.0}, num_steps=2, on_chunk=None)
    with self.assertRaisesRegex(ValueError, r"missing hyperparameter\(s\) \['lr'\]"):
      sweep(TOY, A, seeds=[0], hp={"scale": 1.0}, num_steps=2, on_chunk=None)
    with self.assertRaisesRegex(ValueError, "finite numbers"):
      sweep(TOY, A, seeds=[0], hp={"lr": float("nan"), "scale": 1.0}, num_steps=2, on_chunk=None)
    with self.assertRaisesRegex(ValueError, "seeds"):
      sweep(TOY, A, seeds=[], hp={"lr": 0.1, "scale": 1.0}, num_steps=2, on_chunk=None)


class SweepTest(parameterized.TestCase):

  HP = {"lr": [0.1, 0.3, 0.6], "scale": [0.5, 2.0], "noise": 0.05}

  def _sweep(self, **kw):
    args = dict(seeds=[0, 1, 5], hp=self.HP, num_steps=40, record_every=5, on_chunk=None)
    args.update(kw)
    return sweep(TOY, A, **args)

  def test_sweep_equals_loop_over_runs(self):
    res = self._sweep()
    self.assertEqual(res.metrics["loss"].shape, (3, 3, 2, 8))
    one = jax.jit(functools.partial(run, TOY, num_steps=40, record_every=5))
    for i, seed in enumerate([0, 1, 5]):
      for j, lr in enumerate(self.HP["lr"]):
        for k, scale in enumerate(self.HP["scale"]):
          _, m = one(jax.random.key(seed), A, {"lr": lr, "scale": scale, "noise": 0.05})
          np.testing.assert_allclose(res.metrics["loss"][i, j, k], m["loss"], rtol=1e-12)
    np.testing.assert_array_equal(res.steps, np.arange(5, 41, 5))

  def test_sharded_equals_unsharded_bitwise(self):
    self.assertGreaterEqual(jax.device_count(), 2, "tests/conftest.py forces 4 host devices")
    sharded = self._sweep()  # 18 runs padded to 20 over 4 devices
    single = self._sweep(devices=jax.devices()[:1])
    for name in sharded.metrics:
      np.testing.assert_array_equal(sharded.metrics[name], single.metrics[name])

  def test_chunked_equals_one_chunk_bitwise(self):
    whole = self._sweep()
    chunked = self._sweep(chunk_steps=15)  # 15 + 15 + 10: exercises a shorter last chunk
    for name in whole.metrics:
      np.testing.assert_array_equal(whole.metrics[name], chunked.metrics[name])
    np.testing.assert_array_equal(whole.final_state.inner.x, chunked.final_state.inner.x)

  def test_divergence_reported_per_run_and_others_finish(self):
    res = sweep(TOY, A.astype(jnp.float32), seeds=[0, 1], hp={"lr": [0.1, 1.0], "scale": 1.0},
                num_steps=200, record_every=10, on_chunk=None)
    self.assertTrue(np.all(res.diverged_at[:, 1] > 0))
    np.testing.assert_array_equal(res.diverged_at[:, 0], [-1, -1])
    self.assertTrue(np.all(np.isfinite(res.metrics["loss"][:, 0])))
    rows = [r for r in res.runs() if r["diverged_at"] >= 0]
    self.assertEqual({r["lr"] for r in rows}, {1.0})

  def test_compiles_once_per_chunk_shape(self):
    traces = []

    def counting_step(state, problem, *, lr, noise=0.01):
      traces.append(1)
      return toy_step(state, problem, lr=lr, noise=noise)

    alg = Algorithm("counting", toy_init, counting_step)
    kw = dict(seeds=[0, 1], hp={"lr": [0.1, 0.2], "scale": 1.0}, num_steps=40, record_every=5,
              on_chunk=None)
    sweep(alg, A, chunk_steps=10, **kw)
    n_four_chunks = len(traces)
    # A shape-only trace and one compile, each tracing the step twice (unrecorded and recorded steps).
    self.assertLessEqual(n_four_chunks, 4)
    traces.clear()
    sweep(alg, A, chunk_steps=5, **kw)
    self.assertLessEqual(len(traces), n_four_chunks // 2)  # eight chunks of a new length: one new compile
    traces.clear()
    # An equal algorithm built again (e.g. in a loop over configs) reuses the compiled sweep.
    sweep(Algorithm("counting", toy_init, counting_step), A, chunk_steps=5, **dict(kw, seeds=[3, 4]))
    self.assertEmpty(traces)
    # Rebuilt partials with equal bound arguments count as the same algorithm; other arguments do not.
    partial_alg = lambda noise: Algorithm("p", toy_init, functools.partial(counting_step, noise=noise))
    sweep(partial_alg(0.02), A, chunk_steps=5, **kw)
    n_partial = len(traces)
    sweep(partial_alg(0.02), A, chunk_steps=5, **kw)
    self.assertLen(traces, n_partial)
    sweep(partial_alg(0.03), A, chunk_steps=5, **kw)
    self.assertGreater(len(traces), n_partial)


class CheckpointTest(parameterized.TestCase):

  def test_resume_after_completion_is_identical_and_mismatch_refused(self):
    kw = dict(seeds=[0, 1], hp={"lr": [0.1, 0.2], "scale": 1.0}, num_steps=40, record_every=5,
              chunk_steps=10, on_chunk=None)
    with tempfile.TemporaryDirectory() as d:
      first = sweep(TOY, A, checkpoint_dir=d, **kw)
      again = sweep(TOY, A, checkpoint_dir=d, **kw)
      self.assertEqual(again.resumed_from_chunk, 4)
      np.testing.assert_array_equal(first.metrics["loss"], again.metrics["loss"])
      np.testing.assert_array_equal(first.final_state.inner.key, again.final_state.inner.key)
      other = dict(kw, hp={"lr": [0.1, 0.3], "scale": 1.0})
      with self.assertRaisesRegex(ValueError, r"different sweep \(differs in \['grid.lr'\]\)"):
        sweep(TOY, A, checkpoint_dir=d, **other)

  def test_fingerprint_refuses_other_problem_algorithm_or_code(self):
    kw = dict(seeds=[0, 1], hp={"lr": 0.1, "scale": 1.0}, num_steps=20, record_every=5,
              chunk_steps=10, on_chunk=None)
    noisy = lambda noise: Algorithm("toy_sgd", toy_init, functools.partial(toy_step, noise=noise))
    with tempfile.TemporaryDirectory() as d:
      first = sweep(noisy(0.01), A, checkpoint_dir=d, **kw)
      for alg, problem, differs in [(noisy(0.01), A + 1.0, "problem"),  # same shapes, other values
                                    (noisy(0.02), A, "algorithm.step")]:  # other static setting
        with self.assertRaisesRegex(ckpt.CheckpointMismatch, rf"\['{differs}'\].*restart=True"):
          sweep(alg, problem, checkpoint_dir=d, **kw)
      code = dict(ckpt.code_fingerprint(), source_sha256="0" * 64)  # the library's code changed
      with mock.patch.object(ckpt, "code_fingerprint", return_value=code), \
          self.assertRaisesRegex(ckpt.CheckpointMismatch, r"\['code.source_sha256'\]"):
        sweep(noisy(0.01), A, checkpoint_dir=d, **kw)
      code = dict(ckpt.code_fingerprint(), git_revision="another commit")  # recorded, not compared
      with mock.patch.object(ckpt, "code_fingerprint", return_value=code):
        self.assertEqual(sweep(noisy(0.01), A, checkpoint_dir=d, **kw).resumed_from_chunk, 2)
      fresh = sweep(noisy(0.02), A, checkpoint_dir=d, restart=True, **kw)
      self.assertIsNone(fresh.resumed_from_chunk)
      self.assertFalse((fresh.metrics["loss"] == first.metrics["loss"]).all())
      self.assertEqual(sweep(noisy(0.02), A, checkpoint_dir=d, **kw).resumed_from_chunk, 2)

  def test_corrupted_latest_checkpoint_falls_back_then_errors(self):
    kw = dict(seeds=[0, 1], hp={"lr": 0.1, "scale": 1.0}, num_steps=30, record_every=5,
              chunk_steps=10, on_chunk=None)
    with tempfile.TemporaryDirectory() as d:
      ref = sweep(TOY, A, checkpoint_dir=d, **kw)

      def corrupt(chunk):
        for root, _, files in os.walk(os.path.join(d, str(chunk))):
          for name in files:
            if "manifest" in name or name.startswith("d") or "ocdbt" in name:
              with open(os.path.join(root, name), "r+b") as f:
                f.truncate(max(os.path.getsize(f.name) // 2, 1))
      corrupt(2)
      with self.assertLogs(level="WARNING") as logs:
        again = sweep(TOY, A, checkpoint_dir=d, **kw)
      self.assertIn("checkpoint 2", "".join(logs.output))
      self.assertEqual(again.resumed_from_chunk, 2)  # chunk 1 restored, chunk 2 recomputed
      np.testing.assert_array_equal(ref.metrics["loss"], again.metrics["loss"])
      for chunk in (1, 2):  # max_to_keep = 2: both kept checkpoints broken
        corrupt(chunk)
      with self.assertRaisesRegex(ValueError, r"no checkpoint in .* can be read \(tried chunks \[2, 1\]\)"):
        sweep(TOY, A, checkpoint_dir=d, **kw)

  def test_checkpoint_directory_is_locked_while_in_use(self):
    with tempfile.TemporaryDirectory() as d:
      held = ckpt.DirectoryLock(d, "checkpoint directory")
      with self.assertRaisesRegex(ValueError, rf"checkpoint directory .* is in use by process {os.getpid()}"):
        sweep(TOY, A, seeds=[0], hp={"lr": 0.1, "scale": 1.0}, num_steps=5, checkpoint_dir=d,
              on_chunk=None)
      held.release()
      sweep(TOY, A, seeds=[0], hp={"lr": 0.1, "scale": 1.0}, num_steps=5, checkpoint_dir=d,
            on_chunk=None)

  def test_killed_sweep_resumes_bit_identical(self):
    script = os.path.join(REPO, "tests", "resume_worker.py")
    env = dict(os.environ, PYTHONPATH=REPO)
    with tempfile.TemporaryDirectory() as d:
      ref = os.path.join(d, "ref.npz")
      out = os.path.join(d, "out.npz")
      ck = os.path.join(d, "ck")
      subprocess.run([sys.executable, script, "--out", ref], check=True, env=env, timeout=300)
      killed = subprocess.run([sys.executable, script, "--ckpt", ck, "--kill_after_chunk", "2",
                               "--out", out], env=env, timeout=300)
      self.assertEqual(killed.returncode, -9, "the worker should have been SIGKILLed mid-sweep")
      self.assertFalse(os.path.exists(out))
      subprocess.run([sys.executable, script, "--ckpt", ck, "--out", out], check=True, env=env,
                     timeout=300)
      a, b = np.load(ref), np.load(out)
      self.assertEqual(int(b["resumed_from_chunk"]), 3)
      self.assertEqual(sorted(a.files), sorted(b.files))
      for name in a.files:
        if name != "resumed_from_chunk":
          np.testing.assert_array_equal(a[name], b[name], err_msg=name)


if __name__ == "__main__":
  absltest.main()
