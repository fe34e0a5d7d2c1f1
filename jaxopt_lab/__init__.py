"""jaxopt_lab: theory of deep learning and optimization as pure, vmapped JAX functions.

problems -> algorithms (init/step) -> run (scan) -> sweep (vmap over seeds and traced hyperparameters,
sharded over devices, chunked and checkpointed) -> measurements -> theory checks and reports.
"""

__version__ = "0.1.0"
