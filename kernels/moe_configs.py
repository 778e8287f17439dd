"""Tile configs for the fused-MoE grouped GEMMs, per MoE shape, GPU kind and token count.

One JSON file per (experts, intermediate, hidden, weight dtype, GPU) — the name says which, in plain characters so
it travels to and from lent machines, e.g. `E64-I1408-H2048-bf16-NVIDIA_H200.json` — mapping a token count T to
    {"block_m": 16, "w13": {"block_n": 64, "block_k": 64, "num_warps": 4, "num_stages": 3}, "w2": {...}}
block_m is shared by both GEMMs (the token alignment pads every expert's run to it); each GEMM has its own tiles.
The nearest tabulated T is used. Files are written by `benchmarks/kernels/tune_fused_moe.py` on the GPU (minutes,
once per shape and GPU kind) and looked up first in `$VDEPLOY_HOME/kernel_configs/fused_moe/` (a local tuning run),
then in the shipped `configs/fused_moe/` beside this file. No file: the heuristic below (never a JIT sweep at start).
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "configs" / "fused_moe"


def tuned_dirs() -> list[Path]:
    home = os.environ.get("VDEPLOY_HOME") or str(Path.home() / ".cache" / "vdeploy")
    return [Path(home).expanduser() / "kernel_configs" / "fused_moe", SHIPPED_DIR]


def config_name(num_experts: int, inter: int, hidden: int, fp8: bool, device_name: str) -> str:
    device = "".join(c if c.isalnum() or c in "-." else "_" for c in device_name)
    return f"E{num_experts}-I{inter}-H{hidden}-{'fp8_w8a8' if fp8 else 'bf16'}-{device}.json"


def default_config(num_tokens: int, num_experts: int, top_k: int, fp8: bool) -> dict:
    """What runs without a tuned table: small M tiles while experts see few tokens each."""
    block_m = 16 if num_tokens * top_k <= 64 * num_experts else 64
    gemm = {"block_n": 64, "block_k": 128 if fp8 else 64, "num_warps": 4, "num_stages": 3}
    return {"block_m": block_m, "w13": dict(gemm), "w2": dict(gemm)}


@functools.lru_cache(maxsize=64)
def _load_table(name: str) -> tuple[tuple[int, ...], tuple[dict, ...]] | None:
    for folder in tuned_dirs():
        path = folder / name
        if path.is_file():
            table = {int(t): cfg for t, cfg in json.loads(path.read_text()).items()}
            keys = tuple(sorted(table))
            return keys, tuple(table[k] for k in keys)
    return None


@functools.lru_cache(maxsize=16)
def _device_name(index: int) -> str:
    import torch

    return torch.cuda.get_device_name(index)


def moe_config(num_tokens: int, num_experts: int, inter: int, hidden: int, top_k: int, fp8: bool,
               device_index: int | None) -> dict:
    """The tile config for T = num_tokens on this GPU (device_index None: the CPU interpreter, heuristic only)."""
    if device_index is not None:
        table = _load_table(config_name(num_experts, inter, hidden, fp8, _device_name(device_index)))
        if table is not None:
            keys, configs = table
            i = bisect.bisect_left(keys, num_tokens)
            if i == len(keys) or (i > 0 and num_tokens - keys[i - 1] < keys[i] - num_tokens):
                i -= 1
            return configs[i]
    return default_config(num_tokens, num_experts, top_k, fp8)
