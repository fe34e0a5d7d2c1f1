"""The run/sweep engine: algorithms as init/step, runs as scans, sweeps as sharded vmaps."""

from jaxopt_lab.engine.algorithm import Algorithm
from jaxopt_lab.engine.run import RunState, advance, all_finite, run, start

__all__ = ["Algorithm", "RunState", "advance", "all_finite", "run", "start"]
