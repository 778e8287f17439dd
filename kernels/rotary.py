"""Rotary embedding of queries and keys, neox style (halves) or interleaved pairs (GPT-J / DeepSeek MLA).

Contract of `rotary(q, k, positions, cos_sin_cache, interleaved=False) -> (q_rot, k_rot)`:
  q              [T, H, Dr], k [T, Hk, Dr] (any strides, e.g. views into a fused qkv projection)
  positions      [T] integer positions
  cos_sin_cache  [max_pos, Dr] = [cos ‖ sin], Dr/2 columns each (any float dtype; math in fp32)
  returns        new contiguous tensors of q's and k's shapes and dtypes. Pair i is (x1, x2) = (x[i], x[i + Dr/2])
                 (neox) or (x[2i], x[2i + 1]) (interleaved), rotated by angle i in place of the pair:
                 (x1 cos - x2 sin, x2 cos + x1 sin)
One program per token rotates all its query and key heads, reading cos/sin once. The interleaved layout is read and
written through strides, so DeepSeek's rope needs no de-interleaving copies around the kernel.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(src_ptr, dst_ptr, token, stride_t, stride_h, stride_d, dst_stride_t, dst_stride_h, cos, sin,
                  NUM_HEADS: tl.constexpr, HALF: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr,
                  INTERLEAVED: tl.constexpr):
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_HALF)
    mask = (offs_h[:, None] < NUM_HEADS) & (offs_d[None, :] < HALF)
    # channel of each pair's first element, and the distance to its second
    first = offs_d * 2 if INTERLEAVED else offs_d
    second = 1 if INTERLEAVED else HALF
    src = src_ptr + token * stride_t + offs_h[:, None] * stride_h + first[None, :] * stride_d
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)  # [BH, BHALF]
    x2 = tl.load(src + second * stride_d, mask=mask, other=0.0).to(tl.float32)
    dst = dst_ptr + token * dst_stride_t + offs_h[:, None] * dst_stride_h + first[None, :]
    out_ty = dst_ptr.dtype.element_ty
    tl.store(dst, (x1 * cos[None, :] - x2 * sin[None, :]).to(out_ty), mask=mask)
    tl.store(dst + second, (x2 * cos[None, :] + x1 * sin[None, :]).to(out_ty), mask=mask)


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, q_out_ptr, k_out_ptr, positions_ptr, cache_ptr,
    stride_qt, stride_qh, stride_qd, stride_kt, stride_kh, stride_kd,
    stride_oqt, stride_oqh, stride_okt, stride_okh, stride_cache,
    NUM_Q_HEADS: tl.constexpr, NUM_K_HEADS: tl.constexpr, HALF: tl.constexpr,
    BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr, INTERLEAVED: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    pos = tl.load(positions_ptr + token).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_HALF)
    d_mask = offs_d < HALF
    cos = tl.load(cache_ptr + pos * stride_cache + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    sin = tl.load(cache_ptr + pos * stride_cache + HALF + offs_d, mask=d_mask, other=0.0).to(tl.float32)
    _rotate_heads(q_ptr, q_out_ptr, token, stride_qt, stride_qh, stride_qd, stride_oqt, stride_oqh, cos, sin,
                  NUM_Q_HEADS, HALF, BLOCK_QH, BLOCK_HALF, INTERLEAVED)
    _rotate_heads(k_ptr, k_out_ptr, token, stride_kt, stride_kh, stride_kd, stride_okt, stride_okh, cos, sin,
                  NUM_K_HEADS, HALF, BLOCK_KH, BLOCK_HALF, INTERLEAVED)


def rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin_cache: torch.Tensor,
           interleaved: bool = False):
    num_tokens, num_q_heads, rot_dim = q.shape
    num_k_heads = k.shape[1]
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # [T, H, Dr]
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)  # [T, Hk, Dr]
    if num_tokens == 0:
        return q_out, k_out
    if cos_sin_cache.stride(-1) != 1:
        cos_sin_cache = cos_sin_cache.contiguous()
    half = rot_dim // 2
    _rotary_kernel[(num_tokens,)](
        q, k, q_out, k_out, positions, cos_sin_cache,
        *q.stride(), *k.stride(),
        q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1), cos_sin_cache.stride(0),
        NUM_Q_HEADS=num_q_heads, NUM_K_HEADS=num_k_heads, HALF=half,
        BLOCK_QH=triton.next_power_of_2(num_q_heads), BLOCK_KH=triton.next_power_of_2(num_k_heads),
        BLOCK_HALF=triton.next_power_of_2(half), INTERLEAVED=interleaved, num_warps=4,
    )
    return q_out, k_out
