"""Block-scaled FP8 kernels for DeepSeek-V3 weights (Triton; sm89+ has FP8 tensor cores).

- per_token_group_quant_fp8(x [T, K], group=128) -> (x_fp8 [T, K] e4m3, scale [T, ceil(K/group)] f32):
  one scale per token per 128-channel group, scale = amax / 448.
- w8a8_block_matmul(x_fp8, x_scale, w_fp8 [N, K], w_scale_inv [ceil(N/128), ceil(K/128)], block, out_dtype)
  -> y [T, N] = Σ_kblocks (x_fp8 · w_fp8ᵀ) · x_scale · w_scale: FP8 tensor-core dots accumulated in fp32, each
  K-block's partial product rescaled by its activation and weight scales.
- w8a8_block_linear(x [M, K] bf16 / fp32, w_fp8, w_scale_inv, block) -> y [M, N] in x's dtype: both steps. At
  M ≤ 16 (decode), where a tuned table's row says "fused": one launch: each program quantizes the x rows of its own
  K tiles in registers, bit for bit as per_token_group_quant_fp8 does, and split-K partials are summed in the same
  launch (split_k.py), where the two-step path makes three launches (quantize, GEMM, sum of splits). Measured on an
  H100 (benchmarks/results/2026-12-06f-h100/): the one launch wins on the small and wide shapes (R1's q_a ‖ kv_a 13
  against 25 µs), the per-K-tile quantization costs the long-K ones (o_proj 53 against 51 µs): tables choose per
  shape and row count, and without a table the two steps run.
Twins: vdeploy_kernels.reference_deepseek.{quantize_act_per_token_group, w8a8_block_matmul}.

Tiles come from a tuned table per (N, K, GPU kind) and token count (fp8_gemm_configs.py, written once by
benchmarks/kernels/tune_fp8_gemm.py), else a heuristic; never an autotune at launch. A config may split K over
several programs (decode: a 7168-wide output has too few N tiles to keep 132 SMs streaming weights) — their fp32
partial sums are added in a fixed order by the last program of each tile (split_k.py), so results do not depend
on timing — or name cuBLAS's block-scaled GEMM (torch._scaled_mm, 1x128 x 128x128 scales, Hopper) where the tuner
found it faster.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.fp8_gemm_configs import DECODE_ROWS, block_gemm_config
from vdeploy_kernels.split_k import split_k_tiles, split_plan, store_split_k, sum_splits

FP8_MAX = tl.constexpr(448.0)  # a constexpr global: Triton kernels may read only those


@triton.jit
def _per_token_group_quant_kernel(x_ptr, q_ptr, s_ptr, T, K, num_groups, GROUP: tl.constexpr, BLOCK_T: tl.constexpr):
    # one program: BLOCK_T rows x one 128-channel group. One row per program (the old grid) gave a prefill of 8,192
    # tokens ~460k programs of 128 elements each, ~5x slower than the bytes allow (R1 profile, 2026-12-06).
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)  # [BT]
    g = tl.program_id(1)
    cols = g * GROUP + tl.arange(0, GROUP)  # [G]
    mask = (rows[:, None] < T) & (cols[None, :] < K)
    offs = rows[:, None].to(tl.int64) * K + cols[None, :]  # [BT, G]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-12)  # [BT]
    scale = amax / FP8_MAX
    q = tl.clamp(x / scale[:, None], -FP8_MAX, FP8_MAX)
    tl.store(q_ptr + offs, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + rows.to(tl.int64) * num_groups + g, scale, mask=rows < T)


def per_token_group_quant_fp8(x: torch.Tensor, group: int = 128,
                              out_dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """out_dtype: e4m3 (the engine); float32 lets the interpreter tests check the clamped values, which its
    fp32 -> fp8 cast gets wrong."""
    x = x.contiguous()
    t, k = x.shape
    groups = triton.cdiv(k, group)
    q = torch.empty(t, k, dtype=out_dtype, device=x.device)
    s = torch.empty(t, groups, dtype=torch.float32, device=x.device)
    if t:
        block_t = min(32, triton.next_power_of_2(t))
        _per_token_group_quant_kernel[(triton.cdiv(t, block_t), groups)](x, q, s, t, k, groups, GROUP=group,
                                                                        BLOCK_T=block_t)
    return q, s


@triton.jit
def _w8a8_block_matmul_kernel(
    a_ptr, b_ptr, c_ptr, as_ptr, bs_ptr,
    M, N, K,
    stride_am, stride_bn,
    stride_as_m, stride_bs_n,
    BLOCK_N_SCALE: tl.constexpr, BLOCK_K_SCALE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr, ws_ptr, tickets_ptr, REDUCE: tl.constexpr,
):
    # program ids: axis 0 walks output tiles in GROUP_M-row bands (neighbouring programs share weight tiles in L2),
    # axis 1 is the K split; with SPLIT_K > 1 the partial sums go to the fp32 workspace ws [SPLIT_K, M, N] and the
    # last split of each tile adds them (split_k.py: REDUCE 1), else a second launch does (REDUCE 2)
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    band = pid // (GROUP_M * tiles_n)
    first_m = band * GROUP_M
    band_rows = min(tiles_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * tiles_n)) % band_rows
    pid_n = (pid % (GROUP_M * tiles_n)) // band_rows
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    offs_k = tl.arange(0, BLOCK_K)
    kb_start, kb_end = split_k_tiles(K, BLOCK_K, SPLIT_K, pid_k)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + (kb_start * BLOCK_K + offs_k)[None, :]  # [BM, BK]
    b_ptrs = b_ptr + offs_n[None, :] * stride_bn + (kb_start * BLOCK_K + offs_k)[:, None]  # [BK, BN] (w is [N, K])
    as_ptrs = as_ptr + offs_m * stride_as_m
    bs_ptrs = bs_ptr + (offs_n // BLOCK_N_SCALE) * stride_bs_n  # one weight scale per column's 128-row block
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(kb_start, kb_end):
        k_left = K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_n[None, :] < N) & (offs_k[:, None] < k_left), other=0.0)
        k_scale_idx = (kb * BLOCK_K) // BLOCK_K_SCALE
        a_s = tl.load(as_ptrs + k_scale_idx, mask=offs_m < M, other=0.0)  # [BM]
        b_s = tl.load(bs_ptrs + k_scale_idx, mask=offs_n < N, other=0.0)  # [BN]
        acc += tl.dot(a, b) * a_s[:, None] * b_s[None, :]
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    store_split_k(acc, offs_m, offs_n, M, N, pid_k, c_ptr, ws_ptr, tickets_ptr, pid, SPLIT_K, REDUCE, c_ptr, False)


@triton.jit
def _quantize_rows(x_ptrs, mask):
    """One K tile of x rows [BM, BK] -> (fp32 values on the e4m3 grid's scale, clamped; per-row scales [BM]): the
    same fp32 operations as _per_token_group_quant_kernel."""
    x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
    a_s = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-12) / FP8_MAX  # [BM]
    return tl.clamp(x / a_s[:, None], -FP8_MAX, FP8_MAX), a_s


@triton.jit(do_not_specialize=["SPLIT_K"])  # one compile for every split count
def _w8a8_block_decode_kernel(
    x_ptr, w_ptr, bs_ptr, c_ptr, ws_ptr, tickets_ptr, q_ptr, qs_ptr,
    M, N, K, stride_xm, stride_wn, stride_bs_n, SPLIT_K,
    BLOCK_N_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    REDUCE: tl.constexpr, ACT_FP8: tl.constexpr, SWAP_AB: tl.constexpr, PRE_QUANT: tl.constexpr,
):
    # grid (N tiles, K splits); all M ≤ BLOCK_M rows in one tile. BLOCK_K is the activation scale group, so each
    # K tile's x rows are quantized here exactly as _per_token_group_quant_kernel would (same fp32 operations).
    # SWAP_AB: the weight tile is the dot's first operand ([BN, BK] x [BK, BM]), so BN (64-128) rows fill a Hopper
    # wgmma where BM = 16 activation rows cannot; the accumulator is transposed once at the end.
    # PRE_QUANT: quantizing inside the K loop lengthened every iteration (H100, 2026-12-06f); instead the program
    # first quantizes its split's x rows into a scratch q [M, K] / qs [M, K/BK] (every N tile's program writes the
    # same bytes: a benign race), then runs the two-step kernel's loop over them (fp8 loads, no reductions)
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    offs_m = tl.arange(0, BLOCK_M)  # [BM]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    offs_k = tl.arange(0, BLOCK_K)
    kb_start, kb_end = split_k_tiles(K, BLOCK_K, SPLIT_K, pid_k)
    k_blocks = tl.cdiv(K, BLOCK_K)
    x_ptrs = x_ptr + offs_m[:, None] * stride_xm + (kb_start * BLOCK_K + offs_k)[None, :]  # [BM, BK]
    q_ptrs = q_ptr + offs_m[:, None] * K + (kb_start * BLOCK_K + offs_k)[None, :]  # [BM, BK] (PRE_QUANT)
    w_ptrs = w_ptr + offs_n[:, None] * stride_wn + (kb_start * BLOCK_K + offs_k)[None, :]  # [BN, BK] (w is [N, K])
    bs_ptrs = bs_ptr + (offs_n // BLOCK_N_SCALE) * stride_bs_n
    if PRE_QUANT:
        for kb in range(kb_start, kb_end):
            mask = (offs_m[:, None] < M) & (offs_k[None, :] < K - kb * BLOCK_K)
            a, a_s = _quantize_rows(x_ptrs, mask)
            tl.store(q_ptrs, a.to(q_ptr.dtype.element_ty), mask=mask)
            tl.store(qs_ptr + offs_m * k_blocks + kb, a_s, mask=offs_m < M)
            x_ptrs += BLOCK_K
            q_ptrs += BLOCK_K
        q_ptrs -= (kb_end - kb_start) * BLOCK_K
        tl.debug_barrier()  # the whole program's scratch writes land before its loads below
    acc_t = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)  # SWAP_AB: the transposed accumulator
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(kb_start, kb_end):
        k_left = K - kb * BLOCK_K
        mask = (offs_m[:, None] < M) & (offs_k[None, :] < k_left)
        if PRE_QUANT:
            a = tl.load(q_ptrs, mask=mask, other=0.0, cache_modifier=".cg")  # [BM, BK] (written by this program)
            a_s = tl.load(qs_ptr + offs_m * k_blocks + kb, mask=offs_m < M, other=0.0, cache_modifier=".cg")
            q_ptrs += BLOCK_K
        else:
            a, a_s = _quantize_rows(x_ptrs, mask)
            x_ptrs += BLOCK_K
        w = tl.load(w_ptrs, mask=(offs_n[:, None] < N) & (offs_k[None, :] < k_left), other=0.0)  # [BN, BK]
        if ACT_FP8:
            a = a.to(w.dtype)
        else:  # tests in the interpreter, whose fp32 -> fp8 cast is wrong: a stays fp32, so a · a_s ≈ x
            w = w.to(tl.float32)
            a = a.to(tl.float32)
        b_s = tl.load(bs_ptrs + kb, mask=offs_n < N, other=0.0)  # [BN]
        if SWAP_AB:
            acc_t += tl.dot(w, tl.trans(a)) * b_s[:, None] * a_s[None, :]
        else:
            acc += tl.dot(a, tl.trans(w)) * a_s[:, None] * b_s[None, :]
        w_ptrs += BLOCK_K
    if SWAP_AB:
        acc = tl.trans(acc_t)
    store_split_k(acc, offs_m, offs_n, M, N, pid_k, c_ptr, ws_ptr, tickets_ptr, pid_n, SPLIT_K, REDUCE, c_ptr,
                  False)


def _scaled_mm_block(x_fp8, x_scale, w_fp8, w_scale_inv, out_dtype):
    """cuBLAS block-scaled GEMM (torch._scaled_mm, Hopper). Its layout rules: M padded to a multiple of 4, the
    activation scales K-block-major, the weight scales padded to a multiple of 4 K-blocks and K-block-major."""
    m, k = x_fp8.shape
    pad_m = -(-m // 4) * 4
    if pad_m != m:
        x_fp8 = torch.nn.functional.pad(x_fp8.view(torch.uint8), (0, 0, 0, pad_m - m)).view(torch.float8_e4m3fn)
        x_scale = torch.nn.functional.pad(x_scale, (0, 0, 0, pad_m - m), value=1.0)
    kb = x_scale.shape[1]
    kb4 = -(-kb // 4) * 4
    a_scale = x_scale.t().contiguous().t()  # [M, KB], stride (1, M)
    b_scale = torch.nn.functional.pad(w_scale_inv, (0, kb4 - kb)).t()  # [KB4, NB], stride (1, KB4)
    y = torch._scaled_mm(x_fp8, w_fp8.t(), scale_a=a_scale, scale_b=b_scale, out_dtype=out_dtype)
    return y[:m]


def w8a8_block_matmul(
    x_fp8: torch.Tensor,
    x_scale: torch.Tensor,
    w_fp8: torch.Tensor,
    w_scale_inv: torch.Tensor,
    block: tuple[int, int] = (128, 128),
    out_dtype: torch.dtype = torch.bfloat16,
    config: dict | None = None,
) -> torch.Tensor:
    m, k = x_fp8.shape
    n = w_fp8.shape[0]
    bn_scale, bk_scale = block
    if m == 0:
        return torch.empty(m, n, dtype=out_dtype, device=x_fp8.device)
    if config is None:
        config = block_gemm_config(m, n, k, block, None if x_fp8.device.type != "cuda" else x_fp8.device.index or 0)
    if config.get("backend") == "scaled_mm":
        return _scaled_mm_block(x_fp8, x_scale, w_fp8, w_scale_inv, out_dtype)
    block_m, block_n, block_k = config["block_m"], config["block_n"], config.get("block_k", bk_scale)
    tiles = triton.cdiv(m, block_m) * triton.cdiv(n, block_n)
    out = torch.empty(m, n, dtype=out_dtype, device=x_fp8.device)
    split_k, reduce, ws, tickets = split_plan(out, triton.cdiv(k, block_k), config.get("split_k", 1), tiles)
    _w8a8_block_matmul_kernel[(tiles, split_k)](
        x_fp8, w_fp8, out, x_scale, w_scale_inv,
        m, n, k,
        x_fp8.stride(0), w_fp8.stride(0),
        x_scale.stride(0), w_scale_inv.stride(0),
        BLOCK_N_SCALE=bn_scale, BLOCK_K_SCALE=bk_scale,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        GROUP_M=config.get("group_m", 1), SPLIT_K=split_k, ws_ptr=ws, tickets_ptr=tickets, REDUCE=reduce,
        num_warps=config["num_warps"], num_stages=config["num_stages"],
    )
    return sum_splits(ws, out, split_k) if reduce == 2 else out


def _w8a8_block_decode(x, w_fp8, w_scale_inv, block, config, act_dtype):
    m, k = x.shape
    n = w_fp8.shape[0]
    block_n = config["block_n"]
    grid_n, k_blocks = triton.cdiv(n, block_n), triton.cdiv(k, block[1])
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    split, reduce, ws, tickets = split_plan(out, k_blocks, config.get("split_k", 1), grid_n)
    pre_quant = config.get("pre_quant", False)
    q = torch.empty(m, k, dtype=act_dtype, device=x.device) if pre_quant else x  # [M, K] scratch
    qs = torch.empty(m, k_blocks, dtype=torch.float32, device=x.device) if pre_quant else x  # [M, K/BK]
    _w8a8_block_decode_kernel[(grid_n, split)](
        x, w_fp8, w_scale_inv, out, ws, tickets, q, qs, m, n, k, x.stride(0), w_fp8.stride(0), w_scale_inv.stride(0),
        split, BLOCK_N_SCALE=block[0], BLOCK_M=DECODE_ROWS, BLOCK_N=block_n, BLOCK_K=block[1], REDUCE=reduce,
        ACT_FP8=act_dtype == torch.float8_e4m3fn, SWAP_AB=config.get("swap_ab", False), PRE_QUANT=pre_quant,
        num_warps=config["num_warps"], num_stages=config["num_stages"],
    )
    return sum_splits(ws, out, split) if reduce == 2 else out


def w8a8_block_linear(x: torch.Tensor, w_fp8: torch.Tensor, w_scale_inv: torch.Tensor,
                      block: tuple[int, int] = (128, 128), config: dict | None = None,
                      act_dtype: torch.dtype = torch.float8_e4m3fn, pin_decode_rows: bool = False) -> torch.Tensor:
    """x [M, K] (bf16 / fp32) @ block-FP8 w [N, K]ᵀ -> [M, N] in x's dtype, x quantized per token per block[1]
    channels. M ≤ 16 and a config with "fused": True (a tuned table's choice): one launch ("swap_ab": the weight
    tile as the dot's first operand; "pre_quant": x quantized into a scratch before the K loop, not inside it);
    otherwise per_token_group_quant_fp8, then w8a8_block_matmul. act_dtype float32 (the fused launch only): the
    interpreter tests' stand-in for e4m3, x is then not rounded to fp8. pin_decode_rows: M ≤ 16 takes the tuned
    one-row config (fp8_gemm_configs.block_gemm_config)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    m, k = x.shape
    if config is None and m:
        config = block_gemm_config(m, w_fp8.shape[0], k, block,
                                   None if x.device.type != "cuda" else x.device.index or 0, pin_decode_rows)
    if 0 < m <= DECODE_ROWS and config.get("fused", False) and "backend" not in config \
            and config.get("block_k", block[1]) == block[1]:
        return _w8a8_block_decode(x, w_fp8, w_scale_inv, block, config, act_dtype)
    xq, xs = per_token_group_quant_fp8(x, block[1], out_dtype=act_dtype)
    return w8a8_block_matmul(xq, xs, w_fp8, w_scale_inv, block, x.dtype, config)
