"""Benchmarks: postroom's loop against the usual Python approaches, measured in one run."""
