"""MLA's per-token glue between the projections and attention, in one launch: rotate q_rope in place (every head),
normalise c_kv (kv_a_layernorm), rotate k_rope, and write c_kv ‖ k_rope into the latent cache at the token's slot.

Contract of `mla_rope_and_cache(q_rope, latent, positions, cos_sin_cache, norm_weight, eps, kv_cache, slot_mapping,
kv_scale=1.0)`:
  q_rope        [T, H, R]   a strided view (the tail of each head of q_b_proj's output), rotated in place
  latent        [T, L + R]  kv_a_proj_with_mqa's output: c_kv ‖ k_rope (read only)
  positions     [T], cos_sin_cache [max_pos, R] = [cos ‖ sin]: DeepSeek's rope, interleaved pairs (2i, 2i + 1)
  norm_weight   [L], eps: the RMSNorm of c_kv
  kv_cache      [1, NB, BS, 1, L + R], slot_mapping [T] (negative: a padding row, nothing written)
Every value is rounded to the activations' dtype exactly where the unfused path rounds it (the norm's and the
rotary's outputs), then stored as rms_norm + rotary + cat + store_kv would (an fp8 cache: saturate(x / kv_scale)),
so the cache bytes and q are the same as theirs; the twin (reference_deepseek.mla_rope_and_cache) is that
composition. One launch where the norm, the rotary, the entry's concatenation and the store were four. Grid
(T, 1 + head blocks): program 0 of a token writes its cache entry, the others rotate 16 heads of q each. One program
per token doing all 128 heads took 18 us per layer at batch 1 on an H100 (2026-12-06 profile): a serial chain on
one SM, slower than the four launches it replaced.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.store_kv import to_cache


@triton.jit
def _mla_rope_cache_kernel(
    q_ptr, latent_ptr, w_ptr, cos_sin_ptr, positions_ptr, slot_mapping_ptr, cache_ptr, inv_scale, eps,
    stride_qt, stride_qh, stride_lt, stride_cos, stride_cb, stride_cs,
    NUM_HEADS: tl.constexpr, L: tl.constexpr, HALF: tl.constexpr, QUANT: tl.constexpr, PAGE_SIZE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)  # 0: the cache entry; p > 0: q heads [(p - 1) * BLOCK_H, p * BLOCK_H)
    pos = tl.load(positions_ptr + token).to(tl.int64)
    offs_r = tl.arange(0, BLOCK_HALF)
    r_mask = offs_r < HALF
    cos = tl.load(cos_sin_ptr + pos * stride_cos + offs_r, mask=r_mask, other=0.0).to(tl.float32)  # [BHALF]
    sin = tl.load(cos_sin_ptr + pos * stride_cos + HALF + offs_r, mask=r_mask, other=0.0).to(tl.float32)
    if part > 0:
        # q_rope of this block of heads, in place: pair i is (x[2i], x[2i + 1]). Each head's R channels are loaded
        # and stored as one contiguous row and the pairs split in registers: two stride-2 accesses per pair ran
        # the R1 prefill glue at ~0.4 TB/s (5.7 ms per 8,192-token step on an H100).
        offs_h = (part - 1) * BLOCK_H + tl.arange(0, BLOCK_H)
        offs_c = tl.arange(0, 2 * BLOCK_HALF)  # [BR] channels
        q_mask = (offs_h[:, None] < NUM_HEADS) & (offs_c[None, :] < 2 * HALF)
        q_rows = q_ptr + token * stride_qt + offs_h[:, None] * stride_qh + offs_c[None, :]  # [BH, BR]
        x = tl.load(q_rows, mask=q_mask, other=0.0).to(tl.float32)
        q1, q2 = tl.split(tl.reshape(x, (BLOCK_H, BLOCK_HALF, 2)))  # [BH, BHALF] each
        r1 = q1 * cos[None, :] - q2 * sin[None, :]
        r2 = q2 * cos[None, :] + q1 * sin[None, :]
        rotated = tl.reshape(tl.join(r1, r2), (BLOCK_H, 2 * BLOCK_HALF))  # [BH, BR], pairs interleaved again
        tl.store(q_rows, rotated.to(q_ptr.dtype.element_ty), mask=q_mask)
    else:
        slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
        if slot >= 0:
            act_ty = latent_ptr.dtype.element_ty
            dest = cache_ptr + (slot // PAGE_SIZE) * stride_cb + (slot % PAGE_SIZE) * stride_cs
            offs_l = tl.arange(0, BLOCK_L)
            l_mask = offs_l < L
            c = tl.load(latent_ptr + token * stride_lt + offs_l, mask=l_mask, other=0.0).to(tl.float32)  # [BL]
            inv_rms = tl.rsqrt(tl.sum(c * c, 0) / L + eps)
            w = tl.load(w_ptr + offs_l, mask=l_mask, other=0.0).to(tl.float32)
            normed = (c * inv_rms * w).to(act_ty)  # rounded as the norm kernel's output
            tl.store(dest + offs_l, to_cache(normed, inv_scale, cache_ptr, QUANT), mask=l_mask)
            k_pairs = latent_ptr + token * stride_lt + L + 2 * offs_r
            k1 = tl.load(k_pairs, mask=r_mask, other=0.0).to(tl.float32)
            k2 = tl.load(k_pairs + 1, mask=r_mask, other=0.0).to(tl.float32)
            k1_rot = (k1 * cos - k2 * sin).to(act_ty)  # rounded as the rotary kernel's output
            k2_rot = (k2 * cos + k1 * sin).to(act_ty)
            tl.store(dest + L + 2 * offs_r, to_cache(k1_rot, inv_scale, cache_ptr, QUANT), mask=r_mask)
            tl.store(dest + L + 2 * offs_r + 1, to_cache(k2_rot, inv_scale, cache_ptr, QUANT), mask=r_mask)


def mla_rope_and_cache(q_rope: torch.Tensor, latent: torch.Tensor, positions: torch.Tensor,
                       cos_sin_cache: torch.Tensor, norm_weight: torch.Tensor, eps: float, kv_cache: torch.Tensor,
                       slot_mapping: torch.Tensor, kv_scale: float = 1.0) -> None:
    num_tokens, num_heads, rope = q_rope.shape
    if num_tokens == 0:
        return
    lora = latent.shape[1] - rope
    if q_rope.stride(-1) != 1 or latent.stride(-1) != 1 or kv_cache.stride(-1) != 1:
        raise ValueError("q_rope, latent and the cache need a contiguous last dimension")
    if cos_sin_cache.stride(-1) != 1:
        cos_sin_cache = cos_sin_cache.contiguous()
    block_h = min(16, triton.next_power_of_2(num_heads))
    _mla_rope_cache_kernel[(num_tokens, 1 + triton.cdiv(num_heads, block_h))](
        q_rope, latent, norm_weight, cos_sin_cache, positions, slot_mapping, kv_cache, 1.0 / kv_scale, eps,
        q_rope.stride(0), q_rope.stride(1), latent.stride(0), cos_sin_cache.stride(0),
        kv_cache.stride(1), kv_cache.stride(2),
        NUM_HEADS=num_heads, L=lora, HALF=rope // 2, QUANT=kv_cache.dtype.itemsize == 1, PAGE_SIZE=kv_cache.shape[2],
        BLOCK_H=block_h, BLOCK_L=triton.next_power_of_2(lora),
        BLOCK_HALF=triton.next_power_of_2(rope // 2), num_warps=4,
    )
