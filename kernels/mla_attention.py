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
benchmarks/kernels/mla_decode_sweep.py, else decode_tiles. value_split = 2 is the register-pressure variant: two
programs per head block, each owning half of the L value channels (the 64 × 512 fp32 accumulator of one program
spills at 8 warps on sm_90, ptxas: 255 registers + ~300 B of spills; halved, none) at the price of computing the
scores in both (×1.53 FLOPs). Measured on an H100 at R1 shapes (docs/performance.md, 2026-12-06 item 14): slower
than the default at batch >= 64 (best: 128 heads per program, ×0.87–0.93), so only a tuned table can pick it.
Twin: vdeploy_kernels.reference_deepseek.mla_attention.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _mla_split_kernel(
    q_ptr, q_rope_ptr, cache_ptr, block_tables_ptr, row_req_ptr, row_len_ptr, part_out_ptr, part_lse_ptr, out_ptr,
    scale, out_scale, H, stride_qt, stride_qh, stride_rt, stride_rh, stride_bt, stride_ot, stride_oh,
    BLOCK_SIZE: tl.constexpr, L: tl.constexpr, R: tl.constexpr, R_PAD: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, NUM_SPLITS: tl.constexpr, V_PARTS: tl.constexpr,
):
    # grid (T, head blocks × V_PARTS, NUM_SPLITS). V_PARTS = 2: two programs share a head block, each owns half of
    # the L value channels ([BH, L/2] accumulator: half the registers) and both compute the full 576-wide scores.
    row = tl.program_id(0)
    head_block = tl.program_id(1) // V_PARTS
    part = tl.program_id(1) % V_PARTS
    split = tl.program_id(2)
    LV: tl.constexpr = L // V_PARTS
    req = tl.load(row_req_ptr + row)
    ctx_len = tl.load(row_len_ptr + row)
    heads = head_block * BLOCK_H + tl.arange(0, BLOCK_H)  # [BH]
    head_mask = heads < H
    offs_v = part * LV + tl.arange(0, LV)  # this program's value channels (all L when V_PARTS == 1)
    offs_o = (1 - part) * LV + tl.arange(0, LV)  # the other half's channels (V_PARTS == 2 only)
    offs_r = tl.arange(0, R_PAD)
    q_base = q_ptr + row * stride_qt + heads[:, None] * stride_qh
    q_own = tl.load(q_base + offs_v[None, :], mask=head_mask[:, None], other=0.0)  # [BH, LV]
    if V_PARTS == 2:
        q_other = tl.load(q_base + offs_o[None, :], mask=head_mask[:, None], other=0.0)  # [BH, LV]
    rope_base = q_rope_ptr + row * stride_rt + heads[:, None] * stride_rh
    q_rope = tl.load(rope_base + offs_r[None, :], mask=head_mask[:, None] & (offs_r[None, :] < R), other=0.0)

    tokens_per_split = tl.cdiv(tl.cdiv(ctx_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * tokens_per_split
    end = tl.minimum(start + tokens_per_split, ctx_len)
    m_i = tl.full((BLOCK_H,), float("-inf"), dtype=tl.float32)
    l_i = tl.zeros((BLOCK_H,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_H, LV), dtype=tl.float32)
    width = L + R
    for tok0 in range(start, end, BLOCK_N):
        toks = tok0 + tl.arange(0, BLOCK_N)  # [BN]
        tok_mask = toks < end
        blk = tl.load(block_tables_ptr + req * stride_bt + toks // BLOCK_SIZE, mask=tok_mask, other=0)
        slot = blk.to(tl.int64) * BLOCK_SIZE + toks % BLOCK_SIZE
        kv_base = cache_ptr + slot * width
        # one load per channel range; the value tile is the own-channel key tile itself (no second read)
        k_own = tl.load(kv_base[:, None] + offs_v[None, :], mask=tok_mask[:, None], other=0.0)  # [BN, LV]
        k_rope = tl.load(kv_base[:, None] + L + offs_r[None, :], mask=tok_mask[:, None] & (offs_r[None, :] < R),
                         other=0.0)  # [BN, R_PAD]
        k_own = k_own.to(q_own.dtype)  # fp8 cache: exact widening (a no-op for a cache in q's dtype)
        k_rope = k_rope.to(q_rope.dtype)
        # the 576-wide product as separate dots into one accumulator: no padding of 576 to 1024
        s = tl.dot(q_own, tl.trans(k_own)) + tl.dot(q_rope, tl.trans(k_rope))  # [BH, BN]
        if V_PARTS == 2:
            k_other = tl.load(kv_base[:, None] + offs_o[None, :], mask=tok_mask[:, None], other=0.0)
            s += tl.dot(q_other, tl.trans(k_other.to(q_other.dtype)))
        s = s * scale
        s = tl.where(tok_mask[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(k_own.dtype), k_own)
        m_i = m_new
    has = l_i > 0
    result = acc / tl.where(has, l_i, 1.0)[:, None] * out_scale  # [BH, LV]
    if NUM_SPLITS == 1:  # the whole context in one program: the final output, no partials and no reduce launch
        out_rows = out_ptr + row * stride_ot + heads * stride_oh
        tl.store(out_rows[:, None] + offs_v[None, :], result.to(out_ptr.dtype.element_ty), mask=head_mask[:, None])
        return
    out_base = part_out_ptr + ((row * H + heads) * NUM_SPLITS + split) * L
    tl.store(out_base[:, None] + offs_v[None, :], result, mask=head_mask[:, None])
    # each value part keeps its own log-sum-exp: its scores were summed in its own order (bitwise-consistent reduce)
    lse = tl.where(has, m_i + tl.log(tl.where(has, l_i, 1.0)), float("-inf"))
    tl.store(part_lse_ptr + ((row * H + heads) * V_PARTS + part) * NUM_SPLITS + split, lse, mask=head_mask)


@triton.jit
def _mla_reduce_kernel(part_out_ptr, part_lse_ptr, out_ptr, H, stride_ot, stride_oh,
                       L: tl.constexpr, NUM_SPLITS: tl.constexpr, V_PARTS: tl.constexpr):
    # grid (T, H, V_PARTS): one head's L / V_PARTS value channels, merged over the splits by their lse
    row = tl.program_id(0)
    head = tl.program_id(1)
    part = tl.program_id(2)
    LV: tl.constexpr = L // V_PARTS
    offs_s = tl.arange(0, NUM_SPLITS)
    offs_l = part * LV + tl.arange(0, LV)
    lse = tl.load(part_lse_ptr + ((row * H + head) * V_PARTS + part) * NUM_SPLITS + offs_s)  # [S]
    m = tl.max(lse, axis=0)
    w = tl.where(lse > float("-inf"), tl.exp(lse - m), 0.0)
    base = (row * H + head) * NUM_SPLITS
    parts = tl.load(part_out_ptr + (base + offs_s)[:, None] * L + offs_l[None, :])  # [S, LV]
    out = tl.sum(parts * w[:, None], axis=0) / tl.sum(w, axis=0)
    tl.store(out_ptr + row * stride_ot + head * stride_oh + offs_l, out.to(out_ptr.dtype.element_ty))


KIND = "mla_decode"  # tuned tables: kernels/configs/mla_decode/, written by benchmarks/kernels/mla_decode_sweep.py
GRID_TARGET = 264  # programs to aim for when rows are few: two per SM of a 132-SM Hopper


def decode_tiles(num_heads: int) -> dict:
    """Heads per program: every head block re-reads the whole context, so R1's 128 heads (TP 1-2) take 64 per
    program (2 reads of the cache instead of 8 with 16-head blocks), at 8 warps to hold the [64, L] accumulator.
    Chosen by benchmarks/kernels/sweep_mla_decode.py on the H200 (results/2026-12-02-h200-mla-decode-sweep/):
    at 128 heads, context 1024, batch 1024 one layer takes 1.48 ms against 3.06 ms with 16-head blocks.
    value_split 1: one program owns all L value channels (2 halves the accumulator but recomputes the scores)."""
    if num_heads >= 64:
        return {"block_h": 64, "block_n": 64, "num_warps": 8, "num_stages": 2, "value_split": 1}
    return {"block_h": 16, "block_n": 32, "num_warps": 4, "num_stages": 2, "value_split": 1}


def default_splits(num_tokens: int, programs_per_row: int, grid_target: int = GRID_TARGET) -> int:
    """KV splits: enough programs to fill the GPU when rows are few (batch >= ~132 at R1: one split, no reduce).
    Depends only on T and the config, so a CUDA graph captured per batch size stays valid."""
    return max(1, min(16, triton.next_power_of_2(max(1, grid_target // (num_tokens * programs_per_row)))))


def config_name(num_heads: int, lora: int, rope: int, cache_dtype: torch.dtype, device_name: str) -> str:
    from vdeploy_kernels.tuned_tables import device_tag

    dtype = "fp8" if cache_dtype.itemsize == 1 else str(cache_dtype).removeprefix("torch.")
    return f"H{num_heads}-L{lora}-R{rope}-{dtype}-{device_tag(device_name)}.json"


def decode_config(num_heads: int, num_tokens: int, lora: int, rope: int, cache_dtype: torch.dtype,
                  device_index: int | None) -> dict:
    """Tiles (+ "grid_target", the programs the KV splits aim for, when a tuned table gives it) for T = num_tokens
    query rows on this GPU: the tuned table's nearest batch when one exists for (heads, L, R, cache dtype, GPU
    kind), else decode_tiles. device_index None (the CPU interpreter): the heuristic only."""
    if device_index is not None:
        from vdeploy_kernels import tuned_tables

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
    v_parts = tiles.get("value_split", 1)
    assert v_parts in (1, 2) and kv_lora_rank % (16 * v_parts) == 0
    head_blocks = triton.cdiv(h, block_h)
    if num_splits is None:
        num_splits = default_splits(t, head_blocks * v_parts, tiles.get("grid_target", GRID_TARGET))
    partial_rows = t if num_splits > 1 else 0  # one split writes `out` itself
    part_out = torch.empty(partial_rows, h, num_splits, kv_lora_rank, dtype=torch.float32, device=q.device)
    part_lse = torch.empty(partial_rows, h, v_parts, num_splits, dtype=torch.float32, device=q.device)
    block_size = kv_cache.shape[2]
    cache = kv_cache.view(-1, width)  # [NB*BS, L+R]
    kv_scale = kv_scale if kv_cache.dtype.itemsize == 1 else 1.0  # only an fp8 cache is scaled
    _mla_split_kernel[(t, head_blocks * v_parts, num_splits)](
        q, q_rope, cache, meta.block_tables, row_req, row_len, part_out, part_lse, out,
        scale * kv_scale, kv_scale, h, q.stride(0), q.stride(1), q_rope.stride(0), q_rope.stride(1),
        meta.block_tables.stride(0), out.stride(0), out.stride(1),
        BLOCK_SIZE=block_size, L=kv_lora_rank, R=rope, R_PAD=max(triton.next_power_of_2(rope), 16),
        BLOCK_H=block_h, BLOCK_N=tiles["block_n"], NUM_SPLITS=num_splits, V_PARTS=v_parts,
        num_warps=tiles["num_warps"], num_stages=tiles["num_stages"],
    )
    if num_splits > 1:
        _mla_reduce_kernel[(t, h, v_parts)](part_out, part_lse, out, h, out.stride(0), out.stride(1),
                                            L=kv_lora_rank, NUM_SPLITS=num_splits, V_PARTS=v_parts)
    return out
