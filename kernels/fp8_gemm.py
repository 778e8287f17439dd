"""Block-scaled FP8 kernels for DeepSeek-V3 weights (Triton; sm89+ has FP8 tensor cores).

- per_token_group_quant_fp8(x [T, K], group=128) -> (x_fp8 [T, K] e4m3, scale [T, ceil(K/group)] f32):
  one scale per token per 128-channel group, scale = amax / 448.
- w8a8_block_matmul(x_fp8, x_scale, w_fp8 [N, K], w_scale_inv [ceil(N/128), ceil(K/128)], block, out_dtype)
  -> y [T, N] = Σ_kblocks (x_fp8 · w_fp8ᵀ) · x_scale · w_scale: FP8 tensor-core dots accumulated in fp32, each
  K-block's partial product rescaled by its activation and weight scales.
Twins: vdeploy_kernels.reference_deepseek.{quantize_act_per_token_group, w8a8_block_matmul}.
No autotune (it needs a GPU at import/launch time): tile sizes come from _matmul_config.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

FP8_MAX = tl.constexpr(448.0)  # a constexpr global: Triton kernels may read only those


@triton.jit
def _per_token_group_quant_kernel(x_ptr, q_ptr, s_ptr, K, num_groups, GROUP: tl.constexpr):
    row = tl.program_id(0)
    g = tl.program_id(1)
    cols = g * GROUP + tl.arange(0, GROUP)
    mask = cols < K
    x = tl.load(x_ptr + row * K + cols, mask=mask, other=0.0).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-12)
    scale = amax / FP8_MAX
    q = tl.clamp(x / scale, -FP8_MAX, FP8_MAX)
    tl.store(q_ptr + row * K + cols, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + row * num_groups + g, scale)


def per_token_group_quant_fp8(x: torch.Tensor, group: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.contiguous()
    t, k = x.shape
    groups = triton.cdiv(k, group)
    q = torch.empty(t, k, dtype=torch.float8_e4m3fn, device=x.device)
    s = torch.empty(t, groups, dtype=torch.float32, device=x.device)
    if t:
        _per_token_group_quant_kernel[(t, groups)](x, q, s, k, groups, GROUP=group)
    return q, s


@triton.jit
def _w8a8_block_matmul_kernel(
    a_ptr, b_ptr, c_ptr, as_ptr, bs_ptr,
    M, N, K,
    stride_am, stride_bn, stride_cm,
    stride_as_m, stride_bs_n,
    BLOCK_N_SCALE: tl.constexpr, BLOCK_K_SCALE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :]  # [BM, BK]
    b_ptrs = b_ptr + offs_n[None, :] * stride_bn + offs_k[:, None]  # [BK, BN] (w is [N, K])
    as_ptrs = as_ptr + offs_m * stride_as_m
    bs_ptrs = bs_ptr + (offs_n // BLOCK_N_SCALE) * stride_bs_n
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=(offs_m[:, None] < M) & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_n[None, :] < N) & (offs_k[:, None] < k_left), other=0.0)
        k_scale_idx = (kb * BLOCK_K) // BLOCK_K_SCALE
        a_s = tl.load(as_ptrs + k_scale_idx, mask=offs_m < M, other=0.0)  # [BM]
        b_s = tl.load(bs_ptrs + k_scale_idx, mask=offs_n < N, other=0.0)  # [BN]
        acc += tl.dot(a, b) * a_s[:, None] * b_s[None, :]
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def _matmul_config(m: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages): small M (decode) wants narrow M tiles and many N tiles."""
    if m <= 16:
        return 16, 64, 4, 4
    if m <= 64:
        return 64, 64, 4, 4
    return 128, 128, 8, 3


def w8a8_block_matmul(
    x_fp8: torch.Tensor,
    x_scale: torch.Tensor,
    w_fp8: torch.Tensor,
    w_scale_inv: torch.Tensor,
    block: tuple[int, int] = (128, 128),
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    m, k = x_fp8.shape
    n = w_fp8.shape[0]
    bn_scale, bk_scale = block
    block_m, block_n, warps, stages = _matmul_config(m)
    block_n = min(block_n, bn_scale)  # one weight scale per N tile
    out = torch.empty(m, n, dtype=out_dtype, device=x_fp8.device)
    if m == 0:
        return out
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _w8a8_block_matmul_kernel[grid](
        x_fp8, w_fp8, out, x_scale, w_scale_inv,
        m, n, k,
        x_fp8.stride(0), w_fp8.stride(0), out.stride(0),
        x_scale.stride(0), w_scale_inv.stride(0),
        BLOCK_N_SCALE=bn_scale, BLOCK_K_SCALE=bk_scale,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=bk_scale,
        num_warps=warps, num_stages=stages,
    )
    return out
