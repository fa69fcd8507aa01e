"""Endpoint modules: found, imported once per process, checked, and scaffolded."""
