"""Paged causal attention for prefill and extend: variable-length queries against each request's paged context.

Contract of `prefill_attention`:
  q            [T, H, D]      query rows of the whole flat batch (any strides), fp16/bf16/fp32
  kv_cache     [K, NB, BS, Hk, D]  K=2 key/value; K=1 MLA latent cache whose first Dv channels are the values
  out          [T, H, Dv]     written only at the rows of requests [first_req, first_req + num_reqs)
  query_start_loc [B + 1] int32, seq_lens [B] int32, block_tables [B, max_blocks] int32 (all on q's device)
Request r owns rows query_start_loc[r]:query_start_loc[r+1] (q_len rows); its context holds seq_lens[r] tokens,
already stored in the cache, the last q_len of which are these rows. Row i sits at position seq_len - q_len + i
and attends to keys [0, position]. A cached prefix (chunked prefill, prefix-cache hit) is therefore just
seq_len > q_len. GQA: query head h reads KV head h // (H // Hk).

Grid: (query blocks of the longest request, H, requests). Key tiles fully below the first row of a query block
need no causal mask and run through the unmasked loop; only the last few tiles pay for the mask.
skip_fresh: requests with no cached prefix (seq_len == q_len) are left to fresh_prefill_attention.py, which reads
their K/V from the contiguous k / v of this step (see paged_attention.py for the choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from vdeploy_kernels.attention_tiles import LOG2E, attend_tile, cache_scales, dot_width, token_offsets
from vdeploy_kernels.prefill_attention_configs import tuned_config


@dataclass(frozen=True)
class PrefillConfig:
    block_m: int  # query rows per program
    block_n: int  # context tokens per tile
    num_warps: int
    num_stages: int


def default_prefill_config(head_dim: int, device: torch.device, max_query_len: int | None = None,
                           group: int | None = None, dtype: torch.dtype | None = None) -> PrefillConfig:
    """A tuned table's entry for this GPU if there is one (group and dtype given; prefill_attention_configs.py),
    else a launch config by heuristic (no autotuning: it must work without a GPU), from the H100 sweep in
    benchmarks/results/kernels-h100-2026-11-23-sweep2.md: for D=128, 256-row query blocks reuse each gathered K/V
    tile twice as often as 128-row ones (+20% TFLOP/s); for D=64, 128 x 64 with 8 warps is best. Short queries
    get smaller blocks so padding rows do not dominate. Large D shrinks the tiles to keep Q and the accumulator
    in registers."""
    if group is not None and dtype is not None:
        tuned = tuned_config("paged", head_dim, group, dtype, device, max_query_len)
        if tuned is not None:
            return PrefillConfig(**tuned)
    if device.type != "cuda":  # interpreter: big tiles mean fewer (slow, Python-level) programs
        return PrefillConfig(32, 32, 4, 1)
    short = max_query_len is not None and max_query_len <= 64
    if head_dim <= 64:
        return PrefillConfig(64, 64, 4, 3) if short else PrefillConfig(128, 64, 8, 3)
    if head_dim <= 128:
        if short:
            return PrefillConfig(64, 64, 4, 3)
        long_queries = max_query_len is None or max_query_len > 128
        return PrefillConfig(256, 64, 8, 3) if long_queries else PrefillConfig(128, 64, 8, 3)
    if head_dim <= 256:
        return PrefillConfig(64, 32, 8, 2)
    return PrefillConfig(32, 32, 8, 1)


@triton.jit
def _prefill_kernel(
    q_ptr, cache_ptr, out_ptr, block_tables_ptr, query_start_loc_ptr, seq_lens_ptr,
    first_req, qk_scale, v_component, v_scale,
    stride_qt, stride_qh, stride_qd,
    stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
    stride_ot, stride_oh, stride_od,
    stride_bt,
    GROUP: tl.constexpr, PAGE_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr, V_HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SKIP_FRESH: tl.constexpr,
):
    # the longest query blocks (largest positions, most keys) are launched first to balance the tail
    m_block = tl.num_programs(0) - 1 - tl.program_id(0)
    head = tl.program_id(1)
    req = first_req + tl.program_id(2)
    q_start = tl.load(query_start_loc_ptr + req)
    q_len = tl.load(query_start_loc_ptr + req + 1) - q_start
    if m_block * BLOCK_M >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + req)
    prefix_len = seq_len - q_len
    if SKIP_FRESH:
        if prefix_len == 0:  # the fresh kernel's request
            return
    kv_head = head // GROUP

    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)  # [M] row index within the request
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_valid = offs_m < q_len
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_qt + head * stride_qh + offs_d[None, :] * stride_qd,
                mask=row_valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)  # [M, BD]
    q_pos = prefix_len + offs_m  # [M]

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    block_table_row = block_tables_ptr + req.to(tl.int64) * stride_bt
    k_base = cache_ptr
    v_base = cache_ptr + v_component * stride_ck

    first_pos = prefix_len + m_block * BLOCK_M
    last_pos = tl.minimum(first_pos + BLOCK_M, seq_len) - 1
    unmasked_end = ((first_pos + 1) // BLOCK_N) * BLOCK_N  # tiles wholly visible to every row of the block
    for n_start in range(0, unmasked_end, BLOCK_N):
        offs_n = n_start + tl.arange(0, BLOCK_N)
        n_valid = offs_n < seq_len  # always true here: the loads below carry no token mask
        tok_off = token_offsets(block_table_row, offs_n, n_valid, kv_head, stride_cb, stride_cs, stride_ch,
                                PAGE_SIZE)
        m_i, l_i, acc = attend_tile(q, m_i, l_i, acc, k_base, v_base, tok_off, offs_d, offs_dv, stride_cd,
                                    n_valid, n_valid[None, :], qk_scale, HEAD_DIM, V_HEAD_DIM, BLOCK_D, BLOCK_DV,
                                    False, False)
    for n_start in range(unmasked_end, last_pos + 1, BLOCK_N):
        offs_n = n_start + tl.arange(0, BLOCK_N)
        n_valid = offs_n < seq_len
        allowed = (offs_n[None, :] <= q_pos[:, None]) & n_valid[None, :]
        tok_off = token_offsets(block_table_row, offs_n, n_valid, kv_head, stride_cb, stride_cs, stride_ch,
                                PAGE_SIZE)
        m_i, l_i, acc = attend_tile(q, m_i, l_i, acc, k_base, v_base, tok_off, offs_d, offs_dv, stride_cd,
                                    n_valid, allowed, qk_scale, HEAD_DIM, V_HEAD_DIM, BLOCK_D, BLOCK_DV,
                                    True, True)

    l_safe = tl.where(l_i == 0.0, 1.0, l_i)  # only padding rows can have l == 0; they are not stored
    result = acc / l_safe[:, None] * v_scale  # v_scale: an fp8 cache's value scale (1.0 otherwise)
    tl.store(out_ptr + q_rows[:, None] * stride_ot + head * stride_oh + offs_dv[None, :] * stride_od,
             result.to(out_ptr.dtype.element_ty), mask=row_valid[:, None] & (offs_dv[None, :] < V_HEAD_DIM))


def prefill_attention(
    q: torch.Tensor,  # [T, H, D]
    kv_cache: torch.Tensor,  # [K, NB, BS, Hk, D]
    out: torch.Tensor,  # [T, H, Dv]
    query_start_loc: torch.Tensor,  # [B + 1] int32
    seq_lens: torch.Tensor,  # [B] int32
    block_tables: torch.Tensor,  # [B, max_blocks] int32
    first_req: int,
    num_reqs: int,
    max_query_len: int,
    scale: float,
    v_head_dim: int,
    config: PrefillConfig | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    skip_fresh: bool = False,
) -> None:
    """Causal paged attention for requests [first_req, first_req + num_reqs); writes their rows of `out`.
    k_scale / v_scale: an fp8 cache's per-layer scales (ignored for other caches; see attention_tiles).
    skip_fresh: leave the requests without a cached prefix untouched (the fresh kernel writes them)."""
    if num_reqs == 0 or max_query_len == 0:
        return
    k_scale, v_scale = cache_scales(kv_cache, k_scale, v_scale)
    num_heads, head_dim = q.shape[1], q.shape[2]
    page_size, num_kv_heads = kv_cache.shape[2], kv_cache.shape[3]
    cfg = config or default_prefill_config(head_dim, q.device, max_query_len, num_heads // num_kv_heads, q.dtype)
    grid = (triton.cdiv(max_query_len, cfg.block_m), num_heads, num_reqs)
    _prefill_kernel[grid](
        q, kv_cache, out, block_tables, query_start_loc, seq_lens,
        first_req, scale * k_scale * LOG2E, 1 if kv_cache.shape[0] == 2 else 0, v_scale,
        q.stride(0), q.stride(1), q.stride(2),
        *kv_cache.stride(),
        out.stride(0), out.stride(1), out.stride(2),
        block_tables.stride(0),
        GROUP=num_heads // num_kv_heads, PAGE_SIZE=page_size,
        HEAD_DIM=head_dim, V_HEAD_DIM=v_head_dim,
        BLOCK_D=dot_width(head_dim), BLOCK_DV=dot_width(v_head_dim),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, SKIP_FRESH=skip_fresh,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
