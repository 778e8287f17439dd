"""Tuned tiles for the dense decode GEMV (dense_gemv.py), per weight shape, dtype and GPU kind.

One JSON file per (N, K, dtype, GPU), e.g. `N4096-K4096-bfloat16-NVIDIA_H100_80GB_HBM3.json`, mapping a row count M
to a dense_gemv config. A row serves only its own M, and a shape or M with no row stays on cuBLAS: the table is the
record of where this kernel measured faster (benchmarks/kernels/dense_gemv_check.py writes the rows). Where files
are looked up: tuned_tables.py.
"""

from __future__ import annotations

import functools

from vdeploy_kernels import tuned_tables

KIND = "dense_gemv"


def config_name(n: int, k: int, dtype_name: str, device_name: str) -> str:
    return f"N{n}-K{k}-{dtype_name}-{tuned_tables.device_tag(device_name)}.json"


@functools.lru_cache(maxsize=1024)  # asked on every eager decode linear: look each shape up once
def tuned_gemv_config(m: int, n: int, k: int, dtype_name: str, device_name: str) -> dict | None:
    """The tabulated config for exactly M = m on this GPU kind (or its sibling), else None (shared: read only)."""
    return tuned_tables.exact_row(KIND, lambda gpu: config_name(n, k, dtype_name, gpu), device_name, m)
