"""Likelihood benchmarks in the literature's units: ``melodylm bench pianoroll|melody``."""
