"""Benchmarks that print numbers (speed is measured here, never asserted in tests)."""
