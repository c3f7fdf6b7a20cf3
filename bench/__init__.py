"""Northstar's benchmarks: `python -m bench.run [--quick]` writes BENCHMARKS.md."""
