"""MLA attention over the paged latent cache, absorbed form (Triton, split-KV with a reduction step).

mla_attention(q [T, H, L+R] or q_lat [T, H, L], kv_cache [1, NB, BS, 1, L+R], meta: AttentionMetadata, scale,
              kv_lora_rank=L, kv_scale=1.0, q_rope=None [T, H, R]) -> out [T, H, L]
q is the absorbed query: (q_nope · W_UK) ‖ q_rope, either concatenated or as two tensors of any row/head strides
(the model passes W_UK's bmm output as it comes, [H, T, L] transposed, so no concatenated copy is written). Every head attends to the same cached vectors
(c_kv ‖ k_rope), so this is multi-query attention with keys of width L+R (576 for R1) and values = the first L
channels (512). One program handles BLOCK_H heads of one query row and one KV split; the heads form the M dimension
of the tensor-core dots, so each cached vector is read once per head block, not once per head.

Prefill and extend rows use the same kernel: each query token becomes a row whose context ends at its own position
(causal), so chunked prefill and prefix-cache hits need nothing special. That re-reads the context once per query
token, which is fine for decode-dominated serving but not optimal for long prompts (see docs/performance.md).
Grid shape depends only on T (fixed splits), so the kernel can be captured in a CUDA graph.
FP8 latent cache (e4m3, cached = latent / kv_scale, one scale per layer): tiles are converted to q's dtype in the inner
loop (exact) and kv_scale is folded into the softmax scale and the partial outputs, outside the loop.
Config (decode_config): a tuned table per (heads, L, R, cache dtype, GPU kind) under configs/mla_decode/, written by
benchmarks/kernels/mla_decode_sweep.py, else decode_tiles. (A variant splitting the value channels over two programs
to relieve register pressure lost 7-21 % on an H100 at batch >= 64: it recomputes the scores; see
docs/performance.md, change 15.)
Twin: vdeploy_kernels.reference_deepseek.mla_attention.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels import tuned_tables
from vdeploy_kernels.attention_tiles import dot_width


@triton.jit
def _mla_split_kernel(
    q_ptr, q_rope_ptr, cache_ptr, block_tables_ptr, row_req_ptr, row_len_ptr, part_out_ptr, part_lse_ptr, out_ptr,
    scale, out_scale, H, stride_qt, stride_qh, stride_rt, stride_rh, stride_bt, stride_ot, stride_oh,
    BLOCK_SIZE: tl.constexpr, L: tl.constexpr, R: tl.constexpr, R_PAD: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr,
):
    row = tl.program_id(0)
    head_block = tl.program_id(1)
    split = tl.program_id(2)
    req = tl.load(row_req_ptr + row)
    ctx_len = tl.load(row_len_ptr + row)
    heads = head_block * BLOCK_H + tl.arange(0, BLOCK_H)  # [BH]
    head_mask = heads < H
    offs_l = tl.arange(0, L)
    offs_r = tl.arange(0, R_PAD)
    q_base = q_ptr + row * stride_qt + heads[:, None] * stride_qh
    q_nope = tl.load(q_base + offs_l[None, :], mask=head_mask[:, None], other=0.0)  # [BH, L]
    rope_base = q_rope_ptr + row * stride_rt + heads[:, None] * stride_rh
    q_rope = tl.load(rope_base + offs_r[None, :], mask=head_mask[:, None] & (offs_r[None, :] < R), other=0.0)

    tokens_per_split = tl.cdiv(tl.cdiv(ctx_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * tokens_per_split
    end = tl.minimum(start + tokens_per_split, ctx_len)
    m_i = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_H,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_H, L), dtype=tl.float32)
    width = L + R
    for tok0 in range(start, end, BLOCK_N):
        toks = tok0 + tl.arange(0, BLOCK_N)  # [BN]
        tok_mask = toks < end
        blk = tl.load(block_tables_ptr + req * stride_bt + toks // BLOCK_SIZE, mask=tok_mask, other=0)
        slot = blk.to(tl.int64) * BLOCK_SIZE + toks % BLOCK_SIZE
        kv_base = cache_ptr + slot * width
        k_nope = tl.load(kv_base[:, None] + offs_l[None, :], mask=tok_mask[:, None], other=0.0)  # [BN, L]
        k_rope = tl.load(kv_base[:, None] + L + offs_r[None, :], mask=tok_mask[:, None] & (offs_r[None, :] < R),
                         other=0.0)  # [BN, R_PAD]
        k_nope = k_nope.to(q_nope.dtype)  # fp8 cache: exact widening (a no-op for a cache in q's dtype)
        k_rope = k_rope.to(q_rope.dtype)
        s = tl.dot(q_nope, tl.trans(k_nope)) + tl.dot(q_rope, tl.trans(k_rope))  # [BH, BN]
        s = s * scale
        s = tl.where(tok_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(k_nope.dtype), k_nope)
        m_i = m_new
    has = l_i > 0
    result = acc / tl.where(has, l_i, 1.0)[:, None] * out_scale  # [BH, L]
    if NUM_SPLITS == 1:  # the whole context in one program: the final output, no partials and no reduce launch
        out_rows = out_ptr + row * stride_ot + heads * stride_oh
        tl.store(out_rows[:, None] + offs_l[None, :], result.to(out_ptr.dtype.element_ty), mask=head_mask[:, None])
        return
    out_base = part_out_ptr + ((row * H + heads) * NUM_SPLITS + split) * L
    tl.store(out_base[:, None] + offs_l[None, :], result, mask=head_mask[:, None])
    lse = tl.where(has, m_i + tl.log(tl.where(has, l_i, 1.0)), float("-inf"))
    tl.store(part_lse_ptr + (row * H + heads) * NUM_SPLITS + split, lse, mask=head_mask)


@triton.jit
def _mla_reduce_kernel(part_out_ptr, part_lse_ptr, out_ptr, H, stride_ot, stride_oh,
                       L: tl.constexpr, NUM_SPLITS: tl.constexpr):
    row = tl.program_id(0)
    head = tl.program_id(1)
    offs_s = tl.arange(0, NUM_SPLITS)
    offs_l = tl.arange(0, L)
    base = (row * H + head) * NUM_SPLITS
    lse = tl.load(part_lse_ptr + base + offs_s)  # [S]
    m = tl.max(lse, axis=0)
    w = tl.where(lse > float("-inf"), tl.exp(lse - m), 0.0)
    parts = tl.load(part_out_ptr + (base + offs_s)[:, None] * L + offs_l[None, :])  # [S, L]
    out = tl.sum(parts * w[:, None], axis=0) / tl.sum(w, axis=0)
    tl.store(out_ptr + row * stride_ot + head * stride_oh + offs_l, out.to(out_ptr.dtype.element_ty))


KIND = "mla_decode"  # tuned tables: kernels/configs/mla_decode/, written by benchmarks/kernels/mla_decode_sweep.py
GRID_TARGET = 264  # programs to aim for when rows are few: two per SM of a 132-SM Hopper


def decode_tiles(num_heads: int) -> dict:
    """Heads per program: every head block re-reads the whole context, so R1's 128 heads (TP 1-2) take 64 per
    program (2 reads of the cache instead of 8 with 16-head blocks), at 8 warps to hold the [64, L] accumulator.
    Chosen by an H200 sweep (results/2026-12-02-h200-mla-decode-sweep/; benchmarks/kernels/mla_decode_sweep.py now):
    at 128 heads, context 1024, batch 1024 one layer takes 1.48 ms against 3.06 ms with 16-head blocks."""
    if num_heads >= 64:
        return {"block_h": 64, "block_n": 64, "num_warps": 8, "num_stages": 2}
    return {"block_h": 16, "block_n": 32, "num_warps": 4, "num_stages": 2}


def default_splits(num_tokens: int, programs_per_row: int, grid_target: int = GRID_TARGET) -> int:
    """KV splits: enough programs to fill the GPU when rows are few (batch >= ~132 at R1: one split, no reduce).
    Depends only on T and the config, so a CUDA graph captured per batch size stays valid."""
    return max(1, min(16, triton.next_power_of_2(max(1, grid_target // (num_tokens * programs_per_row)))))


def config_name(num_heads: int, lora: int, rope: int, cache_dtype: torch.dtype, device_name: str) -> str:
    dtype = "fp8" if cache_dtype.itemsize == 1 else str(cache_dtype).removeprefix("torch.")
    return f"H{num_heads}-L{lora}-R{rope}-{dtype}-{tuned_tables.device_tag(device_name)}.json"


def decode_config(num_heads: int, num_tokens: int, lora: int, rope: int, cache_dtype: torch.dtype,
                  device_index: int | None) -> dict:
    """Tiles (+ "grid_target", the programs the KV splits aim for, when a tuned table gives it) for T = num_tokens
    query rows on this GPU: the tuned table's nearest batch when one exists for (heads, L, R, cache dtype, GPU
    kind), else decode_tiles. device_index None (the CPU interpreter): the heuristic only."""
    if device_index is not None:
        table = tuned_tables.find_table(KIND, lambda gpu: config_name(num_heads, lora, rope, cache_dtype, gpu),
                                        tuned_tables.device_name(device_index))
        if table is not None:
            return tuned_tables.nearest(table, num_tokens)
    return decode_tiles(num_heads)


def mla_attention(q: torch.Tensor, kv_cache: torch.Tensor, meta, scale: float, kv_lora_rank: int,
                  num_splits: int | None = None, tiles: dict | None = None, kv_scale: float = 1.0,
                  q_rope: torch.Tensor | None = None) -> torch.Tensor:
    if q_rope is None:  # one concatenated query: two views of it
        q, q_rope = q[..., :kv_lora_rank], q[..., kv_lora_rank:]
    t, h, _ = q.shape
    rope = q_rope.shape[-1]
    width = kv_lora_rank + rope
    assert q.stride(-1) == 1 and q_rope.stride(-1) == 1, "the channels of a query row must be contiguous"
    out = torch.empty(t, h, kv_lora_rank, dtype=q.dtype, device=q.device)
    if t == 0:
        return out
    row_req, row_len = (x[:t] for x in meta.query_rows)  # computed once per step for every layer
    if tiles is None:
        tiles = decode_config(h, t, kv_lora_rank, rope, kv_cache.dtype, q.device.index if q.is_cuda else None)
    block_h = tiles["block_h"]
    head_blocks = triton.cdiv(h, block_h)
    if num_splits is None:
        num_splits = default_splits(t, head_blocks, tiles.get("grid_target", GRID_TARGET))
    partial_rows = t if num_splits > 1 else 0  # one split writes `out` itself
    part_out = torch.empty(partial_rows, h, num_splits, kv_lora_rank, dtype=torch.float32, device=q.device)
    part_lse = torch.empty(partial_rows, h, num_splits, dtype=torch.float32, device=q.device)
    block_size = kv_cache.shape[2]
    cache = kv_cache.view(-1, width)  # [NB*BS, L+R]
    kv_scale = kv_scale if kv_cache.dtype.itemsize == 1 else 1.0  # only an fp8 cache is scaled
    _mla_split_kernel[(t, head_blocks, num_splits)](
        q, q_rope, cache, meta.block_tables, row_req, row_len, part_out, part_lse, out,
        scale * kv_scale, kv_scale, h, q.stride(0), q.stride(1), q_rope.stride(0), q_rope.stride(1),
        meta.block_tables.stride(0), out.stride(0), out.stride(1),
        BLOCK_SIZE=block_size, L=kv_lora_rank, R=rope, R_PAD=dot_width(rope),
        BLOCK_H=block_h, BLOCK_N=tiles["block_n"], NUM_SPLITS=num_splits,
        num_warps=tiles["num_warps"], num_stages=tiles["num_stages"],
    )
    if num_splits > 1:
        _mla_reduce_kernel[(t, h)](part_out, part_lse, out, h, out.stride(0), out.stride(1),
                                   L=kv_lora_rank, NUM_SPLITS=num_splits)
    return out
