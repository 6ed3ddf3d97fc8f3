"""Benchmarks: they print numbers; tests never assert on time."""
