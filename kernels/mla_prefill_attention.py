"""Causal MLA prefill attention over decompressed contexts, reading K and V where kv_b_proj and the cache put them.

Expanded MLA (vdeploy/layers/mla.py::_attend_expanded) decompresses each prefill request's context once:
kv_b_proj turns the cached c_kv of every context token into k_nope ‖ v per head, and the rotated key part k_rope
(R channels) is the same for every head. This kernel attends to them in place: the score of a (query, key) pair is
q_nope·k_nope + q_rope·k_rope, two tensor-core dots into one accumulator, so no [S, H, Dn + R] key tensor is ever
built (and no value tensor padded to the key width), and the per-head shared k_rope tile is loaded, not copied H
times.

Contract of `mla_prefill_attention`:
  q       [T, H, Dn + R]   query rows (q_nope ‖ rotated q_rope; any row / head strides, channels contiguous)
  kv      [S, H, Dn + Dv]  kv_b_proj's output per context token (k_nope ‖ v; channels contiguous)
  k_rope  [S, R]           rotated key part per context token, shared by all heads (any row stride)
  query_start_loc [B + 1] int32: request r's rows of q; seq_lens [B] int32: its context length. Contexts lie back
  to back in kv / k_rope in request order; a request's queries are the last q_len tokens of its context (a cached
  prefix is seq_len > q_len), so row i sits at position seq_len - q_len + i and attends keys [0, position].
  -> out [T, H, Dv]

Grid: (query blocks of the longest request, H, B); the longest blocks (most keys) launch first. Key tiles wholly
below the block's first row run unmasked; only the diagonal tiles pay for the causal mask.
Twin: vdeploy_kernels.reference_deepseek.mla_prefill_attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from vdeploy_kernels.attention_tiles import LOG2E, dot_width, online_softmax_step
from vdeploy_kernels.prefill_attention_configs import tuned_config

VARIANT = "mla"  # tuned tables: mla-D{Dn + R}-G1-<dtype>-<GPU>.json (prefill_attention_configs.py)


@dataclass(frozen=True)
class MLAPrefillConfig:
    block_m: int  # query tokens per program
    block_n: int  # key tokens per tile
    num_warps: int
    num_stages: int
    tma: bool = False  # K / V / k_rope tiles through TMA descriptors (Hopper+; power-of-two dims, aligned rows)


def default_mla_prefill_config(nope_dim: int, rope_dim: int, dtype: torch.dtype, device: torch.device,
                               max_query_len: int | None = None) -> MLAPrefillConfig:
    """A tuned table's entry for this GPU if there is one, else a heuristic (never autotuning at launch), from the
    H100 sweep (benchmarks/results/2026-12-06d-h100/): 128 query rows x 64-key tiles through TMA, 8 warps, 3 stages
    (347-409 TFLOP/s at R1's shape); pointer loads at those tiles exceed the shared memory, so without TMA the
    wrapper halves the key tile (POINTER_FALLBACK)."""
    tuned = tuned_config(VARIANT, nope_dim + rope_dim, 1, dtype, device, max_query_len)
    if tuned is not None:
        return MLAPrefillConfig(**tuned)
    if device.type != "cuda":  # interpreter: big tiles mean fewer (slow, Python-level) programs
        return MLAPrefillConfig(32, 32, 4, 1)
    if not _hopper(device):  # no TMA; 99-164 KB of shared memory (sm89 / sm80): small tiles, not yet measured
        return SMALL_SHARED_MEMORY
    if max_query_len is not None and max_query_len <= 64:
        return MLAPrefillConfig(64, 64, 4, 3, tma=True)
    return MLAPrefillConfig(128, 64, 8, 3, tma=True)


POINTER_FALLBACK = MLAPrefillConfig(128, 32, 8, 3)  # Hopper, tensors TMA cannot describe (fits in 227 KB)
SMALL_SHARED_MEMORY = MLAPrefillConfig(64, 32, 4, 2)  # GPUs before Hopper


def _hopper(device: torch.device) -> bool:
    return torch.cuda.get_device_capability(device)[0] >= 9


@triton.jit
def _mla_scores(qn, qr, ktn, ktr):
    """[M, N] unscaled scores qn·ktn + qr·ktr: two tensor-core dots into one accumulator."""
    return tl.dot(qr, ktr.to(qr.dtype), tl.dot(qn, ktn.to(qn.dtype)))


@triton.jit
def _mla_prefill_kernel(
    q_ptr, kv_ptr, kr_ptr, out_ptr, query_start_loc_ptr, context_start_ptr, seq_lens_ptr,
    qk_scale,
    stride_qt, stride_qh, stride_kvs, stride_kvh, stride_krs, stride_ot, stride_oh,
    NOPE: tl.constexpr, ROPE: tl.constexpr, VDIM: tl.constexpr,
    BLOCK_DN: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_DV: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, USE_TMA: tl.constexpr,
):
    m_block = tl.num_programs(0) - 1 - tl.program_id(0)
    head = tl.program_id(1)
    req = tl.program_id(2)
    q_start = tl.load(query_start_loc_ptr + req)
    q_len = tl.load(query_start_loc_ptr + req + 1) - q_start
    if m_block * BLOCK_M >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + req)
    ctx_start = tl.load(context_start_ptr + req)
    prefix = seq_len - q_len

    offs_m = m_block * BLOCK_M + tl.arange(0, BLOCK_M)  # [M] query index within the request
    offs_dn = tl.arange(0, BLOCK_DN)
    offs_r = tl.arange(0, BLOCK_R)
    offs_dv = tl.arange(0, BLOCK_DV)
    offs_n = tl.arange(0, BLOCK_N)
    row_valid = offs_m < q_len
    positions = prefix + offs_m  # [M] each row's position in its context
    q_rows = (q_start + offs_m).to(tl.int64)
    q_base = q_ptr + q_rows[:, None] * stride_qt + head * stride_qh
    qn = tl.load(q_base + offs_dn[None, :], mask=row_valid[:, None] & (offs_dn[None, :] < NOPE), other=0.0)  # [M, DN]
    qr = tl.load(q_base + NOPE + offs_r[None, :], mask=row_valid[:, None] & (offs_r[None, :] < ROPE),
                 other=0.0)  # [M, R]

    ctx_row = ctx_start.to(tl.int64)
    if not USE_TMA:  # keys loaded transposed ([D, N], channels contiguous): the QK dots need no tl.trans
        ktn_ptrs = kv_ptr + (ctx_row + offs_n)[None, :] * stride_kvs + head * stride_kvh + offs_dn[:, None]  # [DN, N]
        ktr_ptrs = kr_ptr + (ctx_row + offs_n)[None, :] * stride_krs + offs_r[:, None]  # [R, N]
        v_ptrs = kv_ptr + (ctx_row + offs_n)[:, None] * stride_kvs + head * stride_kvh + NOPE + offs_dv[None, :]
    dn_valid = offs_dn < NOPE
    r_valid = offs_r < ROPE
    dv_valid = offs_dv < VDIM

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)

    first_pos = prefix + m_block * BLOCK_M
    last_pos = prefix + tl.minimum((m_block + 1) * BLOCK_M, q_len) - 1
    unmasked_end = ((first_pos + 1) // BLOCK_N) * BLOCK_N  # key tiles every row of the block sees whole
    for n_start in range(0, unmasked_end, BLOCK_N):
        if USE_TMA:  # descriptors of kv [S, H * (Dn + Dv)] and k_rope [S, R], addressed by (row, channel)
            ktn = tl.trans(kv_ptr.load([ctx_start + n_start, head * (NOPE + VDIM)]))  # [DN, N]
            ktr = tl.trans(kr_ptr.load([ctx_start + n_start, 0]))  # [R, N]
            v = kv_ptr.load([ctx_start + n_start, head * (NOPE + VDIM) + NOPE])  # [N, DV]
        else:
            ktn = tl.load(ktn_ptrs, mask=dn_valid[:, None], other=0.0)
            ktr = tl.load(ktr_ptrs, mask=r_valid[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=dv_valid[None, :], other=0.0)
            ktn_ptrs += BLOCK_N * stride_kvs
            ktr_ptrs += BLOCK_N * stride_krs
            v_ptrs += BLOCK_N * stride_kvs
        s = _mla_scores(qn, qr, ktn, ktr)
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v.to(qn.dtype), qk_scale, None, False)
    for n_start in range(unmasked_end, last_pos + 1, BLOCK_N):
        keys = n_start + offs_n  # [N]
        n_valid = keys < seq_len
        allowed = keys[None, :] <= positions[:, None]  # [M, N]; keys past the context are past every valid row
        if USE_TMA:
            # the descriptors span every context: keys past this one are the next request's (masked out of the
            # scores); their values are zeroed so that p = 0 only ever meets finite numbers
            ktn = tl.trans(kv_ptr.load([ctx_start + n_start, head * (NOPE + VDIM)]))
            ktr = tl.trans(kr_ptr.load([ctx_start + n_start, 0]))
            v = tl.where(n_valid[:, None], kv_ptr.load([ctx_start + n_start, head * (NOPE + VDIM) + NOPE]), 0.0)
        else:
            ktn = tl.load(ktn_ptrs, mask=dn_valid[:, None] & n_valid[None, :], other=0.0)
            ktr = tl.load(ktr_ptrs, mask=r_valid[:, None] & n_valid[None, :], other=0.0)
            v = tl.load(v_ptrs, mask=n_valid[:, None] & dv_valid[None, :], other=0.0)
            ktn_ptrs += BLOCK_N * stride_kvs
            ktr_ptrs += BLOCK_N * stride_krs
            v_ptrs += BLOCK_N * stride_kvs
        s = _mla_scores(qn, qr, ktn, ktr)
        m_i, l_i, acc = online_softmax_step(s, m_i, l_i, acc, v.to(qn.dtype), qk_scale, allowed, True)

    result = acc / l_i[:, None]  # every row saw key 0, so l > 0
    tl.store(out_ptr + q_rows[:, None] * stride_ot + head * stride_oh + offs_dv[None, :],
             result.to(out_ptr.dtype.element_ty), mask=row_valid[:, None] & dv_valid[None, :])


def mla_prefill_attention(
    q: torch.Tensor,  # [T, H, Dn + R]
    kv: torch.Tensor,  # [S, H, Dn + Dv]
    k_rope: torch.Tensor,  # [S, R]
    query_start_loc: torch.Tensor,  # [B + 1] int32
    seq_lens: torch.Tensor,  # [B] int32
    max_query_len: int,
    scale: float,
    nope_dim: int,
    config: MLAPrefillConfig | None = None,
    context_starts: torch.Tensor | None = None,  # [B] int32, first context row per request (None: from seq_lens)
) -> torch.Tensor:
    """Causal attention of each request's queries over its decompressed context -> [T, H, Dv]."""
    t, num_heads = q.shape[0], q.shape[1]
    rope_dim = k_rope.shape[1]
    v_dim = kv.shape[2] - nope_dim
    if q.shape[2] != nope_dim + rope_dim or kv.shape[1] != num_heads:
        raise ValueError(f"q {tuple(q.shape)}, kv {tuple(kv.shape)} and k_rope {tuple(k_rope.shape)} disagree")
    if q.stride(2) != 1 or kv.stride(2) != 1 or k_rope.stride(1) != 1:
        raise ValueError("q, kv and k_rope need a contiguous last dimension")
    out = torch.empty(t, num_heads, v_dim, dtype=q.dtype, device=q.device)
    num_reqs = seq_lens.shape[0]
    if num_reqs == 0 or max_query_len == 0:
        return out
    cfg = config or default_mla_prefill_config(nope_dim, rope_dim, q.dtype, q.device, max_query_len)
    if context_starts is None:
        context_starts = (torch.cumsum(seq_lens, 0) - seq_lens).to(torch.int32)
    kv_arg, kr_arg = kv, k_rope
    use_tma = cfg.tma and _tma_ok(kv, k_rope, nope_dim, v_dim, cfg.block_n)
    if cfg.tma and not use_tma and q.is_cuda:
        cfg = POINTER_FALLBACK if _hopper(q.device) else SMALL_SHARED_MEMORY
    if use_tma:
        from triton.tools.tensor_descriptor import TensorDescriptor

        flat = kv.as_strided((kv.shape[0], num_heads * kv.shape[2]), (kv.stride(0), 1))  # [S, H * (Dn + Dv)]
        kv_arg = TensorDescriptor(flat, list(flat.shape), list(flat.stride()), [cfg.block_n, nope_dim])
        kr_arg = TensorDescriptor(k_rope, list(k_rope.shape), list(k_rope.stride()), [cfg.block_n, rope_dim])
    grid = (triton.cdiv(max_query_len, cfg.block_m), num_heads, num_reqs)
    _mla_prefill_kernel[grid](
        q, kv_arg, kr_arg, out, query_start_loc, context_starts, seq_lens,
        scale * LOG2E,
        q.stride(0), q.stride(1), kv.stride(0), kv.stride(1), k_rope.stride(0), out.stride(0), out.stride(1),
        NOPE=nope_dim, ROPE=rope_dim, VDIM=v_dim,
        BLOCK_DN=dot_width(nope_dim), BLOCK_R=dot_width(rope_dim), BLOCK_DV=dot_width(v_dim),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, USE_TMA=use_tma,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out


def _tma_ok(kv: torch.Tensor, k_rope: torch.Tensor, nope_dim: int, v_dim: int, block_n: int) -> bool:
    """kv is one descriptor of [S, H * (Dn + Dv)] (heads packed densely) whose K and V tiles share a block shape
    (Dn == Dv), k_rope one of [S, R]; power-of-two widths of at least 16 bytes, 16-byte aligned rows and bases."""
    size = kv.element_size()
    rope_dim = k_rope.shape[1]
    dims_ok = nope_dim == v_dim == dot_width(nope_dim) and rope_dim == dot_width(rope_dim) and rope_dim * size >= 16
    return (kv.is_cuda and _hopper(kv.device) and dims_ok and kv.stride(1) == kv.shape[2] and (kv.stride(0) * size) % 16 == 0
            and kv.data_ptr() % 16 == 0 and (k_rope.stride(0) * size) % 16 == 0 and k_rope.data_ptr() % 16 == 0
            and block_n <= 256)
