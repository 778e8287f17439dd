"""Launch configs of the prefill attention kernels, per head shape, GPU kind and longest query.

variant "paged": prefill_attention.py (any request, K/V gathered from the paged cache token by token).
variant "fresh": fresh_prefill_attention.py (requests with no cached prefix, K/V read from this step's contiguous
k / v tensors).
variant "mla": mla_prefill_attention.py (expanded MLA prefill; head dim = Dn + R, group 1), written by
benchmarks/kernels/mla_prefill_sweep.py.

A tuned table is one JSON file per (variant, head dim, GQA group, dtype, GPU), e.g.
`fresh-D128-G4-bfloat16-NVIDIA_H200.json`, mapping a longest query length to the config fields of that variant
({"block_m", "block_n", "num_warps", "num_stages"} plus "pack" for fresh). Written by
benchmarks/kernels/prefill_attention_sweep.py; where files are looked up and how the nearest length is picked:
tuned_tables.py. No table (or no GPU), or a query shorter than half the shortest tabulated one: the kernels'
heuristics.
"""

from __future__ import annotations

import torch

from vdeploy_kernels import tuned_tables

KIND = "prefill_attention"


def config_name(variant: str, head_dim: int, group: int, dtype: torch.dtype, device_name: str) -> str:
    dtype_name = str(dtype).removeprefix("torch.")
    return f"{variant}-D{head_dim}-G{group}-{dtype_name}-{tuned_tables.device_tag(device_name)}.json"


def tuned_config(variant: str, head_dim: int, group: int, dtype: torch.dtype, device: torch.device,
                 max_query_len: int | None) -> dict | None:
    """The tabulated config nearest to max_query_len for this GPU (None: CPU, no table, or unknown length)."""
    if device.type != "cuda" or max_query_len is None:
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    table = tuned_tables.find_table(KIND, lambda gpu: config_name(variant, head_dim, group, dtype, gpu),
                                    tuned_tables.device_name(index))
    # a table tuned on long prompts says nothing about short ones (their tiles are sized against padding rows):
    # below half its shortest length, the heuristic decides
    if table is None or max_query_len < table[0][0] // 2:
        return None
    return tuned_tables.nearest(table, max_query_len)

