"""Helpers for peppp's tests and benchmarks (local PostgreSQL and MLflow servers); not part of the installed package."""
