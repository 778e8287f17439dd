"""Building blocks shared by the prefill and decode paged-attention kernels.

The KV cache of one layer is [K, NB, BS, Hk, D] (K=2: key/value; K=1: MLA latent, values are its first Dv channels).
A tile of BLOCK_N consecutive context tokens of one request may span several pages, so each token's page id is
looked up in the request's block-table row and the tile is gathered token by token: any BLOCK_N works with any
page size BS, and a page size change never needs a new kernel.

Scores live in the log2 domain (`qk_scale` already holds softmax_scale * log2(e)) so the online softmax uses exp2.

FP8 cache (e4m3, one scale per layer and component): the tiles are converted to the query dtype in the inner loop
(exact: every e4m3 value is a bf16/fp16 value) and the scales are folded outside it: k_scale into qk_scale and
v_scale into the final output (see cache_scales). The twin dequantizes first (x_fp8 * scale); both agree up to
float rounding.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


def dot_width(dim: int) -> int:
    """Tile width of a head dimension that enters tl.dot: a power of two, at least 16 (the smallest tensor-core
    tile: a tiny test model's 8-wide heads would not compile). Channels beyond `dim` are masked."""
    return max(16, triton.next_power_of_2(dim))


def cache_scales(kv_cache, k_scale: float, v_scale: float) -> tuple[float, float]:
    """(k_scale, v_scale) the kernels apply: the given ones for an fp8 cache, 1.0 otherwise (a 16-bit cache holds
    the values themselves); a one-component cache (MLA latent) reads its values from the keys, so both are k_scale."""
    if kv_cache.dtype.itemsize != 1:
        return 1.0, 1.0
    return k_scale, (v_scale if kv_cache.shape[0] == 2 else k_scale)


@triton.jit
def token_offsets(block_table_row, offs_n, n_valid, kv_head, stride_page, stride_slot, stride_head,
                  PAGE_SIZE: tl.constexpr):
    """Element offsets [BLOCK_N] (int64) of (token, kv_head, channel 0) in one cache component."""
    page = tl.load(block_table_row + offs_n // PAGE_SIZE, mask=n_valid, other=0).to(tl.int64)
    return page * stride_page + (offs_n % PAGE_SIZE).to(tl.int64) * stride_slot + kv_head * stride_head


@triton.jit
def attend_tile(q, m_i, l_i, acc, k_base, v_base, tok_off, offs_d, offs_dv, stride_d, n_valid, allowed,
                qk_scale, HEAD_DIM: tl.constexpr, V_HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_DV: tl.constexpr, MASK_TOKENS: tl.constexpr, CAUSAL: tl.constexpr):
    """One online-softmax step of query rows q [M, BD] against one gathered KV tile.

    m_i, l_i [M]: running max / sum (log2 domain, scaled); acc [M, BDV] fp32 unnormalised output.
    MASK_TOKENS: n_valid [N] says which tokens exist (the tail tile); otherwise every token exists and the loads
    carry no mask at all. CAUSAL: allowed [M, N] says which keys each row may see. Channel masks appear only when
    the head dim is not a power of two, so the common loads stay unmasked along the contiguous dimension.
    """
    k_ptrs = k_base + tok_off[:, None] + offs_d[None, :] * stride_d
    v_ptrs = v_base + tok_off[:, None] + offs_dv[None, :] * stride_d
    if MASK_TOKENS:
        if HEAD_DIM == BLOCK_D:
            k = tl.load(k_ptrs, mask=n_valid[:, None], other=0.0)  # [N, BD]
        else:
            k = tl.load(k_ptrs, mask=n_valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)
    else:
        if HEAD_DIM == BLOCK_D:
            k = tl.load(k_ptrs)
        else:
            k = tl.load(k_ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
    s = tl.dot(q, tl.trans(k.to(q.dtype)))  # [M, N] unscaled; the scale is folded into the exp2 argument
    if CAUSAL:
        s = tl.where(allowed, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    # rows that have seen no visible key yet keep m = -inf; use 0 as their shift so no NaN appears
    m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp2(m_i - m_shift)
    p = tl.exp2(s * qk_scale - m_shift[:, None])  # [M, N], one FMA per score
    l_i = l_i * alpha + tl.sum(p, 1)
    if MASK_TOKENS:
        if V_HEAD_DIM == BLOCK_DV:
            v = tl.load(v_ptrs, mask=n_valid[:, None], other=0.0)  # [N, BDV]
        else:
            v = tl.load(v_ptrs, mask=n_valid[:, None] & (offs_dv[None, :] < V_HEAD_DIM), other=0.0)
    else:
        if V_HEAD_DIM == BLOCK_DV:
            v = tl.load(v_ptrs)
        else:
            v = tl.load(v_ptrs, mask=offs_dv[None, :] < V_HEAD_DIM, other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(q.dtype), v.to(q.dtype))
    return m_new, l_i, acc


@triton.jit
def online_softmax_step(s, m_i, l_i, acc, v, qk_scale, allowed, CAUSAL: tl.constexpr):
    """Fold one tile's unscaled scores s [M, N] and values v [N, DV] into the running max / sum (log2 domain, scaled)
    and the fp32 output acc [M, DV], for kernels over contiguous contexts whose tiles run in key order from key 0,
    which every row sees: the running max is finite from the first tile on, so no -inf guard (attend_tile has one).
    CAUSAL: allowed [M, N] says which keys each row may see."""
    if CAUSAL:
        s = tl.where(allowed, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s * qk_scale - m_new[:, None])  # [M, N]
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    return m_new, l_i, acc

