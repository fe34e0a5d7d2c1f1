"""Experiment builders: each module registers ``build(config) -> ExperimentSpec`` on import."""

from launch.experiments import (matrix_sensing, mup, mup_word2vec, neural_collapse, ntk,  # noqa: F401
                                stability)
