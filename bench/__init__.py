"""Benchmarks: `python -m bench.<name>`; they print tables and write bench/results/."""
