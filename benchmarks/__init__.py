"""Benchmarks: scripts that print figures measured in one run (never asserted in tests)."""
