"""Tile configs for the block-FP8 W8A8 GEMM (fp8_gemm.py), per weight shape, GPU kind and token count.

One JSON file per (N, K, scale block, GPU), e.g. `N7168-K16384-block128x128-NVIDIA_H200.json`, mapping a token
count M to {"block_m", "block_n", "block_k", "num_warps", "num_stages", "group_m", "split_k"} or to
{"backend": "scaled_mm"} (cuBLAS's block-scaled GEMM won for that size). Written by
benchmarks/kernels/tune_fp8_gemm.py; where files are looked up and how the nearest M is picked: tuned_tables.py.
"""

from __future__ import annotations

from vdeploy_kernels import tuned_tables

KIND = "fp8_block_gemm"


def config_name(n: int, k: int, block: tuple[int, int], device_name: str) -> str:
    return f"N{n}-K{k}-block{block[0]}x{block[1]}-{tuned_tables.device_tag(device_name)}.json"


def default_config(m: int) -> dict:
    """Without a table: narrow M tiles and many N tiles for decode, square tiles for prefill."""
    if m <= 16:
        return {"block_m": 16, "block_n": 64, "num_warps": 4, "num_stages": 4}
    if m <= 64:
        return {"block_m": 64, "block_n": 64, "num_warps": 4, "num_stages": 4}
    return {"block_m": 128, "block_n": 128, "num_warps": 8, "num_stages": 3}


DECODE_ROWS = 16  # the fused decode kernel's row tile (fp8_gemm.py): M up to this runs in one launch


def block_gemm_config(m: int, n: int, k: int, block: tuple[int, int], device_index: int | None,
                      pin_decode_rows: bool = False) -> dict:
    """The config for M = m tokens on this GPU (device_index None: the CPU interpreter, heuristic only).
    pin_decode_rows: every M ≤ DECODE_ROWS takes the one-row entry, so a row sums its products in the same order
    whatever the step's row count (speculative verify steps against one-row decode steps; tuned rows for other
    counts may split K otherwise)."""
    if pin_decode_rows and m <= DECODE_ROWS:
        m = 1
    if device_index is not None:
        table = tuned_tables.find_table(KIND, lambda gpu: config_name(n, k, tuple(block), gpu),
                                        tuned_tables.device_name(device_index))
        if table is not None:
            return tuned_tables.nearest(table, m)
    return default_config(m)
