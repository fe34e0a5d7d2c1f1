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
# Sweeps build fresh jitted closures per call and xdist workers compile the same programs: a
# persistent compilation cache shared by the workers of one test session turns repeats into reads.
_CACHE = os.environ.setdefault(
    "JAXOPT_LAB_TEST_CACHE", os.path.join(os.path.dirname(os.path.dirname(__file__)), ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_numpy_rank_promotion", "raise")
