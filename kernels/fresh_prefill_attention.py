"""Causal prefill attention for requests with no cached prefix, reading K/V from this step's contiguous k / v.

A fresh prompt's context is exactly its new rows, whose keys and values were just projected: k, v [T, Hk, D] hold
them row for row beside q (the cache copy is identical for a 16-bit cache). Reading them there instead of gathering
token by token through the block table turns every K/V tile into one strided 2-D block: vectorised loads the
compiler can pipeline (cp.async on Hopper), no per-token page lookups and no int64 offset tensor per tile.

Contract of `fresh_prefill_attention`:
  q     [T, H, D]    query rows of the flat batch (any strides), fp16/bf16/fp32
  k     [T, Hk, D]   keys of the same rows (any strides);  v [T, Hk, Dv] values
  out   [T, H, Dv]   written only at the rows of requests [first_req, first_req + num_reqs) with no prefix
  query_start_loc [B + 1] int32, seq_lens [B] int32
Request r owns rows query_start_loc[r]:query_start_loc[r+1] (q_len rows). If seq_lens[r] != q_len (a cached
prefix) its programs return at once: the paged kernel handles it (see paged_attention.py). Row i attends keys
[0, i] of its own request. GQA: query head h reads KV head h // (H // Hk).

Grid: (query blocks of the longest request, H // PACK, requests). PACK query heads of one KV head share a program:
its BLOCK_M * PACK rows are (token, head) pairs, token-major, so every K/V tile loaded serves PACK heads (more
reuse per load for a given BLOCK_M, or a smaller BLOCK_M for short prompts at the same tile reuse).
K is loaded already transposed ([D, N] block, D contiguous), so the QK^T product needs no tl.trans.
Key tiles wholly below the first row of a query block run unmasked; only the diagonal tiles pay for the mask.

device_tma (FreshPrefillConfig, with tma): the K/V descriptors are made in the kernel (tl.make_tensor_descriptor)
instead of on the host; measured 1.09-1.19x the host-descriptor config on an H100 at 8 x 4096 (Llama-8B shape), so
the H100 table turns it on (benchmarks/kernels/prefill_attention_sweep.py --new-options). Warp specialization and
lazy rescaling were measured there too and lost (0.43-0.89x, with NaNs in three configs; 0.88-0.90x): removed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import triton
import triton.language as tl

from vdeploy_kernels.attention_tiles import LOG2E, dot_width, online_softmax_step
from vdeploy_kernels.prefill_attention_configs import tuned_config


@dataclass(frozen=True)
class FreshPrefillConfig:
    block_m: int  # query tokens per program
    block_n: int  # key tokens per tile
    pack: int  # query heads of one KV head per program (divides H // Hk; larger values fall back to 1)
    num_warps: int
    num_stages: int
    tma: bool = False  # K/V tiles through TMA descriptors (Hopper+; power-of-two head dims, aligned views only)
    # with tma: descriptors built in the kernel (tl.make_tensor_descriptor) from a scratch allocation
    # triton.set_allocator provides, instead of on the host (1.09-1.19x on an H100: the H100 table's choice)
    device_tma: bool = False


# options an earlier sweep wrote into tables (as false unless chosen) and the kernel no longer has
REMOVED_OPTIONS = ("warp_specialize", "lazy_rescale")


def fresh_config_from_table(entry: dict) -> FreshPrefillConfig:
    """A tuned table's entry as a config. A removed option written as false (what the earlier sweep wrote for every
    config) is dropped; one set true, or a field the config does not know, is refused with the reason."""
    entry = {k: v for k, v in entry.items() if not (k in REMOVED_OPTIONS and v is False)}
    unknown = sorted(set(entry) - {f.name for f in fields(FreshPrefillConfig)})
    if unknown:
        removed = [k for k in unknown if k in REMOVED_OPTIONS]
        why = (f"{removed} were removed from the kernel (measured slower on an H100)" if removed
               else "not fields of FreshPrefillConfig")
        raise ValueError(f"tuned fresh prefill attention table entry {entry}: {unknown} {why}; rerun "
                         "benchmarks/kernels/prefill_attention_sweep.py or delete that table")
    return FreshPrefillConfig(**entry)


def default_fresh_config(head_dim: int, group: int, dtype: torch.dtype, device: torch.device,
                         max_query_len: int | None = None) -> FreshPrefillConfig:
    """A tuned table's entry if this GPU has one, else a heuristic (never autotuning: it must work with no GPU).
    Heuristic for Hopper, from the layout of FlashAttention-style Triton kernels (not yet measured here):
    128 x 128 tiles with 8 warps for D <= 128 (Q, the fp32 accumulator and one score tile fit in registers);
    short prompts pack the group's heads so a 32-token block still fills a 128-row tensor-core tile."""
    tuned = tuned_config("fresh", head_dim, group, dtype, device, max_query_len)
    if tuned is not None:
        return fresh_config_from_table(tuned)
    if device.type != "cuda":  # interpreter: big tiles mean fewer (slow, Python-level) programs
        return FreshPrefillConfig(32, 32, 1, 4, 1)
    short = max_query_len is not None and max_query_len <= 64
    pack = 4 if short and group % 4 == 0 else 1
    if head_dim <= 64:
        return FreshPrefillConfig(128 // pack, 64, pack, 4, 3)
    if head_dim <= 128:
        return FreshPrefillConfig(128 // pack, 64 if short else 128, pack, 8, 3)
    if head_dim <= 256:
        return FreshPrefillConfig(64, 32, 1, 8, 2)
    return FreshPrefillConfig(32, 32, 1, 8, 1)


@triton.jit
def _masked_kv_tile(k_src, v_src, kt_ptrs, v_ptrs, row, kv_head, n_valid, d_valid, dv_valid,
                    HEAD_DIM: tl.constexpr, V_HEAD_DIM: tl.constexpr, USE_TMA: tl.constexpr):
    """K^T [BD, N] and V [N, BDV] of a key tile that may run past its request (n_valid [N]: keys that exist), from
    the descriptors at batch row `row` or from the pointer tiles."""
    if USE_TMA:
        # the descriptor spans the whole batch: keys past the request are the next request's (masked out of the
        # scores); their values are zeroed so that p = 0 meets finite numbers only
        kt = tl.trans(k_src.load([row, kv_head * HEAD_DIM]))
        v = tl.where(n_valid[:, None], v_src.load([row, kv_head * V_HEAD_DIM]), 0.0)
    else:
        kt = tl.load(kt_ptrs, mask=d_valid[:, None] & n_valid[None, :], other=0.0)
        v = tl.load(v_ptrs, mask=n_valid[:, None] & dv_valid[None, :], other=0.0)
    return kt, v


@triton.jit
def _fresh_prefill_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, query_start_loc_ptr, seq_lens_ptr,
    first_req, qk_scale, num_rows,
    stride_qt, stride_qh, stride_qd,
    stride_kt, stride_kh, stride_kd,
    stride_vt, stride_vh, stride_vd,
    stride_ot, stride_oh, stride_od,
    GROUP: tl.constexpr, PACK: tl.constexpr,
    HEAD_DIM: tl.constexpr, V_HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, USE_TMA: tl.constexpr, DEVICE_TMA: tl.constexpr,
    NUM_KV_HEADS: tl.constexpr,
):
    # the longest query blocks (most keys) are launched first to balance the tail
    m_block = tl.num_programs(0) - 1 - tl.program_id(0)
    first_head = tl.program_id(1) * PACK
    req = first_req + tl.program_id(2)
    q_start = tl.load(query_start_loc_ptr + req)
    q_len = tl.load(query_start_loc_ptr + req + 1) - q_start
    if m_block * BLOCK_M >= q_len:
        return
    if tl.load(seq_lens_ptr + req) != q_len:  # a cached prefix: the paged kernel's request
        return
    kv_head = first_head // GROUP

    rows = tl.arange(0, BLOCK_M * PACK)  # [R] (token, head) pairs, token-major
    offs_m = m_block * BLOCK_M + rows // PACK  # [R] token (= key position) within the request
    heads = first_head + rows % PACK  # [R]
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    row_valid = offs_m < q_len
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_qt + heads[:, None] * stride_qh + offs_d[None, :] * stride_qd,
                mask=row_valid[:, None] & (offs_d[None, :] < HEAD_DIM), other=0.0)  # [R, BD]

    # this request's keys as a transposed [BD, N] tile (channels contiguous: vectorised loads, no tl.trans before
    # the dot) and values as [N, BDV]; plain strided pointers advanced by one tile per step, which the pipeliner
    # turns into asynchronous copies (block pointers are gone from newer Triton, whose interpreter runs the tests).
    # USE_TMA: k_ptr / v_ptr are TMA descriptors of [T, Hk * D] instead, addressed by (row, channel) coordinates;
    # DEVICE_TMA: k_ptr / v_ptr are the tensors, and the descriptors are made here.
    offs_n = tl.arange(0, BLOCK_N)
    if USE_TMA:
        if DEVICE_TMA:
            k_src = tl.make_tensor_descriptor(k_ptr, shape=[num_rows, NUM_KV_HEADS * HEAD_DIM],
                                              strides=[stride_kt, 1], block_shape=[BLOCK_N, HEAD_DIM])
            v_src = tl.make_tensor_descriptor(v_ptr, shape=[num_rows, NUM_KV_HEADS * V_HEAD_DIM],
                                              strides=[stride_vt, 1], block_shape=[BLOCK_N, V_HEAD_DIM])
        else:
            k_src, v_src = k_ptr, v_ptr
        kt_ptrs, v_ptrs = 0, 0  # unused
    else:
        k_src, v_src = None, None  # unused
        kt_ptrs = (k_ptr + q_start.to(tl.int64) * stride_kt + kv_head * stride_kh
                   + offs_d[:, None] * stride_kd + offs_n[None, :] * stride_kt)  # [BD, N]
        v_ptrs = (v_ptr + q_start.to(tl.int64) * stride_vt + kv_head * stride_vh
                  + offs_n[:, None] * stride_vt + offs_dv[None, :] * stride_vd)  # [N, BDV]
    d_valid = offs_d < HEAD_DIM
    dv_valid = offs_dv < V_HEAD_DIM

    m_i = tl.full([BLOCK_M * PACK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M * PACK], tl.float32)
    acc = tl.zeros([BLOCK_M * PACK, BLOCK_DV], tl.float32)

    first_pos = m_block * BLOCK_M
    last_pos = tl.minimum(first_pos + BLOCK_M, q_len) - 1
    unmasked_end = ((first_pos + 1) // BLOCK_N) * BLOCK_N  # tiles wholly visible to every row of the block
    for n_start in range(0, unmasked_end, BLOCK_N):
        # every token of these tiles exists: only a padded head dim needs a (channel) mask
        if USE_TMA:  # K [N, BD] transposed as a shared-memory view
            kt = tl.trans(k_src.load([q_start + n_start, kv_head * HEAD_DIM]))  # [BD, N]
            v = v_src.load([q_start + n_start, kv_head * V_HEAD_DIM])  # [N, BDV]
        else:
            if HEAD_DIM == BLOCK_D:
                kt = tl.load(kt_ptrs)  # [BD, N]
            else:
                kt = tl.load(kt_ptrs, mask=d_valid[:, None], other=0.0)
            if V_HEAD_DIM == BLOCK_DV:
                v = tl.load(v_ptrs)  # [N, BDV]
            else:
                v = tl.load(v_ptrs, mask=dv_valid[None, :], other=0.0)
            kt_ptrs += BLOCK_N * stride_kt
            v_ptrs += BLOCK_N * stride_vt
        s = tl.dot(q, kt.to(q.dtype))  # [R, N] unscaled; the scale is folded into the exp2 argument
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v.to(q.dtype), qk_scale, None, False)
    for n_start in range(unmasked_end, last_pos + 1, BLOCK_N):
        keys = n_start + offs_n  # [N]
        n_valid = keys < q_len
        allowed = keys[None, :] <= offs_m[:, None]  # [R, N]; keys past the request are past every valid row
        kt, v = _masked_kv_tile(k_src, v_src, kt_ptrs, v_ptrs, q_start + n_start, kv_head, n_valid, d_valid,
                                dv_valid, HEAD_DIM, V_HEAD_DIM, USE_TMA)
        if not USE_TMA:
            kt_ptrs += BLOCK_N * stride_kt
            v_ptrs += BLOCK_N * stride_vt
        s = tl.dot(q, kt.to(q.dtype))
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v.to(q.dtype), qk_scale, allowed, True)

    result = acc / l_i[:, None]  # every row saw key 0, so l > 0
    tl.store(out_ptr + q_rows[:, None] * stride_ot + heads[:, None] * stride_oh + offs_dv[None, :] * stride_od,
             result.to(out_ptr.dtype.element_ty), mask=row_valid[:, None] & (offs_dv[None, :] < V_HEAD_DIM))


def fresh_prefill_attention(
    q: torch.Tensor,  # [T, H, D]
    k: torch.Tensor,  # [T, Hk, D]
    v: torch.Tensor,  # [T, Hk, Dv]
    out: torch.Tensor,  # [T, H, Dv]
    query_start_loc: torch.Tensor,  # [B + 1] int32
    seq_lens: torch.Tensor,  # [B] int32
    first_req: int,
    num_reqs: int,
    max_query_len: int,
    scale: float,
    config: FreshPrefillConfig | None = None,
) -> None:
    """Causal attention of the prefix-free requests among [first_req, first_req + num_reqs) over their own rows'
    k / v; writes their rows of `out` (requests with a cached prefix are left untouched)."""
    if num_reqs == 0 or max_query_len == 0:
        return
    num_heads, head_dim = q.shape[1], q.shape[2]
    num_kv_heads, v_head_dim = k.shape[1], v.shape[2]
    group = num_heads // num_kv_heads
    cfg = config or default_fresh_config(head_dim, group, q.dtype, q.device, max_query_len)
    pack = cfg.pack if cfg.pack > 0 and group % cfg.pack == 0 else 1
    grid = (triton.cdiv(max_query_len, cfg.block_m), num_heads // pack, num_reqs)
    k_arg, v_arg = (k, v)
    use_tma = cfg.tma and _tma_ok(k, cfg.block_n) and _tma_ok(v, cfg.block_n)
    device_tma = use_tma and cfg.device_tma
    if device_tma:
        if q.is_cuda:
            _set_scratch_allocator(q.device)
    elif use_tma:
        k_arg, v_arg = _descriptor(k, cfg.block_n), _descriptor(v, cfg.block_n)
    _fresh_prefill_kernel[grid](
        q, k_arg, v_arg, out, query_start_loc, seq_lens,
        first_req, scale * LOG2E, q.shape[0],
        q.stride(0), q.stride(1), q.stride(2),
        k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        GROUP=group, PACK=pack,
        HEAD_DIM=head_dim, V_HEAD_DIM=v_head_dim,
        BLOCK_D=dot_width(head_dim), BLOCK_DV=dot_width(v_head_dim),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, USE_TMA=use_tma, DEVICE_TMA=device_tma, NUM_KV_HEADS=num_kv_heads,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )


def _tma_ok(x: torch.Tensor, block_n: int) -> bool:
    """x [T, Hk, D] can be one TMA descriptor of [T, Hk * D]: heads packed densely, channels contiguous, a
    power-of-two head of at least 16 channels (no channel masking), 16-byte aligned rows and base."""
    d, size = x.shape[2], x.element_size()
    return (x.stride(2) == 1 and x.stride(1) == d and d == dot_width(d) and (x.stride(0) * size) % 16 == 0
            and x.data_ptr() % 16 == 0 and d * size >= 16 and block_n <= 256)


def _set_scratch_allocator(device: torch.device) -> None:
    """Global-memory scratch for descriptors made in a kernel (tl.make_tensor_descriptor): Triton asks its allocator
    (per thread) for it at each launch."""
    triton.set_allocator(lambda size, alignment, stream: torch.empty(size, dtype=torch.int8, device=device))


def _descriptor(x: torch.Tensor, block_n: int):
    from triton.tools.tensor_descriptor import TensorDescriptor

    flat = x.as_strided((x.shape[0], x.shape[1] * x.shape[2]), (x.stride(0), 1))  # [T, Hk * D], same storage
    return TensorDescriptor(flat, list(flat.shape), list(flat.stride()), [block_n, x.shape[2]])
