"""Theory checks: one module per claim of a paper, each registering with :mod:`theory_checks.registry`.

Importing this package imports every check module in it (so they register); ``load_all`` returns them.
"""

import importlib
import pkgutil

from theory_checks.registry import (Check, Measurement, Result, all_checks, check_key, check_seed, get,
                                    register, run_check)


def load_all() -> list[Check]:
  """Imports every module of this package and returns all registered checks."""
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if info.name != "registry" and not info.name.endswith("common") and not info.name.startswith("_"):
      importlib.import_module(f"{__name__}.{info.name}")
  return all_checks()


__all__ = ["Check", "Measurement", "Result", "all_checks", "check_key", "check_seed", "get", "load_all",
           "register", "run_check"]
