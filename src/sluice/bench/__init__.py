"""``sluice bench``: the project's own benchmark (see docs/BENCHMARKS.md)."""
