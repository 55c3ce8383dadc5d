"""Load tests (k6 scripts) and the benchmark scripts under `bench/` (docs/benchmarks.md)."""
