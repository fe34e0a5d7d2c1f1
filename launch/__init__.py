"""Launchers: absl entry points, ml_collections configs, and writing results to a workdir."""
