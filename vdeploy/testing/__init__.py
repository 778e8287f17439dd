"""Helpers for tests and benchmarks only (corrupt checkpoints, the reference runner); never imported by the
shipped commands."""
