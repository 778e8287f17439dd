"""Paged attention for decode rows: split-KV (flash-decoding) with a reduction step, GQA-aware.

Contract of `decode_attention`:
  q          [T, H, D]   row r (< num_decodes) is request r's single query token, at position seq_lens[r] - 1
  kv_cache   [K, NB, BS, Hk, D]  K=2 key/value; K=1 MLA latent cache whose first Dv channels are the values
  out        [T, H, Dv]  rows [0, num_decodes) are written
  seq_lens   [B] int32 on device (read only on device), block_tables [B, max_blocks] int32
A request with seq_len 0 (a padding row of a captured CUDA graph) gets zeros.

Stage 1, grid (num_decodes, Hk, num_splits): one program reads its KV head's share of the context exactly once
for the whole query group: the group's G query heads are the M dimension of tl.dot (padded to 16 rows, the
smallest tensor-core tile). Each request's context tiles are dealt to the splits in contiguous runs computed from
seq_lens on device, so the grid depends only on the batch size and the fixed split count: the kernel can be
captured in a CUDA graph once and replayed for any context lengths. Splits with no tiles exit at once.
Where a request's context fits one split (short contexts; every request of a batch that runs one split, as a batch
of 132+ sequences with 8 KV heads does on a 132-SM GPU) that split writes the output itself, and with one split for
the whole batch the second stage is not launched.
Stage 2, grid (num_decodes, H): merges the splits' partial outputs with their log-sum-exps (requests whose context
used one split are skipped). Merging in stage 1 instead (the last split to finish, by an atomic ticket, as split_k
does) was measured on an H100 and lost at 1-64 sequences (7.6 -> 17.6 us a call at batch 1): docs/performance.md,
change 38.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from vdeploy_kernels import tuned_tables
from vdeploy_kernels.attention_tiles import LOG2E, attend_tile, cache_scales, dot_width, token_offsets

MAX_SPLITS = 32  # enough to fill a 132-SM GPU from a single request with 8 KV heads (8 * 32 = 256 programs)
PROGRAMS_PER_SM = 8  # split until about this many stage-1 programs per SM are in flight (4 left batch-256 GQA-4 decodes at 0.46 of bandwidth)


@dataclass(frozen=True)
class DecodeConfig:
    block_n: int  # context tokens per tile
    num_splits: int
    num_warps: int
    num_stages: int


def default_num_splits(num_decodes: int, num_kv_heads: int, device: torch.device) -> int:
    """Splits per (request, KV head) from the batch shape alone (never from context lengths, which live on the
    device and change between replays of a captured graph)."""
    if device.type != "cuda":
        return 4
    sm_count = torch.cuda.get_device_properties(device).multi_processor_count
    wanted = triton.cdiv(PROGRAMS_PER_SM * sm_count, max(num_decodes * num_kv_heads, 1))
    return max(1, min(MAX_SPLITS, wanted))


KIND = "decode_attention"  # tuned tables: configs/decode_attention/, written by benchmarks/kernels/decode_attention_sweep.py


def config_name(head_dim: int, group: int, cache_dtype: torch.dtype, device_name: str) -> str:
    dtype = str(cache_dtype).removeprefix("torch.")
    return f"D{head_dim}-G{group}-{dtype}-{tuned_tables.device_tag(device_name)}.json"


def tuned_decode_config(num_decodes: int, head_dim: int, group: int, cache_dtype: torch.dtype,
                        device: torch.device) -> DecodeConfig | None:
    """This GPU kind's tuned config for exactly num_decodes rows (a captured decode batch size), else None. Rows are
    tuned per batch size over several context lengths: the config must suit any context a graph replays."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    row = tuned_tables.exact_row(KIND, lambda gpu: config_name(head_dim, group, cache_dtype, gpu),
                                 tuned_tables.device_name(index), num_decodes)
    return DecodeConfig(**row) if row else None


def default_decode_config(num_decodes: int, num_kv_heads: int, head_dim: int, device: torch.device) -> DecodeConfig:
    splits = default_num_splits(num_decodes, num_kv_heads, device)
    if device.type != "cuda":
        return DecodeConfig(32, splits, 4, 1)
    if head_dim <= 128:  # H100 sweep: 128-token tiles, 2 stages: 0.94 of copy bandwidth at batch 32 x 8k
        return DecodeConfig(128, splits, 4, 2)
    if head_dim <= 256:
        return DecodeConfig(32, splits, 4, 2)
    return DecodeConfig(32, splits, 8, 1)  # MLA-sized vectors: one stage keeps the K/V tiles in shared memory


@triton.jit
def _decode_split_kernel(
    q_ptr, cache_ptr, out_ptr, part_out_ptr, part_lse_ptr, block_tables_ptr, seq_lens_ptr,
    qk_scale, v_scale, v_component, num_splits,
    stride_qt, stride_qh, stride_qd,
    stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
    stride_bt, stride_ot, stride_oh, stride_od,
    GROUP: tl.constexpr, PAGE_SIZE: tl.constexpr,
    HEAD_DIM: tl.constexpr, V_HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
):
    req = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + req)
    num_tiles = tl.cdiv(seq_len, BLOCK_N)
    tiles_per_split = tl.cdiv(num_tiles, num_splits)
    tile_begin = split * tiles_per_split
    tile_end = tl.minimum(tile_begin + tiles_per_split, num_tiles)
    offs_g = tl.arange(0, BLOCK_G)
    heads = kv_head * GROUP + offs_g  # [G] the query heads sharing this KV head
    g_valid = offs_g < GROUP
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    out_ptrs = out_ptr + req.to(tl.int64) * stride_ot + heads[:, None] * stride_oh + offs_dv[None, :] * stride_od
    out_mask = g_valid[:, None] & (offs_dv[None, :] < V_HEAD_DIM)  # [G, BDV]
    if tile_begin >= tile_end:
        if num_tiles == 0 and split == 0:  # seq_len 0 (a captured graph's padding row): zeros, not NaN
            tl.store(out_ptrs, tl.zeros([BLOCK_G, BLOCK_DV], tl.float32).to(out_ptr.dtype.element_ty), mask=out_mask)
        return
    q = tl.load(q_ptr + req.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + offs_d[None, :] * stride_qd,
                mask=g_valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)  # [G, BD]

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_DV], tl.float32)
    block_table_row = block_tables_ptr + req.to(tl.int64) * stride_bt
    v_base = cache_ptr + v_component * stride_ck
    # the decode token sits at seq_len - 1: every existing key is visible, so only the request's last (partial)
    # tile needs masks; the full tiles before it load unmasked
    full_end = tl.minimum(tile_end, seq_len // BLOCK_N)
    for tile in range(tile_begin, full_end):
        offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        n_valid = offs_n < seq_len
        tok_off = token_offsets(block_table_row, offs_n, n_valid, kv_head, stride_cb, stride_cs, stride_ch,
                                PAGE_SIZE)
        m_i, l_i, acc = attend_tile(q, m_i, l_i, acc, cache_ptr, v_base, tok_off, offs_d, offs_dv, stride_cd,
                                    n_valid, n_valid[None, :], qk_scale, HEAD_DIM, V_HEAD_DIM, BLOCK_D, BLOCK_DV,
                                    False, False)
    for tile in range(tl.maximum(full_end, tile_begin), tile_end):
        offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        n_valid = offs_n < seq_len
        tok_off = token_offsets(block_table_row, offs_n, n_valid, kv_head, stride_cb, stride_cs, stride_ch,
                                PAGE_SIZE)
        m_i, l_i, acc = attend_tile(q, m_i, l_i, acc, cache_ptr, v_base, tok_off, offs_d, offs_dv, stride_cd,
                                    n_valid, n_valid[None, :], qk_scale, HEAD_DIM, V_HEAD_DIM, BLOCK_D, BLOCK_DV,
                                    True, True)

    if tiles_per_split >= num_tiles:  # the whole context in this split: the output, no partial
        tl.store(out_ptrs, (acc / l_i[:, None] * v_scale).to(out_ptr.dtype.element_ty), mask=out_mask)
        return
    # partials: [num_decodes, H, num_splits, BLOCK_DV] fp32 (normalised) and lse [num_decodes, H, num_splits]
    row = (req * (GROUP * tl.num_programs(1)) + heads).to(tl.int64) * num_splits + split  # [G]
    tl.store(part_out_ptr + row[:, None] * BLOCK_DV + offs_dv[None, :], acc / l_i[:, None],
             mask=g_valid[:, None])
    tl.store(part_lse_ptr + row, m_i + tl.log2(l_i), mask=g_valid)


@triton.jit
def _decode_reduce_kernel(
    part_out_ptr, part_lse_ptr, out_ptr, seq_lens_ptr, num_splits, v_scale,
    stride_ot, stride_oh, stride_od,
    BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr,
    V_HEAD_DIM: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    req = tl.program_id(0)
    head = tl.program_id(1)
    seq_len = tl.load(seq_lens_ptr + req)
    num_tiles = tl.cdiv(seq_len, BLOCK_N)
    tiles_per_split = tl.cdiv(num_tiles, num_splits)
    num_active = tl.cdiv(num_tiles, tl.maximum(tiles_per_split, 1))  # splits that wrote a partial
    if num_active <= 1:  # one split wrote the output (or zeros for an empty context)
        return
    offs_s = tl.arange(0, BLOCK_S)
    offs_dv = tl.arange(0, BLOCK_DV)
    s_valid = offs_s < num_active
    row = (req * tl.num_programs(1) + head).to(tl.int64) * num_splits + offs_s  # [S]
    lse = tl.load(part_lse_ptr + row, mask=s_valid, other=float("-inf"))  # [S]
    lse_max = tl.max(lse, 0)
    lse_max = tl.where(lse_max == float("-inf"), 0.0, lse_max)
    weight = tl.exp2(lse - lse_max)  # [S], 0 for inactive splits
    parts = tl.load(part_out_ptr + row[:, None] * BLOCK_DV + offs_dv[None, :], mask=s_valid[:, None], other=0.0)
    total = tl.sum(weight, 0)
    total = tl.where(total == 0.0, 1.0, total)  # seq_len 0: no split ran, the output is zeros
    result = tl.sum(parts * weight[:, None], 0) / total * v_scale  # [BDV]; v_scale: fp8 cache (1.0 otherwise)
    tl.store(out_ptr + req.to(tl.int64) * stride_ot + head * stride_oh + offs_dv * stride_od,
             result.to(out_ptr.dtype.element_ty), mask=offs_dv < V_HEAD_DIM)


def decode_attention(
    q: torch.Tensor,  # [T, H, D]
    kv_cache: torch.Tensor,  # [K, NB, BS, Hk, D]
    out: torch.Tensor,  # [T, H, Dv]
    seq_lens: torch.Tensor,  # [B] int32
    block_tables: torch.Tensor,  # [B, max_blocks] int32
    num_decodes: int,
    scale: float,
    v_head_dim: int,
    config: DecodeConfig | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> None:
    """Attention of the single query token of requests [0, num_decodes) over their paged contexts.
    k_scale / v_scale: an fp8 cache's per-layer scales (ignored for other caches; see attention_tiles)."""
    if num_decodes == 0:
        return
    num_heads, head_dim = q.shape[1], q.shape[2]
    page_size, num_kv_heads = kv_cache.shape[2], kv_cache.shape[3]
    group = num_heads // num_kv_heads
    k_scale, v_scale = cache_scales(kv_cache, k_scale, v_scale)
    cfg = (config or tuned_decode_config(num_decodes, head_dim, group, kv_cache.dtype, q.device)
           or default_decode_config(num_decodes, num_kv_heads, head_dim, q.device))
    block_dv = dot_width(v_head_dim)
    # scratch is allocated per call: inside CUDA-graph capture it comes from the graph's private pool
    partial_rows = num_decodes if cfg.num_splits > 1 else 0  # one split writes `out` itself
    part_out = torch.empty(partial_rows, num_heads, cfg.num_splits, block_dv, dtype=torch.float32, device=q.device)
    part_lse = torch.empty(partial_rows, num_heads, cfg.num_splits, dtype=torch.float32, device=q.device)
    _decode_split_kernel[(num_decodes, num_kv_heads, cfg.num_splits)](
        q, kv_cache, out, part_out, part_lse, block_tables, seq_lens,
        scale * k_scale * LOG2E, v_scale, 1 if kv_cache.shape[0] == 2 else 0, cfg.num_splits,
        q.stride(0), q.stride(1), q.stride(2),
        *kv_cache.stride(),
        block_tables.stride(0), out.stride(0), out.stride(1), out.stride(2),
        GROUP=group, PAGE_SIZE=page_size,
        HEAD_DIM=head_dim, V_HEAD_DIM=v_head_dim,
        BLOCK_D=dot_width(head_dim), BLOCK_DV=block_dv,
        BLOCK_G=dot_width(group), BLOCK_N=cfg.block_n,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    if cfg.num_splits == 1:  # every request's context was one split: outputs written
        return
    _decode_reduce_kernel[(num_decodes, num_heads)](
        part_out, part_lse, out, seq_lens, cfg.num_splits, v_scale,
        out.stride(0), out.stride(1), out.stride(2),
        BLOCK_S=triton.next_power_of_2(cfg.num_splits), BLOCK_N=cfg.block_n,
        V_HEAD_DIM=v_head_dim, BLOCK_DV=block_dv, num_warps=4,
    )
