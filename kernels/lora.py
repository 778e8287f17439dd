"""Grouped LoRA (SGMV style): every token of the flat batch gets the low-rank update of its own adapter, in one pass
over the batch however many adapters it mixes.

Contract of `add_lora(y, x, lora_a, lora_b, token_slots, seg_starts, seg_slots, max_run=0)`:
  y            [T, N] updated in place: y[t] += (x[t] @ lora_a[s]ᵀ) @ lora_b[s]ᵀ with s = token_slots[t]
  x            [T, K] fp16/bf16/fp32
  lora_a       [L, R, K] the stacked adapters' A (shrink), one slot per adapter
  lora_b       [L, N, R] the stacked B (expand), with the adapter's scaling folded in
  token_slots  [T] int32: each token's slot, -1 = no adapter (the base model); read by the torch twin
  seg_starts   [S + 1] int32, seg_slots [S] int32: the batch as S runs of consecutive tokens that share a slot
               (a request's tokens are consecutive); a run with slot -1 is skipped. CUDA graphs give every token
               its own run, so the grid (S) does not depend on which adapters a step mixes.
  max_run      the longest run's length (the host knows it; 0: read it from seg_starts, a device sync)
Two launches of one kernel: shrink x @ Aᵀ -> h (float32), then expand y += h @ Bᵀ. Grid (tiles of BLOCK_M tokens of
the longest run x N blocks, S, K splits): every tile of every run is its own program, so a prefill run of 512 tokens
is 32 programs in parallel, not one program walking 32 tiles (on an H100 that walk cost 2-8x the base GEMM). The
shrink's K (the hidden size) is long and its N (the rank) tiny, so when the batch gives few programs K is split:
each split writes its own partial h, and the expand sums the partials in a fixed order (deterministic, no atomics).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_M = 16  # tokens per tile: the smallest tensor-core tile (a decode run is one token)
TARGET_PROGRAMS = 264  # about two programs per SM of a 132-SM Hopper: enough to stream the weights at full speed


@triton.jit
def _sgmv_kernel(x_ptr, w_ptr, y_ptr, seg_starts_ptr, seg_slots_ptr, N, K,
                 stride_xs, stride_xm, stride_xk, stride_wl, stride_wn, stride_wk, stride_ys, stride_ym, stride_yn,
                 X_SPLITS: tl.constexpr, ACCUMULATE: tl.constexpr, SPLIT_K: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # axis 0 (the large one: up to 2^31 - 1 programs) walks tiles x N blocks, axis 1 the runs (CUDA caps axes 1 and 2
    # at 65,535: a 16k-token prefill chunk has 1,024 tiles of 16 tokens times hundreds of N blocks)
    seg = tl.program_id(1)
    slot = tl.load(seg_slots_ptr + seg).to(tl.int64)
    start = tl.load(seg_starts_ptr + seg)
    end = tl.load(seg_starts_ptr + seg + 1)
    n_blocks = tl.cdiv(N, BLOCK_N)
    m0 = start + (tl.program_id(0) // n_blocks) * BLOCK_M
    if (slot >= 0) & (m0 < end):
        offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM]
        offs_n = (tl.program_id(0) % n_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
        split = tl.program_id(2)
        k_per_split = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
        k_begin = split * k_per_split
        k_end = tl.minimum(k_begin + k_per_split, K)
        w_base = w_ptr + slot * stride_wl
        m_mask = offs_m < end
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(k_begin, k_end, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_mask = offs_k < k_end
            x_ptrs = x_ptr + offs_m[:, None].to(tl.int64) * stride_xm + offs_k[None, :] * stride_xk
            xt = tl.load(x_ptrs, mask=m_mask[:, None] & k_mask[None, :], other=0.0)  # [BM, BK]
            for s in tl.static_range(1, X_SPLITS):  # the shrink's partial sums, added in split order
                xt += tl.load(x_ptrs + s * stride_xs, mask=m_mask[:, None] & k_mask[None, :], other=0.0)
            wt = tl.load(w_base + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
                         mask=(offs_n[None, :] < N) & k_mask[:, None], other=0.0)  # [BK, BN]
            # the product in the weights' dtype (a float32 h meets bf16 B as bf16, as the twin rounds it)
            acc += tl.dot(xt.to(wt.dtype), wt)
        y_ptrs = y_ptr + split * stride_ys + offs_m[:, None].to(tl.int64) * stride_ym + offs_n[None, :] * stride_yn
        y_mask = m_mask[:, None] & (offs_n[None, :] < N)
        if ACCUMULATE:
            acc += tl.load(y_ptrs, mask=y_mask, other=0.0).to(tl.float32)
        tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


def _sgmv(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, seg_starts: torch.Tensor, seg_slots: torch.Tensor,
          max_run: int, accumulate: bool, split_k: int = 1, x_splits: int = 1) -> None:
    """y (or y[split] per K split) [+]= x @ w[slot]ᵀ per run; x may be [X_SPLITS, T, K] partials (summed)."""
    num_segments = seg_slots.shape[0]
    n, k = w.shape[1], w.shape[2]
    if num_segments == 0 or n == 0:
        return
    x3 = x if x.dim() == 3 else x.unsqueeze(0)  # [X_SPLITS, T, K]
    y3 = y if y.dim() == 3 else y.unsqueeze(0)  # [SPLIT_K, T, N]
    block_n = max(16, min(64, triton.next_power_of_2(n)))
    block_k = max(16, min(64, triton.next_power_of_2(k)))
    grid = (triton.cdiv(max_run, BLOCK_M) * triton.cdiv(n, block_n), num_segments, split_k)
    _sgmv_kernel[grid](x3, w, y3, seg_starts, seg_slots, n, k, x3.stride(0), x3.stride(1), x3.stride(2),
                       w.stride(0), w.stride(1), w.stride(2), y3.stride(0), y3.stride(1), y3.stride(2),
                       X_SPLITS=x_splits, ACCUMULATE=accumulate, SPLIT_K=split_k,
                       BLOCK_M=BLOCK_M, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4)


def shrink_splits(num_segments: int, max_run: int, rank: int, hidden: int) -> int:
    """K splits for the shrink: enough programs to keep the GPU streaming, each at least 512 channels long."""
    programs = num_segments * triton.cdiv(max_run, BLOCK_M) * triton.cdiv(rank, 64)
    return max(1, min(8, hidden // 512, TARGET_PROGRAMS // max(programs, 1)))


def add_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, token_slots: torch.Tensor,
             seg_starts: torch.Tensor, seg_slots: torch.Tensor, max_run: int = 0) -> None:
    if max_run <= 0:
        max_run = int((seg_starts[1:] - seg_starts[:-1]).max()) if seg_slots.shape[0] else 0
    if max_run == 0:
        return
    rank = lora_a.shape[1]
    split = shrink_splits(seg_slots.shape[0], max_run, rank, x.shape[1])
    # rows outside the adapters' runs are never written nor read
    h = torch.empty(split, x.shape[0], rank, dtype=torch.float32, device=x.device)  # [SPLIT, T, R] partials
    _sgmv(x, lora_a, h, seg_starts, seg_slots, max_run, accumulate=False, split_k=split)
    _sgmv(h, lora_b, y, seg_starts, seg_slots, max_run, accumulate=True, x_splits=split)
