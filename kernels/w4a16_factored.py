"""W4A16 decode GEMM (M ≤ 16) with the group scaling factored out of the inner product, and split-K partial sums
added inside the kernel. Same contract and layout as vdeploy_kernels.w4a16_gemm (twin: reference_quant.w4a16_matmul);
w4a16_gemm.w4a16_matmul runs this kernel for configs with `factored: True`.

Why (H100 sweep 2026-12-06b): at batch 1 the dequantizing kernel moved ~1 TB/s of the ~3 TB/s the bytes allow. Per
weight it did shift, mask, int -> float (I2F, on the conversion pipe: 16 per clock per SM, a quarter of the ALU
rate), subtract zero, multiply scale, round to bf16 (F2F, the same slow pipe), multiply x and add: two conversions
per weight cap it near 1 TB/s on an H100. Streaming 4-bit weights at 3 TB/s leaves ~5 instructions per weight in all.
Here a nibble goes straight into the mantissa of a float whose value is then 1 + q·2^-e (bit operations only, no
conversion instruction), and within one group Σ_k x_k (q_kn − z_gn) s_gn = s_gn (Σ_k x_k q_kn − z_gn Σ_k x_k): the
scale and zero are applied once per K tile (or per packed word where groups are shorter), not per weight.

Two inner products (SASS of the defaults, compiled for sm_90: ~4 and ~5 instructions per weight):
- `dot: False` (CUDA cores, 1-4 rows: batch-1 decode without padding M to 16): one shift of a word puts nibbles 2h
  and 2h + 1 at mantissa bits 15..18 and 19..22, one OR sets the exponent of 1.0, one AND per nibble keeps it:
  f = 1 + q/256 or 1 + q/16, then one FMA with x' = 256 x or 16 x (exact), x' f = x' + x q. Per thread whole columns
  of a K tile (one-warp programs of 256 columns: 8 per thread), so the x-side work is shared by 8 columns and the
  tile's K sum stays in-thread.
- `dot: True` (tensor cores, M padded to 16; operands swapped so the weights are a wgmma's 64-256 rows): the nibble
  becomes a bf16 / fp16 bit pattern of 1 + q/16 (exact in both), dot(F, x) = X + T/16 with X = Σ_k x_k,
  T = Σ_k x_k q_k; scale and zero once per tile (groups of whole K tiles only). fp32 inputs take plain int -> float
  (a test dtype, not a serving one).
Rounding differs from dequantize-then-matmul (the weight is never rounded to x's dtype; the FMA path's products are
exact for bf16 / fp16 x): within the tests' tolerances of the twin, not bit-equal to it.

Split-K: a decode GEMV has too few output tiles to keep every SM streaming, so K is split over programs whose
partials are summed in the same launch (vdeploy_kernels.split_k).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.split_k import split_k_tiles, split_plan, store_split_k, sum_splits


@triton.jit
def _shifted(packed, L: tl.constexpr, R: tl.constexpr):
    """packed << L >> R, skipping a shift by 0 (arithmetic >>: the bits it drags in are masked by the caller)."""
    if L > 0:
        packed = packed << L
    if R > 0:
        packed = packed >> R
    return packed


@triton.jit
def _fma_pair(acc, part, se, so, x_ptr, row, stride_xm, k, k_ok, f_lo, f_hi, s_lo, z_lo, s_hi, z_hi,
              GATHER: tl.constexpr, MASK_K: tl.constexpr, PAIRS: tl.constexpr):
    """Nibbles 2h and 2h + 1 of each packed word, one activation row: x at input rows k and k + 1 ([W], one per word
    row) times the decoded weights f_lo = 1 + q/256, f_hi = 1 + q/16 ([W, BN]). x is scaled to x' = 256 x, 16 x
    (exact), so x' f = x' + x q: part [W, BN] += x' f (one FMA per weight); se, so [W] sum x' (subtracted once per
    tile). GATHER (act order): each weight's own scale and zero, acc [W, BN] += x s (q − z). PAIRS: bf16 x read as
    int32 pairs (one load, two exact conversions by shift and mask)."""
    x_row = x_ptr + row * stride_xm
    if PAIRS:
        x_pairs = x_row.to(tl.pointer_type(tl.int32)) + k // 2
        if MASK_K:
            v = tl.load(x_pairs, mask=k_ok, other=0)
        else:
            v = tl.load(x_pairs)
        x_lo = (v << 16).to(tl.float32, bitcast=True)  # [W]
        x_hi = (v & -65536).to(tl.float32, bitcast=True)
    else:
        if MASK_K:
            x_lo = tl.load(x_row + k, mask=k_ok, other=0.0).to(tl.float32)
            x_hi = tl.load(x_row + k + 1, mask=k_ok, other=0.0).to(tl.float32)
        else:
            x_lo = tl.load(x_row + k).to(tl.float32)
            x_hi = tl.load(x_row + k + 1).to(tl.float32)
    if GATHER:  # (f − 1) 2^(23 − P) = q exactly
        acc += x_lo[:, None] * s_lo * ((f_lo - 1.0) * 256.0 - z_lo)
        acc += x_hi[:, None] * s_hi * ((f_hi - 1.0) * 16.0 - z_hi)
    else:
        xl = x_lo * 256.0
        xh = x_hi * 16.0
        part += xl[:, None] * f_lo  # two statements: one FMA each (a·b + c·d + part would add a multiply)
        part += xh[:, None] * f_hi
        se += xl
        so += xh
    return acc, part, se, so


@triton.jit
def _group_scale(acc, part, se, so, s, z, TILE: tl.constexpr):
    """acc += s (Σ x q − z Σ x), from part [W, BN] = Σ x' f = Σ x' + x q and se, so = Σ x' (even / odd nibbles,
    x' = 256 x / 16 x). TILE (one scale row [BN]): summed over the tile's word rows first (in-thread where each
    thread holds whole columns: BLOCK_N ≥ 128·num_warps), acc [BN]; else per word row (s, z, acc [W, BN])."""
    if TILE:
        se_t = tl.sum(se, axis=0)
        so_t = tl.sum(so, axis=0)
        acc += s * (tl.sum(part, axis=0) - (se_t + so_t) - z * (se_t * (1.0 / 256.0) + so_t * (1.0 / 16.0)))
    else:
        acc += s * (part - (se + so)[:, None] - z * (se * (1.0 / 256.0) + so * (1.0 / 16.0))[:, None])
    return acc


@triton.jit
def _row_total(acc, TILE: tl.constexpr):
    if not TILE:
        acc = tl.sum(acc, axis=0)
    return acc


@triton.jit(do_not_specialize=["SPLIT_K"])  # one compile for every split count
def _w4a16_fma_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, c_ptr, ws_ptr, tickets_ptr, b_ptr,
    M, N, K, stride_xm, SPLIT_K,
    GROUP: tl.constexpr,  # rows per group (uniform, a multiple of 8); 0: each row's group from g_idx (act order)
    BLOCK_M: tl.constexpr,  # 1, 2 or 4 rows, each with its own accumulator (the decoded weights are shared)
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    REDUCE: tl.constexpr,  # 0: SPLIT_K 1, store the output; 1: partials + tickets (in-kernel sum); 2: partials only
    HAS_BIAS: tl.constexpr,  # b_ptr [N] added to the output
    MASK_K: tl.constexpr,  # K is not a multiple of BLOCK_K: mask the last tile
    PAIRS: tl.constexpr,  # bf16 x, 4-byte aligned rows: read x two values at a time
    STAGES: tl.constexpr,  # K tiles in flight (software pipeline depth)
):
    # Every tensor in the K loop is [W, BN] (the packed words' own layout) or a slice of it: no layout conversions
    # between the load and the FMAs; the 8 nibbles of a word are 8 unrolled steps (constant shifts and masks).
    tl.static_assert(BLOCK_M == 1 or BLOCK_M == 2 or BLOCK_M == 4, "1, 2 or 4 rows")
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    row0 = pid_m * BLOCK_M
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    n_mask = offs_n < N
    W: tl.constexpr = BLOCK_K // 8  # packed words per column per K tile
    words = tl.arange(0, W)  # [W]
    TILE_SCALES: tl.constexpr = GROUP > 0 and GROUP % BLOCK_K == 0  # one scale row per K tile
    kb_start, kb_end = split_k_tiles(K, BLOCK_K, SPLIT_K, pid_k)
    zero = tl.zeros((W, BLOCK_N), dtype=tl.float32)
    zero_w = tl.zeros((W,), dtype=tl.float32)
    # per row: [BN] with tile scales, else [W, BN] (reduced over word rows once, after the loop)
    zero_acc = tl.zeros((BLOCK_N,), dtype=tl.float32) if TILE_SCALES else zero
    a0, a1, a2, a3 = zero_acc, zero_acc, zero_acc, zero_acc
    r1 = min(row0 + 1, M - 1)  # rows past M read row M − 1 (valid memory, no masks); their outputs are not stored
    r2 = min(row0 + 2, M - 1)
    r3 = min(row0 + 3, M - 1)
    # no tl.dot in this loop, so Triton pipelines its loads (cp.async, STAGES deep) only when asked to
    for kb in tl.range(kb_start, kb_end, num_stages=STAGES):
        w_idx = kb * W + words  # [W] word rows of this tile
        w_ok = w_idx < K // 8
        packed = tl.load(qw_ptr + w_idx[:, None] * N + offs_n[None, :],
                         mask=(w_ok[:, None] | (not MASK_K)) & n_mask[None, :], other=0,
                         eviction_policy="evict_first")  # [W, BN]: streamed once
        s = 0.0
        z = 0.0
        if TILE_SCALES:
            g = (kb * BLOCK_K) // GROUP
            s = tl.load(s_ptr + g * N + offs_n, mask=n_mask, other=0.0).to(tl.float32)  # [BN]
            z = tl.load(z_ptr + g * N + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        elif GROUP > 0:  # groups shorter than the tile (or not a multiple of it): a scale row per word row
            sz_off = ((w_idx * 8) // GROUP)[:, None] * N + offs_n[None, :]
            s = tl.load(s_ptr + sz_off, mask=w_ok[:, None] & n_mask[None, :], other=0.0).to(tl.float32)  # [W, BN]
            z = tl.load(z_ptr + sz_off, mask=w_ok[:, None] & n_mask[None, :], other=0.0).to(tl.float32)
        p0, p1, p2, p3 = zero, zero, zero, zero  # Σ_j x'_j f_j of this tile, per word row
        e0, e1, e2, e3 = zero_w, zero_w, zero_w, zero_w  # Σ x' of the even nibbles, per word row
        o0, o1, o2, o3 = zero_w, zero_w, zero_w, zero_w  # odd
        for h in tl.static_range(4):
            # nibbles 2h, 2h + 1 -> mantissa bits 15..18 (f = 1 + q/256) and 19..22 (1 + q/16) by one shift of the
            # word; one OR sets the exponent of 1.0, one AND per nibble keeps it: no int -> float conversion. (The
            # OR is shared: (v & m) | one would need two immediates in one LOP3, which ptxas reloads every time.)
            word = _shifted(packed, 15 - 8 * h if h < 2 else 0, 8 * h - 15 if h >= 2 else 0) | 0x3F800000
            f_lo = (word & (0x3F800000 | (0xF << 15))).to(tl.float32, bitcast=True)  # [W, BN]
            f_hi = (word & (0x3F800000 | (0xF << 19))).to(tl.float32, bitcast=True)
            k = w_idx * 8 + 2 * h  # [W] input row of nibble 2h of each word
            s_lo, z_lo, s_hi, z_hi = 0.0, 0.0, 0.0, 0.0
            if GROUP == 0:
                sz_off = tl.load(g_ptr + k, mask=w_ok, other=0)[:, None] * N + offs_n[None, :]
                sz_mask = w_ok[:, None] & n_mask[None, :]
                s_lo = tl.load(s_ptr + sz_off, mask=sz_mask, other=0.0).to(tl.float32)
                z_lo = tl.load(z_ptr + sz_off, mask=sz_mask, other=0.0).to(tl.float32)
                sz_off = tl.load(g_ptr + k + 1, mask=w_ok, other=0)[:, None] * N + offs_n[None, :]
                s_hi = tl.load(s_ptr + sz_off, mask=sz_mask, other=0.0).to(tl.float32)
                z_hi = tl.load(z_ptr + sz_off, mask=sz_mask, other=0.0).to(tl.float32)
            a0, p0, e0, o0 = _fma_pair(a0, p0, e0, o0, x_ptr, row0, stride_xm, k, w_ok, f_lo, f_hi, s_lo, z_lo,
                                       s_hi, z_hi, GROUP == 0, MASK_K, PAIRS)
            if BLOCK_M > 1:
                a1, p1, e1, o1 = _fma_pair(a1, p1, e1, o1, x_ptr, r1, stride_xm, k, w_ok, f_lo, f_hi, s_lo, z_lo,
                                           s_hi, z_hi, GROUP == 0, MASK_K, PAIRS)
            if BLOCK_M > 2:
                a2, p2, e2, o2 = _fma_pair(a2, p2, e2, o2, x_ptr, r2, stride_xm, k, w_ok, f_lo, f_hi, s_lo, z_lo,
                                           s_hi, z_hi, GROUP == 0, MASK_K, PAIRS)
                a3, p3, e3, o3 = _fma_pair(a3, p3, e3, o3, x_ptr, r3, stride_xm, k, w_ok, f_lo, f_hi, s_lo, z_lo,
                                           s_hi, z_hi, GROUP == 0, MASK_K, PAIRS)
        if GROUP > 0:
            a0 = _group_scale(a0, p0, e0, o0, s, z, TILE_SCALES)
            if BLOCK_M > 1:
                a1 = _group_scale(a1, p1, e1, o1, s, z, TILE_SCALES)
            if BLOCK_M > 2:
                a2 = _group_scale(a2, p2, e2, o2, s, z, TILE_SCALES)
                a3 = _group_scale(a3, p3, e3, o3, s, z, TILE_SCALES)
    rows = tl.arange(0, BLOCK_M)[:, None]  # [BM, 1]: the rows' sums gathered into one [BM, BN] tile
    acc = tl.where(rows == 0, _row_total(a0, TILE_SCALES)[None, :], 0.0)
    if BLOCK_M > 1:
        acc = tl.where(rows == 1, _row_total(a1, TILE_SCALES)[None, :], acc)
    if BLOCK_M > 2:
        acc = tl.where(rows == 2, _row_total(a2, TILE_SCALES)[None, :], acc)
        acc = tl.where(rows == 3, _row_total(a3, TILE_SCALES)[None, :], acc)
    store_split_k(acc, row0 + tl.arange(0, BLOCK_M), offs_n, M, N, pid_k, c_ptr, ws_ptr, tickets_ptr,
            pid_m * tl.num_programs(1) + pid_n, SPLIT_K, REDUCE, b_ptr, HAS_BIAS)


@triton.jit
def _nibble16(packed_t, J: tl.constexpr, P: tl.constexpr, ONE: tl.constexpr):
    """[BN, W] int32 -> nibble J of each word at bits P..P+3 of a 16-bit float pattern ONE (1.0): 1 + q/16."""
    L: tl.constexpr = P - 4 * J if P > 4 * J else 0
    R: tl.constexpr = 4 * J - P if 4 * J > P else 0
    return (_shifted(packed_t, L, R) & (0xF << P)) | ONE


@triton.jit(do_not_specialize=["SPLIT_K"])  # one compile for every split count
def _w4a16_dot_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, c_ptr, ws_ptr, tickets_ptr, b_ptr,
    M, N, K, stride_xm, SPLIT_K,
    GROUP: tl.constexpr,  # rows per group, a multiple of BLOCK_K (one scale row per K tile)
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    REDUCE: tl.constexpr, HAS_BIAS: tl.constexpr,
):
    # Swapped operands: outᵀ [BN, BM] = Wᵀ [BN, BK] · xᵀ [BK, BM], so the decoded weights are the MMA's A operand
    # (BN = 64-256 rows of a wgmma) and the few activation rows its narrow B. The packed words are read as [BN, W]
    # and each nibble plane expanded by joins along a new last dimension: every thread then holds runs of 8
    # consecutive K values per column, stored to shared memory in 16-byte pieces.
    tl.static_assert(GROUP > 0 and GROUP % BLOCK_K == 0, "the dot path applies scales per K tile")
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    m_mask = offs_m < M
    n_mask = offs_n < N
    W: tl.constexpr = BLOCK_K // 8
    words = tl.arange(0, W)  # [W]
    dtype = x_ptr.dtype.element_ty
    # 1 + q/16 as a 16-bit float: nibble at bf16 mantissa bits 3..6 or fp16 bits 6..9; fp32 (tests): q itself
    P: tl.constexpr = 3 if dtype == tl.bfloat16 else 6 if dtype == tl.float16 else 0
    ONE: tl.constexpr = 0x3F80 if dtype == tl.bfloat16 else 0x3C00 if dtype == tl.float16 else 0
    kb_start, kb_end = split_k_tiles(K, BLOCK_K, SPLIT_K, pid_k)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)  # outᵀ
    for kb in range(kb_start, kb_end):
        w_idx = kb * W + words
        packed_t = tl.load(qw_ptr + offs_n[:, None] + w_idx[None, :] * N,
                           mask=n_mask[:, None] & (w_idx < K // 8)[None, :], other=0,
                           eviction_policy="evict_first")  # [BN, W]
        g = (kb * BLOCK_K) // GROUP
        s = tl.load(s_ptr + g * N + offs_n, mask=n_mask, other=0.0).to(tl.float32)  # [BN]
        z = tl.load(z_ptr + g * N + offs_n, mask=n_mask, other=0.0).to(tl.float32)
        k = kb * BLOCK_K + tl.arange(0, BLOCK_K)  # [BK]
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & (k < K)[None, :],
                    other=0.0)  # [BM, BK]
        x_sum = tl.sum(a.to(tl.float32), axis=1)  # [BM]
        # join(A, B) appends a last dimension [A, B]: three levels give [BN, W, 2, 2, 2] = k 8w + 4 b2 + 2 b1 + b0
        # with b0 from the outermost join, so nibble j = 4 b2 + 2 b1 + b0 sits at k = 8w + j after the reshape
        even = tl.join(tl.join(_nibble16(packed_t, 0, P, ONE), _nibble16(packed_t, 4, P, ONE)),
                       tl.join(_nibble16(packed_t, 2, P, ONE), _nibble16(packed_t, 6, P, ONE)))
        odd = tl.join(tl.join(_nibble16(packed_t, 1, P, ONE), _nibble16(packed_t, 5, P, ONE)),
                      tl.join(_nibble16(packed_t, 3, P, ONE), _nibble16(packed_t, 7, P, ONE)))
        bits_t = tl.reshape(tl.join(even, odd), (BLOCK_N, BLOCK_K))  # [BN, BK]
        if dtype == tl.float32:
            d = tl.dot(bits_t.to(tl.float32), tl.trans(a), input_precision="ieee")  # [BN, BM] = T = Σ_k x_k q_k
            acc += s[:, None] * (d - z[:, None] * x_sum[None, :])
        else:
            f_t = bits_t.to(tl.int16).to(dtype, bitcast=True)  # [BN, BK] 1 + q/16, exact
            d = tl.dot(f_t, tl.trans(a))  # [BN, BM] = X + T/16
            acc += s[:, None] * (16.0 * d - (16.0 + z[:, None]) * x_sum[None, :])
    store_split_k(tl.trans(acc), offs_m, offs_n, M, N, pid_k, c_ptr, ws_ptr, tickets_ptr,
            pid_m * tl.num_programs(1) + pid_n, SPLIT_K, REDUCE, b_ptr, HAS_BIAS)


def w4a16_factored_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                          g_idx: torch.Tensor, group_size: int, cfg: dict,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [M, K] contiguous -> [M, N] in x's dtype (+ bias [N], added in the kernel's store). cfg: block_m / block_n /
    block_k / split_k / num_warps / num_stages, dot (tensor cores; needs group_size a multiple of block_k), reduce
    ("tickets" default, "kernel")."""
    m, k = x.shape
    n = qweight.shape[1]
    block_m, block_n, block_k = cfg["block_m"], cfg["block_n"], cfg["block_k"]
    use_dot = cfg.get("dot", False)
    group = group_size if group_size > 0 and group_size % 8 == 0 else 0
    if use_dot and (group == 0 or group % block_k):
        raise ValueError(f"factored dot path needs groups of whole K tiles (group {group_size}, block_k {block_k})")
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    grid_m, grid_n = triton.cdiv(m, block_m), triton.cdiv(n, block_n)
    split, reduce, ws, tickets = split_plan(out, triton.cdiv(k, block_k), cfg.get("split_k", 1), grid_m * grid_n,
                                            tickets=cfg.get("reduce", "tickets") == "tickets")
    args = (x, qweight, scales, zeros, g_idx, out, ws, tickets, out if bias is None else bias, m, n, k, x.stride(0),
            split)
    meta = dict(GROUP=group, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, REDUCE=reduce,
                HAS_BIAS=bias is not None and reduce != 2,
                num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    if use_dot:
        _w4a16_dot_kernel[(grid_m, grid_n, split)](*args, **meta)
    else:
        pairs = x.dtype == torch.bfloat16 and x.data_ptr() % 4 == 0 and x.stride(0) % 2 == 0
        _w4a16_fma_kernel[(grid_m, grid_n, split)](*args, MASK_K=k % block_k != 0, PAIRS=pairs,
                                                   STAGES=cfg["num_stages"], **meta)
    return sum_splits(ws, out, split, bias) if reduce == 2 else out
