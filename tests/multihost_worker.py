"""One process of the multi-host test: joins a 2-process CPU job, runs a checkpointed sweep, saves it."""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from jaxopt_lab.engine.sweep import sweep  # pylint: disable=g-import-not-at-top
from launch.experiment import maybe_initialize_distributed  # pylint: disable=g-import-not-at-top
from tests.toy import TOY  # pylint: disable=g-import-not-at-top

SWEEP = dict(seeds=[0, 1, 2], hp={"lr": [0.1, 0.3], "scale": 1.0, "noise": 0.1}, num_steps=20,
             record_every=5, chunk_steps=10)
PROBLEM = [1.0, 2.0, 4.0]


def main():
  out, ckpt = sys.argv[1], sys.argv[2]
  assert maybe_initialize_distributed(), "JAX_COORDINATOR_ADDRESS should be set by the test"
  assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.device_count())
  res = sweep(TOY, jnp.array(PROBLEM), checkpoint_dir=ckpt, on_chunk=None, **SWEEP)
  np.savez(out, loss=res.metrics["loss"], x=res.final_state.inner.x,
           resumed=-1 if res.resumed_from_chunk is None else res.resumed_from_chunk)


if __name__ == "__main__":
  main()
