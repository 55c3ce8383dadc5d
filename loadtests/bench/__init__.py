"""Benchmark scripts: each runs as `.venv/bin/python loadtests/bench/<name>.py` (see docs/benchmarks.md)."""
