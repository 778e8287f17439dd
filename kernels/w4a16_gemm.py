"""W4A16 GEMM (Triton): y [M, N] = x [M, K] @ W [K, N], W stored as 4-bit integers with per-group scales and zero
points. Layout and twin: vdeploy_kernels.reference_quant (qweight [K/8, N] int32 packed along K, scales / zeros
[G, N], g_idx [K]); AWQ and GPTQ checkpoints are both repacked to it at load (vdeploy.layers.int4).

Three paths behind w4a16_matmul, picked by the config:
- decode at 1-4 rows (`factored: True`): vdeploy_kernels.w4a16_factored — the nibble decoded by bit tricks (no
  int -> float conversion), the group's scale and zero applied once per group rather than per weight, split-K
  partials summed in the same launch (a ticket per output tile, fixed order);
- M > 16 (`dequant: True`): the whole weight dequantized into a scratch [K, N] in x's dtype, then cuBLAS. On an
  H100 (benchmarks/results/2026-12-07c-h100/w4a16_decode.json) the in-register dequantizing GEMM below ran at
  0.19-0.39x a bf16 GEMM at M 64-4,096 (each K tile dequantized again for every M tile); writing bf16 once and
  reading it back costs ~2.5 bytes a weight more than bf16 alone, which is ~0.45x at M 64 and ~0.9x at 4,096;
- this module's dequantizing kernel (5-16 rows; configs without `factored` or `dequant`, e.g. the sweep's grid):
  each K tile dequantized in registers ((q − z)·s in x's dtype), then a tensor-core dot with fp32 accumulation.
Here, two ways to find a row's group: uniform groups (`group_size` rows each, a multiple of BLOCK_K: one scale row
per K tile, the common case) or a gather through g_idx (act-order split over TP ranks, or groups smaller than 16).
Decode splits K over several programs so that a few output tiles still keep every SM streaming weights; the fp32
partial sums are added in a fixed order by fp8_gemm's split reducer (results do not depend on timing). A config may
replace the tensor-core dot by a multiply-and-sum (`dot: False`, tiles of 1-4 rows: decode without padding M to
16), or load each packed word once and expand it in registers (`unpack3d: True`) instead of once per row it holds.
Tiles come from a tuned table where one has the exact M (w4a16_configs.py), else `w4a16_config` (a heuristic per M
range); nothing is autotuned at launch. benchmarks/kernels/quant_gemm_check.py --sweep times a grid of configs at
the distills' shapes, --w4a16-factored-sweep the decode kernel's tiles at M = 1 (it writes the tables).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.split_k import sum_splits


@triton.jit
def _nibble_float(q):
    """int32 nibbles (0..15) -> float32, exactly: q | 0x4B000000 is the float 2^23 + q, minus 2^23. Two ALU
    instructions instead of an int -> float conversion (I2F runs on the 16-per-clock pipe on Hopper)."""
    return (q | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def _w4a16_kernel(
    x_ptr, qw_ptr, s_ptr, z_ptr, g_ptr, c_ptr,
    M, N, K, stride_xm, stride_cm,
    GROUP: tl.constexpr,  # rows per group when uniform and a multiple of BLOCK_K; 0: read each row's g_idx
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SPLIT_K: tl.constexpr,
    USE_DOT: tl.constexpr,  # False: a multiply-and-sum on the CUDA cores (decode tiles of 1-4 rows, no padding to 16)
    UNPACK_3D: tl.constexpr,  # True: load each int32 word once ([BK/8, BN]) and expand it to its 8 rows in registers
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    offs_k = tl.arange(0, BLOCK_K)  # [BK]
    m_mask = offs_m < M
    n_mask = offs_n < N
    shifts = (offs_k % 8) * 4  # [BK] nibble of each row in its int32 word (BLOCK_K is a multiple of 8)
    k_blocks = tl.cdiv(K, BLOCK_K)
    per_split = tl.cdiv(k_blocks, SPLIT_K)
    kb_start = pid_k * per_split
    kb_end = min(kb_start + per_split, k_blocks)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(kb_start, kb_end):
        k = kb * BLOCK_K + offs_k  # [BK]
        k_mask = k < K
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & k_mask[None, :],
                    other=0.0)  # [BM, BK]
        if UNPACK_3D:
            words = kb * (BLOCK_K // 8) + tl.arange(0, BLOCK_K // 8)  # [BK/8]
            packed = tl.load(qw_ptr + words[:, None] * N + offs_n[None, :],
                             mask=(words < K // 8)[:, None] & n_mask[None, :], other=0)  # [BK/8, BN]
            nibbles = (packed[:, None, :] >> (tl.arange(0, 8) * 4)[None, :, None]) & 0xF  # [BK/8, 8, BN]
            q = _nibble_float(tl.reshape(nibbles, (BLOCK_K, BLOCK_N)))  # row 8i + j = nibble j of word i
        else:
            packed = tl.load(qw_ptr + (k // 8)[:, None] * N + offs_n[None, :],
                             mask=k_mask[:, None] & n_mask[None, :], other=0)  # [BK, BN]: a word per row (cached)
            q = _nibble_float((packed >> shifts[:, None]) & 0xF)
        if GROUP > 0:  # the whole tile is in one group: one row of scales and zeros
            g = (kb * BLOCK_K) // GROUP
            s = tl.load(s_ptr + g * N + offs_n, mask=n_mask, other=0.0).to(tl.float32)  # [BN]
            z = tl.load(z_ptr + g * N + offs_n, mask=n_mask, other=0.0).to(tl.float32)
            w = (q - z[None, :]) * s[None, :]
        else:
            g = tl.load(g_ptr + k, mask=k_mask, other=0)  # [BK]
            sz_mask = k_mask[:, None] & n_mask[None, :]
            s = tl.load(s_ptr + g[:, None] * N + offs_n[None, :], mask=sz_mask, other=0.0).to(tl.float32)
            z = tl.load(z_ptr + g[:, None] * N + offs_n[None, :], mask=sz_mask, other=0.0).to(tl.float32)
            w = (q - z) * s  # [BK, BN]
        if USE_DOT:
            acc += tl.dot(a, w.to(a.dtype))
        else:
            acc += tl.sum(a.to(tl.float32)[:, :, None] * w.to(a.dtype).to(tl.float32)[None, :, :], axis=1)
    c_ptrs = c_ptr + pid_k * M * N + offs_m[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=m_mask[:, None] & n_mask[None, :])


@triton.jit
def _dequantize_kernel(qw_ptr, s_ptr, z_ptr, g_ptr, w_ptr, N, K,
                       GROUP: tl.constexpr,  # rows per group, a multiple of 8 * BLOCK_W; 0: each row's g_idx
                       BLOCK_W: tl.constexpr, BLOCK_N: tl.constexpr):
    """W [K, N] = (q − z)·s in w's dtype, packed words [BW, BN] -> rows [8 BW, BN] (nibbles to floats without a
    conversion instruction: _nibble_float)."""
    pid_w = tl.program_id(0)
    pid_n = tl.program_id(1)
    words = pid_w * BLOCK_W + tl.arange(0, BLOCK_W)  # [BW]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    w_ok = words < K // 8
    n_ok = offs_n < N
    packed = tl.load(qw_ptr + words[:, None] * N + offs_n[None, :], mask=w_ok[:, None] & n_ok[None, :], other=0,
                     eviction_policy="evict_first")  # [BW, BN]
    nibbles = (packed[:, None, :] >> (tl.arange(0, 8) * 4)[None, :, None]) & 0xF  # [BW, 8, BN]
    q = _nibble_float(tl.reshape(nibbles, (8 * BLOCK_W, BLOCK_N)))
    k = pid_w * 8 * BLOCK_W + tl.arange(0, 8 * BLOCK_W)  # [BK] row 8i + j = nibble j of word i
    k_ok = k < K
    if GROUP > 0:  # the whole tile in one group
        g = (pid_w * 8 * BLOCK_W) // GROUP
        s = tl.load(s_ptr + g * N + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]  # [1, BN]
        z = tl.load(z_ptr + g * N + offs_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    else:
        g = tl.load(g_ptr + k, mask=k_ok, other=0)  # [BK]
        sz_mask = k_ok[:, None] & n_ok[None, :]
        s = tl.load(s_ptr + g[:, None] * N + offs_n[None, :], mask=sz_mask, other=0.0).to(tl.float32)
        z = tl.load(z_ptr + g[:, None] * N + offs_n[None, :], mask=sz_mask, other=0.0).to(tl.float32)
    w = (q - z) * s  # [BK, BN]
    tl.store(w_ptr + k[:, None] * N + offs_n[None, :], w.to(w_ptr.dtype.element_ty),
             mask=k_ok[:, None] & n_ok[None, :])


def dequantize_w4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
                  group_size: int, dtype: torch.dtype) -> torch.Tensor:
    """-> W [K, N] in dtype, a fresh tensor (inside a CUDA-graph capture it comes from the graph's pool and is
    reused by the next layer's)."""
    k, n = qweight.shape[0] * 8, qweight.shape[1]
    w = torch.empty(k, n, dtype=dtype, device=qweight.device)
    block_w, block_n = 4, 256  # 32 rows x 256 columns a program: 16 KB of bf16 written
    uniform = group_size if group_size > 0 and group_size % (8 * block_w) == 0 else 0
    grid = (triton.cdiv(k // 8, block_w), triton.cdiv(n, block_n))
    _dequantize_kernel[grid](qweight, scales, zeros, g_idx, w, n, k, GROUP=uniform, BLOCK_W=block_w,
                             BLOCK_N=block_n, num_warps=4)
    return w


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 4  # the interpreter: small grids
    return torch.cuda.get_device_properties(device).multi_processor_count


def _tuned(m: int, n: int, k: int, group_size: int, device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    from vdeploy_kernels import tuned_tables
    from vdeploy_kernels.w4a16_configs import tuned_w4a16_config

    return tuned_w4a16_config(m, n, k, group_size, tuned_tables.device_name(device.index or 0))


def legacy_w4a16_config(m: int, n: int, k: int, group_size: int, num_sms: int) -> dict:
    """The dequantizing kernel's tiles (the only ones before issue 19; still every M > 16, and the baseline of
    quant_gemm_check.py --w4a16-only): decode (m ≤ 16) reads weights once with narrow N tiles and a K split that
    gives ~2 programs per SM; larger M uses wide tiles (the dequantized tile is reused by BLOCK_M rows).
    One row (batch-1 decode) is a GEMV: the H100 sweep (benchmarks/results/2026-12-06b-h100/quant_gemm_check.json)
    found one config best for 7 of the 8 R1-Distill-Qwen-7B / 32B layers, 1.3-1.9x faster than these tiles: no
    tensor-core dot, each packed word expanded once in registers, 8 K splits."""
    if m == 1:
        cfg = dict(block_m=1, block_n=128 if n >= 16384 else 64, block_k=128, num_warps=4, num_stages=4, dot=False,
                   unpack3d=True)
    elif m <= 16:
        cfg = dict(block_m=16, block_n=64, block_k=128, num_warps=4, num_stages=4)
    elif m <= 64:
        cfg = dict(block_m=32, block_n=128, block_k=64, num_warps=4, num_stages=4)
    else:
        cfg = dict(block_m=128, block_n=128, block_k=64, num_warps=8, num_stages=3)
    if group_size > 0 and group_size % cfg["block_k"] and group_size >= 16 and cfg["block_k"] % group_size == 0:
        cfg["block_k"] = group_size  # small groups: shrink the K tile to one group rather than gather
    if m == 1:
        split = max(1, min(8, triton.cdiv(k, 128) // 4))  # the sweep's 8 splits, fewer on a short K
    elif m <= 64:
        tiles = triton.cdiv(m, cfg["block_m"]) * triton.cdiv(n, cfg["block_n"])
        k_blocks = triton.cdiv(k, cfg["block_k"])
        split = max(1, min(2 * num_sms // max(tiles, 1), k_blocks // 4, 16))
    else:
        split = 1
    cfg["split_k"] = split
    return cfg


def factored_split(m: int, n: int, k: int, cfg: dict, num_sms: int, warps_per_sm: int = 8) -> int:
    """K splits for a factored decode config: enough programs for ~warps_per_sm warps per SM (a warp has up to
    num_stages - 1 tiles of weights in flight; far fewer warps than that cannot stream at full bandwidth), each
    keeping at least 2 K tiles. Wide layers need none, so no partial sums at all (the 7B gate_up: 296 column tiles
    of 128 with the tensor-core dot's 4 warps each)."""
    tiles = triton.cdiv(m, cfg["block_m"]) * triton.cdiv(n, cfg["block_n"])
    k_blocks = triton.cdiv(k, cfg["block_k"])
    programs = triton.cdiv(warps_per_sm * num_sms, cfg["num_warps"])
    return max(1, min(triton.cdiv(programs, tiles), k_blocks // 2, 32))


DEQUANT_MIN_M = 17  # from here on the weight is dequantized once and multiplied by cuBLAS


def w4a16_config(m: int, n: int, k: int, group_size: int, num_sms: int) -> dict:
    """Tiles for an [m, k] x [k, n] product where no tuned row exists. 1-4 rows run the factored kernel
    (vdeploy_kernels.w4a16_factored: no int -> float conversions, scales applied per group, split-K summed in-kernel)
    on the CUDA cores, 128 columns a warp (each thread 4 whole columns of a K tile: the x-side work is shared, the K
    reduction stays in-thread), K tiles of 64 rows (32 for groups of 32), loads pipelined 2 deep, K split for ~8 warps
    an SM: 256 columns and 2 warps a program, 512 and 4 for 2 rows. The tile the H100 sweeps
    (benchmarks/results/2026-12-07c-h100, 2026-12-07d-h100/lease3: --w4a16-factored-sweep --sweep-m) found best or
    within 3 % of best on most R1-Distill-Qwen-7B / 32B layers at 1, 2 and 4 rows; at 4 rows 1.08-1.47x the
    dequantizing kernel that ran them before. Act-order gathers stage a scale and a zero per weight too: one-warp
    programs of 256 columns (128 for 3-4 rows: registers), K tiles of 32. 5-16 rows keep the dequantizing kernel
    (legacy_w4a16_config: at 8 rows the factored kernel's two 4-row tiles only tied it). DEQUANT_MIN_M rows and
    more: dequantize, then cuBLAS (the module docstring)."""
    if m >= DEQUANT_MIN_M:
        return {"dequant": True}
    if m > 4:
        return legacy_w4a16_config(m, n, k, group_size, num_sms)
    rows = triton.next_power_of_2(m)
    if group_size <= 0:
        cfg = dict(factored=True, dot=False, block_m=rows, block_n=128 if m > 2 else 256, block_k=32, num_warps=1,
                   num_stages=2)
    else:
        block_n = 512 if m == 2 else 256
        cfg = dict(factored=True, dot=False, block_m=rows, block_n=block_n,
                   block_k=64 if group_size % 64 == 0 else 32, num_warps=block_n // 128, num_stages=2)
    cfg["split_k"] = factored_split(m, n, k, cfg, num_sms)
    return cfg


def w4a16_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                 g_idx: torch.Tensor, group_size: int = 0, config: dict | None = None,
                 bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [M, K] -> [M, N] in x's dtype, + bias [N] if given (in the decode kernel's store, cuBLAS's epilogue after
    dequantizing; an add elsewhere). group_size > 0: every group is that many consecutive rows (g_idx then only
    serves tiles that straddle groups); 0: rows follow g_idx in any order."""
    x = x.contiguous()
    m, k = x.shape
    n = qweight.shape[1]
    if m == 0:
        return torch.empty(m, n, dtype=x.dtype, device=x.device)
    cfg = config or _tuned(m, n, k, group_size, x.device) or w4a16_config(m, n, k, group_size, _num_sms(x.device))
    if cfg.get("dequant"):
        w = dequantize_w4(qweight, scales, zeros, g_idx, group_size, x.dtype)  # [K, N]
        return x @ w if bias is None else torch.addmm(bias, x, w)
    if cfg.get("factored"):
        from vdeploy_kernels.w4a16_factored import w4a16_factored_matmul

        return w4a16_factored_matmul(x, qweight, scales, zeros, g_idx, group_size, cfg, bias)
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    block_k, split = cfg["block_k"], cfg["split_k"]
    uniform = group_size if group_size > 0 and group_size % block_k == 0 else 0
    target = out if split == 1 else torch.empty(split, m, n, dtype=torch.float32, device=x.device)
    grid = (triton.cdiv(m, cfg["block_m"]), triton.cdiv(n, cfg["block_n"]), split)
    _w4a16_kernel[grid](
        x, qweight, scales, zeros, g_idx, target, m, n, k, x.stride(0), n,
        GROUP=uniform, BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_K=block_k, SPLIT_K=split,
        USE_DOT=cfg.get("dot", True), UNPACK_3D=cfg.get("unpack3d", False),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    if split > 1:
        return sum_splits(target, out, split, bias)
    return out if bias is None else out.add_(bias)
