"""Grouped LoRA (SGMV style): every token of the flat batch gets the low-rank update of its own adapter, in one pass
over the batch however many adapters it mixes.

Contract of `add_lora(y, x, lora_a, lora_b, token_slots, seg_starts, seg_slots)`:
  y            [T, N] updated in place: y[t] += (x[t] @ lora_a[s]ᵀ) @ lora_b[s]ᵀ with s = token_slots[t]
  x            [T, K] fp16/bf16/fp32
  lora_a       [L, R, K] the stacked adapters' A (shrink), one slot per adapter
  lora_b       [L, N, R] the stacked B (expand), with the adapter's scaling folded in
  token_slots  [T] int32: each token's slot, -1 = no adapter (the base model); read by the torch twin
  seg_starts   [S + 1] int32, seg_slots [S] int32: the batch as S runs of consecutive tokens that share a slot
               (a request's tokens are consecutive); a run with slot -1 is skipped. CUDA graphs give every token
               its own run, so the grid (S) does not depend on which adapters a step mixes.
Two launches of one kernel: shrink x @ Aᵀ -> h [T, R] (float32), then expand y += h @ Bᵀ. Grid (S, N blocks): a
program walks its run in BLOCK_M-token tiles, so a prefill run reads its adapter's weights once per tile (SGMV) and a
decode run of one token is a gathered matrix-vector product (BGMV).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _sgmv_kernel(x_ptr, w_ptr, y_ptr, seg_starts_ptr, seg_slots_ptr, N, K,
                 stride_xm, stride_xk, stride_wl, stride_wn, stride_wk, stride_ym, stride_yn,
                 ACCUMULATE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    seg = tl.program_id(0)
    slot = tl.load(seg_slots_ptr + seg).to(tl.int64)
    if slot >= 0:
        start = tl.load(seg_starts_ptr + seg)
        end = tl.load(seg_starts_ptr + seg + 1)
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        w_base = w_ptr + slot * stride_wl
        for m0 in range(start, end, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                offs_k = k0 + tl.arange(0, BLOCK_K)
                xt = tl.load(x_ptr + offs_m[:, None].to(tl.int64) * stride_xm + offs_k[None, :] * stride_xk,
                             mask=(offs_m[:, None] < end) & (offs_k[None, :] < K), other=0.0)  # [BM, BK]
                wt = tl.load(w_base + offs_n[None, :] * stride_wn + offs_k[:, None] * stride_wk,
                             mask=(offs_n[None, :] < N) & (offs_k[:, None] < K), other=0.0)  # [BK, BN]
                # the product in the weights' dtype (a float32 h meets bf16 B as bf16, as the twin rounds it)
                acc += tl.dot(xt.to(wt.dtype), wt)
            y_ptrs = y_ptr + offs_m[:, None].to(tl.int64) * stride_ym + offs_n[None, :] * stride_yn
            y_mask = (offs_m[:, None] < end) & (offs_n[None, :] < N)
            if ACCUMULATE:
                acc += tl.load(y_ptrs, mask=y_mask, other=0.0).to(tl.float32)
            tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


def _sgmv(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, seg_starts: torch.Tensor, seg_slots: torch.Tensor,
          accumulate: bool) -> None:
    num_segments = seg_slots.shape[0]
    n, k = w.shape[1], w.shape[2]
    if num_segments == 0 or n == 0:
        return
    block_n = max(16, min(64, triton.next_power_of_2(n)))
    block_k = max(16, min(64, triton.next_power_of_2(k)))
    grid = (num_segments, triton.cdiv(n, block_n))
    _sgmv_kernel[grid](x, w, y, seg_starts, seg_slots, n, k, x.stride(0), x.stride(1),
                       w.stride(0), w.stride(1), w.stride(2), y.stride(0), y.stride(1),
                       ACCUMULATE=accumulate, BLOCK_M=16, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=4)


def add_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, token_slots: torch.Tensor,
             seg_starts: torch.Tensor, seg_slots: torch.Tensor) -> None:
    h = torch.zeros(x.shape[0], lora_a.shape[1], dtype=torch.float32, device=x.device)  # [T, R]
    _sgmv(x, lora_a, h, seg_starts, seg_slots, accumulate=False)
    _sgmv(h, lora_b, y, seg_starts, seg_slots, accumulate=True)
