"""Benchmarks and the soak run (``make bench``, ``make soak``), and their shared helpers."""
