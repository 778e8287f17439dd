"""Tuned tiles for the W4A16 GEMM (w4a16_gemm.py) at decode sizes, per weight shape, group size and GPU kind.

One JSON file per (N, K, group, GPU), e.g. `N4608-K3584-group128-NVIDIA_H100_80GB_HBM3.json`, mapping a token
count M to a full w4a16_matmul config (the factored kernel's, with its K split). Unlike the other tables a row
serves only its own M: a decode tile tuned for one row is wrong for sixteen. Written by
`benchmarks/kernels/quant_gemm_check.py --w4a16-factored-sweep` (the best tile of each shape where it beats the
heuristic's); where files are looked up: tuned_tables.py. No file or no row: w4a16_gemm.w4a16_config's heuristic.
"""

from __future__ import annotations

import functools

from vdeploy_kernels import tuned_tables

KIND = "w4a16"


def config_name(n: int, k: int, group_size: int, device_name: str) -> str:
    return f"N{n}-K{k}-group{group_size}-{tuned_tables.device_tag(device_name)}.json"


@functools.lru_cache(maxsize=1024)  # asked on every eager W4A16 launch: look each shape up once
def tuned_w4a16_config(m: int, n: int, k: int, group_size: int, device_name: str) -> dict | None:
    """The tabulated config for exactly M = m on this GPU kind (or its sibling), else None (shared: read only)."""
    return tuned_tables.exact_row(KIND, lambda gpu: config_name(n, k, group_size, gpu), device_name, m)
