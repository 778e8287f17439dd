"""Benchmarks: offline throughput (`offline`) and, against a running server, serving latency (`serving`)."""
