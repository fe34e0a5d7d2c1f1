"""Experiment builders: each module registers ``build(config) -> ExperimentSpec`` on import."""

from launch.experiments import matrix_sensing, mup, neural_collapse, ntk, stability  # noqa: F401
