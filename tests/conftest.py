"""Test-session settings: float64 available, rank promotion an error, several CPU devices.

Four host devices let the sharding tests split a sweep's seed axis on a plain CPU machine; tests that
want float32 ask for it explicitly.
"""

import os

os.environ.setdefault("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
  os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
