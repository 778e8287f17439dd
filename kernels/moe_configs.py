"""Tile configs for the fused-MoE grouped GEMMs, per MoE shape, GPU kind and token count.

One JSON file per (experts, intermediate, hidden, weight dtype, GPU) — the name says which, in plain characters so
it travels to and from lent machines, e.g. `E64-I1408-H2048-bf16-NVIDIA_H200.json` — mapping a token count T to
    {"block_m": 16, "w13": {"block_n": 64, "block_k": 64, "num_warps": 4, "num_stages": 3}, "w2": {...}}
block_m is shared by both GEMMs (the token alignment pads every expert's run to it); each GEMM has its own tiles.
Files are written by `benchmarks/kernels/tune_fused_moe.py`; where they are looked up and how the nearest T is
picked: tuned_tables.py. No file: the heuristic below (never a JIT sweep at start).
"""

from __future__ import annotations

from vdeploy_kernels import tuned_tables

KIND = "fused_moe"


def config_name(num_experts: int, inter: int, hidden: int, fp8: bool, device_name: str) -> str:
    return (f"E{num_experts}-I{inter}-H{hidden}-{'fp8_w8a8' if fp8 else 'bf16'}-"
            f"{tuned_tables.device_tag(device_name)}.json")


def default_config(num_tokens: int, num_experts: int, top_k: int, fp8: bool) -> dict:
    """What runs without a tuned table: small M tiles while experts see few tokens each."""
    block_m = 16 if num_tokens * top_k <= 64 * num_experts else 64
    gemm = {"block_n": 64, "block_k": 128 if fp8 else 64, "num_warps": 4, "num_stages": 3}
    return {"block_m": block_m, "w13": dict(gemm), "w2": dict(gemm)}


def moe_config(num_tokens: int, num_experts: int, inter: int, hidden: int, top_k: int, fp8: bool,
               device_index: int | None) -> dict:
    """The tile config for T = num_tokens on this GPU (device_index None: the CPU interpreter, heuristic only)."""
    if device_index is not None:
        table = tuned_tables.find_table(KIND, lambda gpu: config_name(num_experts, inter, hidden, fp8, gpu),
                                        tuned_tables.device_name(device_index))
        if table is not None:
            return tuned_tables.nearest(table, num_tokens)
    return default_config(num_tokens, num_experts, top_k, fp8)
