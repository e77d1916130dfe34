"""Benchmarks: each reported as a ratio to an anchor measured in the same run."""
