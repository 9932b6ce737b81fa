"""Parley's benchmarks: run from the repository root as modules, e.g. `.venv/bin/python -m bench.run --quick`
(`make bench-quick`). See bench/README.md."""
