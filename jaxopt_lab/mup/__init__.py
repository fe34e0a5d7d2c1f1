"""Feature learning at infinite width: abc-parametrizations, muP, coordinate checks, muTransfer and
exact infinite-width limits (Yang & Hu 2021, arXiv:2011.14522; Yang et al. 2022, arXiv:2203.03466)."""
