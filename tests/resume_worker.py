"""Subprocess for the resume test: runs a checkpointed sweep, optionally SIGKILLs itself mid-way."""

import argparse
import os
import signal

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxopt_lab.engine.sweep import sweep  # pylint: disable=g-import-not-at-top
from tests.toy import TOY  # pylint: disable=g-import-not-at-top

jax.config.update("jax_enable_x64", True)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--ckpt", default=None)
  p.add_argument("--kill_after_chunk", type=int, default=-1)
  p.add_argument("--out", required=True)
  args = p.parse_args()

  def on_chunk(info):
    if info.chunk == args.kill_after_chunk:
      os.kill(os.getpid(), signal.SIGKILL)  # after this chunk's checkpoint is on disk

  res = sweep(TOY, jnp.array([1.0, 2.0, 4.0, 0.5]), seeds=[0, 1, 2], hp={"lr": [0.05, 0.2, 0.45],
              "scale": 1.0, "noise": 0.1}, num_steps=60, record_every=3, chunk_steps=12,
              checkpoint_dir=args.ckpt, on_chunk=on_chunk)
  np.savez(args.out, loss=res.metrics["loss"], x0=res.metrics["x0"], steps=res.steps,
           x=res.final_state.inner.x, key=res.final_state.inner.key, diverged_at=res.diverged_at,
           resumed_from_chunk=-1 if res.resumed_from_chunk is None else res.resumed_from_chunk)


if __name__ == "__main__":
  main()
