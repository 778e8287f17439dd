"""Rotary embedding fused with the paged KV-cache store: one launch where rotary.py and store_kv.py were two.

Contract of `rope_store_kv(q, k, v, positions, cos_sin_cache, kv_cache, slot_mapping, k_scale=1.0, v_scale=1.0,
interleaved=False, return_k=False) -> (q_rot, k_rot or None)`:
  q             [T, H, D], k [T, Hk, D], v [T, Hk, D]  any strides (views into the fused qkv projection output)
  positions     [T] integer positions
  cos_sin_cache [max_pos, Dr] = [cos ‖ sin] (Dr <= D, even; any float dtype, math in fp32). The first Dr channels
                of every head rotate, neox style (pair i = (x[i], x[i + Dr/2])) or interleaved (x[2i], x[2i + 1]);
                channels Dr..D pass through unchanged (partial rotary)
  kv_cache      [2, NB, BS, Hk, D]; slot_mapping [T] (negative: a padding row, nothing stored)
  returns       q_rot: a new contiguous [T, H, D] in q's dtype; k_rot: a new contiguous [T, Hk, D] in k's dtype when
                return_k (for attention that reads this step's keys beside the queries, kernels/paged_attention.py's
                fresh prompts), else None (decode: the keys live only in the cache)
Every value is what rotary.py followed by store_kv.py computes: the same fp32 products rounded to the activations'
dtype, then converted to the cache dtype (an fp8 cache: saturate(x * (1 / scale)), store_kv.to_cache), so tokens do
not change. The twin (vdeploy_kernels.reference.rope_store_kv) is that composition.

Grid (T, 1 + ceil(H / BLOCK_QH)): program 0 of a token rotates its key heads and writes key and value into the cache
(and k_rot), the others rotate BLOCK_QH query heads each, so a batch-1 decode step spreads over a few SMs instead
of one serial program (mla_rope_cache.py measured that trap). No host syncs: CUDA graphs capture it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.store_kv import to_cache

BLOCK_Q_HEADS = 8  # query heads per program: 4 + 1 programs per token at Llama-3.1-8B's 32 / 8 heads


@triton.jit
def _pair_offsets(offs_h, h_mask, stride_h, stride_d, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
                  INTERLEAVED: tl.constexpr):
    """(offsets of each pair's first channel [BH, BHALF], distance to its second, mask)."""
    offs = tl.arange(0, BLOCK_HALF)
    first = offs * 2 if INTERLEAVED else offs
    second = 1 if INTERLEAVED else HALF
    mask = h_mask[:, None] & (offs[None, :] < HALF)
    return offs_h[:, None] * stride_h + first[None, :] * stride_d, second * stride_d, mask


@triton.jit
def _rotated(src, offs_h, h_mask, stride_h, stride_d, cos, sin, out_ty: tl.constexpr, HALF: tl.constexpr,
             BLOCK_HALF: tl.constexpr, INTERLEAVED: tl.constexpr):
    """The rotated pairs (y1, y2) [BH, BHALF] of heads offs_h at src, rounded to out_ty exactly as rotary.py does."""
    offs, second, mask = _pair_offsets(offs_h, h_mask, stride_h, stride_d, HALF, BLOCK_HALF, INTERLEAVED)
    x1 = tl.load(src + offs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + offs + second, mask=mask, other=0.0).to(tl.float32)
    return (x1 * cos[None, :] - x2 * sin[None, :]).to(out_ty), (x2 * cos[None, :] + x1 * sin[None, :]).to(out_ty)


@triton.jit
def _store_pairs(dst, offs_h, h_mask, stride_h, stride_d, y1, y2, HALF: tl.constexpr, BLOCK_HALF: tl.constexpr,
                 INTERLEAVED: tl.constexpr):
    offs, second, mask = _pair_offsets(offs_h, h_mask, stride_h, stride_d, HALF, BLOCK_HALF, INTERLEAVED)
    tl.store(dst + offs, y1, mask=mask)
    tl.store(dst + offs + second, y2, mask=mask)


@triton.jit
def _channel_offsets(offs_h, h_mask, stride_h, stride_d, FIRST: tl.constexpr, END: tl.constexpr,
                     BLOCK: tl.constexpr):
    """Offsets [BH, BLOCK] and mask of channels FIRST..END of heads offs_h (the pass-through tail, or all of v)."""
    chans = FIRST + tl.arange(0, BLOCK)
    return offs_h[:, None] * stride_h + chans[None, :] * stride_d, h_mask[:, None] & (chans[None, :] < END)


@triton.jit
def _rotate_query_heads(q_ptr, q_out_ptr, token, part, cos, sin, stride_qt, stride_qh, stride_qd, stride_oqt,
                        stride_oqh, NUM_Q_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF: tl.constexpr,
                        INTERLEAVED: tl.constexpr, BLOCK_QH: tl.constexpr, BLOCK_HALF: tl.constexpr,
                        BLOCK_TAIL: tl.constexpr):
    """Query heads [(part - 1) * BQH, part * BQH) of one token, rotated into q_out (the tail copied)."""
    ROT_DIM: tl.constexpr = 2 * HALF
    offs_h = (part - 1) * BLOCK_QH + tl.arange(0, BLOCK_QH)
    h_mask = offs_h < NUM_Q_HEADS
    src = q_ptr + token * stride_qt
    dst = q_out_ptr + token * stride_oqt
    y1, y2 = _rotated(src, offs_h, h_mask, stride_qh, stride_qd, cos, sin, q_out_ptr.dtype.element_ty, HALF,
                      BLOCK_HALF, INTERLEAVED)
    _store_pairs(dst, offs_h, h_mask, stride_oqh, 1, y1, y2, HALF, BLOCK_HALF, INTERLEAVED)
    if BLOCK_TAIL > 0:  # partial rotary: the remaining channels are copied
        src_offs, src_mask = _channel_offsets(offs_h, h_mask, stride_qh, stride_qd, ROT_DIM, HEAD_DIM, BLOCK_TAIL)
        tail = tl.load(src + src_offs, mask=src_mask, other=0.0)
        dst_offs, dst_mask = _channel_offsets(offs_h, h_mask, stride_oqh, 1, ROT_DIM, HEAD_DIM, BLOCK_TAIL)
        tl.store(dst + dst_offs, tail, mask=dst_mask)


@triton.jit
def _rotate_store_kv_heads(k_ptr, v_ptr, k_out_ptr, slot_mapping_ptr, cache_ptr, token, cos, sin, inv_k_scale,
                           inv_v_scale, stride_kt, stride_kh, stride_kd, stride_vt, stride_vh, stride_vd, stride_okt,
                           stride_okh, stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
                           NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF: tl.constexpr,
                           INTERLEAVED: tl.constexpr, QUANT: tl.constexpr, PAGE_SIZE: tl.constexpr,
                           WRITE_K: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr,
                           BLOCK_TAIL: tl.constexpr, BLOCK_D: tl.constexpr):
    """All key heads of one token rotated, written with the values into the cache slot (and k_out when WRITE_K)."""
    ROT_DIM: tl.constexpr = 2 * HALF
    offs_h = tl.arange(0, BLOCK_KH)
    h_mask = offs_h < NUM_KV_HEADS
    src = k_ptr + token * stride_kt
    act_ty = k_ptr.dtype.element_ty
    k1, k2 = _rotated(src, offs_h, h_mask, stride_kh, stride_kd, cos, sin, act_ty, HALF, BLOCK_HALF, INTERLEAVED)
    if BLOCK_TAIL > 0:
        src_offs, src_mask = _channel_offsets(offs_h, h_mask, stride_kh, stride_kd, ROT_DIM, HEAD_DIM, BLOCK_TAIL)
        k_tail = tl.load(src + src_offs, mask=src_mask, other=0.0)
    if WRITE_K:  # every row, padding included, as rotary.py writes them
        k_dst = k_out_ptr + token * stride_okt
        _store_pairs(k_dst, offs_h, h_mask, stride_okh, 1, k1, k2, HALF, BLOCK_HALF, INTERLEAVED)
        if BLOCK_TAIL > 0:
            out_offs, out_mask = _channel_offsets(offs_h, h_mask, stride_okh, 1, ROT_DIM, HEAD_DIM, BLOCK_TAIL)
            tl.store(k_dst + out_offs, k_tail, mask=out_mask)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot >= 0:  # (names assigned in this branch are its own: Triton keeps a variable's shape across it)
        dest = cache_ptr + (slot // PAGE_SIZE) * stride_cb + (slot % PAGE_SIZE) * stride_cs
        _store_pairs(dest, offs_h, h_mask, stride_ch, stride_cd, to_cache(k1, inv_k_scale, cache_ptr, QUANT),
                     to_cache(k2, inv_k_scale, cache_ptr, QUANT), HALF, BLOCK_HALF, INTERLEAVED)
        if BLOCK_TAIL > 0:
            tail_offs, tail_mask = _channel_offsets(offs_h, h_mask, stride_ch, stride_cd, ROT_DIM, HEAD_DIM,
                                                    BLOCK_TAIL)
            tl.store(dest + tail_offs, to_cache(k_tail, inv_k_scale, cache_ptr, QUANT), mask=tail_mask)
        v_offs, v_mask = _channel_offsets(offs_h, h_mask, stride_vh, stride_vd, 0, HEAD_DIM, BLOCK_D)
        v = tl.load(v_ptr + token * stride_vt + v_offs, mask=v_mask, other=0.0)
        cv_offs, cv_mask = _channel_offsets(offs_h, h_mask, stride_ch, stride_cd, 0, HEAD_DIM, BLOCK_D)
        tl.store(dest + stride_ck + cv_offs, to_cache(v, inv_v_scale, cache_ptr, QUANT), mask=cv_mask)


@triton.jit
def _rope_store_kv_kernel(
    q_ptr, k_ptr, v_ptr, q_out_ptr, k_out_ptr, positions_ptr, cos_sin_ptr, slot_mapping_ptr, cache_ptr,
    inv_k_scale, inv_v_scale,
    stride_qt, stride_qh, stride_qd, stride_kt, stride_kh, stride_kd, stride_vt, stride_vh, stride_vd,
    stride_oqt, stride_oqh, stride_okt, stride_okh, stride_cos,
    stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
    NUM_Q_HEADS: tl.constexpr, NUM_KV_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr, HALF: tl.constexpr,
    INTERLEAVED: tl.constexpr, QUANT: tl.constexpr, PAGE_SIZE: tl.constexpr, WRITE_K: tl.constexpr,
    BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_HALF: tl.constexpr, BLOCK_TAIL: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)  # 0: keys and values into the cache; p > 0: query heads [(p - 1) * BQH, p * BQH)
    pos = tl.load(positions_ptr + token).to(tl.int64)
    offs_half = tl.arange(0, BLOCK_HALF)
    half_mask = offs_half < HALF
    cos = tl.load(cos_sin_ptr + pos * stride_cos + offs_half, mask=half_mask, other=0.0).to(tl.float32)
    sin = tl.load(cos_sin_ptr + pos * stride_cos + HALF + offs_half, mask=half_mask, other=0.0).to(tl.float32)
    # The two roles live in their own functions: a name assigned in both arms of this runtime branch must have one
    # shape in both, and the query block (BLOCK_QH heads) and the key block (BLOCK_KH) differ whenever the head
    # counts do (4 / 2 heads failed to compile on Triton 3.6; 32 / 8 happened to give 8 and 8).
    if part > 0:
        _rotate_query_heads(q_ptr, q_out_ptr, token, part, cos, sin, stride_qt, stride_qh, stride_qd, stride_oqt,
                            stride_oqh, NUM_Q_HEADS, HEAD_DIM, HALF, INTERLEAVED, BLOCK_QH, BLOCK_HALF, BLOCK_TAIL)
    else:
        _rotate_store_kv_heads(k_ptr, v_ptr, k_out_ptr, slot_mapping_ptr, cache_ptr, token, cos, sin, inv_k_scale,
                               inv_v_scale, stride_kt, stride_kh, stride_kd, stride_vt, stride_vh, stride_vd,
                               stride_okt, stride_okh, stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
                               NUM_KV_HEADS, HEAD_DIM, HALF, INTERLEAVED, QUANT, PAGE_SIZE, WRITE_K, BLOCK_KH,
                               BLOCK_HALF, BLOCK_TAIL, BLOCK_D)


def rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                  cos_sin_cache: torch.Tensor, kv_cache: torch.Tensor, slot_mapping: torch.Tensor,
                  k_scale: float = 1.0, v_scale: float = 1.0, interleaved: bool = False,
                  return_k: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    num_tokens, num_q_heads, head_dim = q.shape
    num_kv_heads = k.shape[1]
    rot_dim = cos_sin_cache.shape[-1]
    if rot_dim % 2 or not 0 < rot_dim <= head_dim:
        raise ValueError(f"rotary dim {rot_dim} must be even, positive and at most the head dim {head_dim}")
    if k.shape[2] != head_dim or v.shape[1:] != k.shape[1:] or kv_cache.shape[3:] != k.shape[1:]:
        raise ValueError(f"k {tuple(k.shape)}, v {tuple(v.shape)} and the cache {tuple(kv_cache.shape)} disagree")
    if kv_cache.shape[0] < 2:
        raise ValueError("rope_store_kv needs a key/value cache (2 components)")
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # [T, H, D]
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device) if return_k else None  # [T, Hk, D]
    if num_tokens == 0:
        return q_out, k_out
    if cos_sin_cache.stride(-1) != 1:
        cos_sin_cache = cos_sin_cache.contiguous()
    k_out_arg = k_out if k_out is not None else q_out  # unused when WRITE_K is False
    block_qh = min(BLOCK_Q_HEADS, triton.next_power_of_2(num_q_heads))
    tail = head_dim - rot_dim
    _rope_store_kv_kernel[(num_tokens, 1 + triton.cdiv(num_q_heads, block_qh))](
        q, k, v, q_out, k_out_arg, positions, cos_sin_cache, slot_mapping, kv_cache, 1.0 / k_scale, 1.0 / v_scale,
        *q.stride(), *k.stride(), *v.stride(),
        q_out.stride(0), q_out.stride(1), k_out_arg.stride(0), k_out_arg.stride(1), cos_sin_cache.stride(0),
        *kv_cache.stride(),
        NUM_Q_HEADS=num_q_heads, NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_dim, HALF=rot_dim // 2,
        INTERLEAVED=interleaved, QUANT=kv_cache.dtype.itemsize == 1, PAGE_SIZE=kv_cache.shape[2],
        WRITE_K=return_k, BLOCK_QH=block_qh, BLOCK_KH=triton.next_power_of_2(num_kv_heads),
        BLOCK_HALF=triton.next_power_of_2(rot_dim // 2),
        BLOCK_TAIL=triton.next_power_of_2(tail) if tail > 0 else 0, BLOCK_D=triton.next_power_of_2(head_dim),
        num_warps=4,
    )
    return q_out, k_out
