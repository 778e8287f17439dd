"""Dense decode GEMV (Triton): y [M, N] = x [M, K] @ W [N, K]ᵀ for a few rows, the weight in x's dtype (bf16/fp16),
as F.linear stores it (row-major, K contiguous).

Why: for some decode shapes cuBLAS picks a kernel that leaves HBM bandwidth unused. On an H100 (torch 2.11,
benchmarks/results/2026-12-07d-h100/step-llama-8b-bf16) Llama-3.1-8B's o_proj (4096 x 4096, M = 1) ran
`nvjet_sm90_tst_64x8_64x16_4x1` at 20.8 µs, 1.6 TB/s, where its gate_up ran at 2.87 TB/s: 0.27 ms of a 6.3 ms
batch-1 step. Here every program streams BLOCK_N weight rows over one K split and keeps the products in registers
([BM, BN, BK] fp32, summed along K once at the end, not per tile); the splits' partials are added in the same launch
by the last program of each column tile (vdeploy_kernels.split_k: fixed order, no atomics on the output).

Which shapes run it: only those with a tuned row for exactly this M on this GPU kind (dense_gemv_configs.py, written
by benchmarks/kernels/dense_gemv_check.py where this kernel beat cuBLAS in a CUDA-graph timing); everything else
stays on cuBLAS. Dispatched by vdeploy.layers.ops.dense_linear.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.split_k import split_k_tiles, split_plan, store_split_k, sum_splits


@triton.jit(do_not_specialize=["SPLIT_K"])  # one compile for every split count
def _dense_gemv_kernel(
    x_ptr, w_ptr, c_ptr, ws_ptr, tickets_ptr, b_ptr,
    M, N, K, stride_xm, stride_wn, SPLIT_K,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,  # K a multiple of BLOCK_K: no K masks
    REDUCE: tl.constexpr,
    HAS_BIAS: tl.constexpr,  # b_ptr [N] added to the output
    STAGES: tl.constexpr,  # K tiles in flight (software pipeline depth)
):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_m = tl.arange(0, BLOCK_M)  # [BM] every row of the batch (M ≤ BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    offs_k = tl.arange(0, BLOCK_K)  # [BK]
    m_mask = offs_m < M
    n_mask = offs_n < N
    kb_start, kb_end = split_k_tiles(K, BLOCK_K, SPLIT_K, pid_k)
    acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_K), dtype=tl.float32)  # products, summed along K after the loop
    # no tl.dot in this loop, so Triton pipelines its loads (cp.async, STAGES deep) only when asked to
    for kb in tl.range(kb_start, kb_end, num_stages=STAGES):
        k = kb * BLOCK_K + offs_k  # [BK]
        if EVEN_K:
            w = tl.load(w_ptr + offs_n[:, None] * stride_wn + k[None, :], mask=n_mask[:, None], other=0.0,
                        eviction_policy="evict_first")  # [BN, BK], streamed once
            a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_mask[:, None], other=0.0)
        else:
            k_ok = k < K
            w = tl.load(w_ptr + offs_n[:, None] * stride_wn + k[None, :], mask=n_mask[:, None] & k_ok[None, :],
                        other=0.0, eviction_policy="evict_first")
            a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & k_ok[None, :],
                        other=0.0)  # [BM, BK]
        acc += a.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :]
    store_split_k(tl.sum(acc, axis=2), offs_m, offs_n, M, N, pid_k, c_ptr, ws_ptr, tickets_ptr, pid_n, SPLIT_K,
                  REDUCE, b_ptr, HAS_BIAS)


def dense_gemv(x: torch.Tensor, weight: torch.Tensor, cfg: dict, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [M, K] (M ≤ cfg's block_m) @ weight [N, K]ᵀ (+ bias [N], added in the store) -> [M, N] in x's dtype. cfg:
    block_m / block_n / block_k / split_k / num_warps / num_stages (a dense_gemv_configs table row)."""
    x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    block_m, block_n, block_k = cfg["block_m"], cfg["block_n"], cfg["block_k"]
    if m > block_m or weight.stride(1) != 1:
        raise ValueError(f"dense GEMV: {m} rows for a {block_m}-row tile, weight strides {tuple(weight.stride())}")
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return out
    grid_n = triton.cdiv(n, block_n)
    split, reduce, ws, tickets = split_plan(out, triton.cdiv(k, block_k), cfg.get("split_k", 1), grid_n)
    _dense_gemv_kernel[(grid_n, split)](
        x, weight, out, ws, tickets, out if bias is None else bias, m, n, k, x.stride(0), weight.stride(0), split,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, EVEN_K=k % block_k == 0, REDUCE=reduce,
        HAS_BIAS=bias is not None and reduce != 2,
        STAGES=cfg["num_stages"],
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return sum_splits(ws, out, split, bias) if reduce == 2 else out
