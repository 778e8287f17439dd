"""Fused MoE for DeepSeek's routed experts (Triton): tokens sorted and aligned by expert, then a grouped GEMM.

fused_moe(x [T, H], w13 [E, 2I, H], w2 [E, H, I], topk_ids [T, k], topk_weights [T, k],
          w13_scale=None, w2_scale=None, block=(128, 128), config=None, shared_output=None) -> [T, H]
  = Σ_k weight · down_e(silu(gate_e(x)) · up_e(x)) (+ shared_output [T, H], the shared experts' output, added in
  the same pass). With scales given, w13/w2 are block-FP8 (e4m3 + f32 scale per 128×128 block,
  [E, ceil(N/128), ceil(K/128)]) and activations are quantized per token per 128 channels.

How: moe_align (moe_align.py, three Triton launches) groups the T·k (token, slot) pairs by expert and pads each
expert's run to a multiple of BLOCK_M, so every BLOCK_M tile of the sorted list belongs to one expert; one program
computes one tile × BLOCK_N outputs with that expert's weights. Tile sizes come from the tuned table for the shape
and GPU (moe_configs.py) unless `config` is given. Everything stays on the device (no host sync), so it can live
inside a CUDA graph.
Between and after the GEMMs (issue 15): block FP8 does silu-and-mul and the per-token-group quantization in one
kernel (moe_epilogue.py), and one kernel sums the k slot rows of each token and adds shared_output
(moe_epilogue.moe_sum; given a function, what it returns, called just before that kernel: a caller overlapping the
shared experts with the routed ones joins there). Both keep the values of the separate passes (same fp32 math, same
rounding points); fuse_epilogue=False runs those separate passes, for benchmarks/kernels/moe_fusion_check.py.
16/32-bit weights keep the separate silu_and_mul kernel: computing silu(gate) · up in the second GEMM's A loads
made that GEMM 10-35 % slower on an H100 at V2-Lite shapes (benchmarks/results/2026-12-06e-h100/moe_fusion.json),
more than the pass costs.
Twins: vdeploy_kernels.reference_deepseek.moe_loop (the whole layer) and .moe_align.
"""

from __future__ import annotations

from typing import Callable

import torch
import triton
import triton.language as tl

from vdeploy_kernels.moe_align import moe_align
from vdeploy_kernels.moe_configs import moe_config
from vdeploy_kernels.moe_epilogue import moe_sum, silu_and_mul_quant_fp8


@triton.jit
def _grouped_gemm_kernel(
    a_ptr, b_ptr, c_ptr, a_scale_ptr, b_scale_ptr, weights_ptr, sorted_slots_ptr, block_expert_ptr,
    N, K, num_slots, a_row_div,
    stride_am, stride_be, stride_bn, stride_cm,
    stride_asm, stride_bse, stride_bsn,
    MUL_WEIGHT: tl.constexpr, FP8: tl.constexpr, BLOCK_SCALE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    expert = tl.load(block_expert_ptr + pid_m)
    if expert < 0:
        return
    expert = expert.to(tl.int64)  # expert * stride_be passes 2^31 for R1 (256 experts × 29M weights)
    slots = tl.load(sorted_slots_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))  # [BM]
    valid = slots < num_slots
    rows = slots // a_row_div  # row of A: the token for the first GEMM, the slot for the second
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + rows[:, None] * stride_am + offs_k[None, :]  # [BM, BK]
    b_ptrs = b_ptr + expert * stride_be + offs_n[None, :] * stride_bn + offs_k[:, None]  # [BK, BN]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        k_left = K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=valid[:, None] & (offs_k[None, :] < k_left), other=0.0)
        b = tl.load(b_ptrs, mask=(offs_n[None, :] < N) & (offs_k[:, None] < k_left), other=0.0)
        if FP8:
            k_idx = (kb * BLOCK_K) // BLOCK_SCALE
            a_s = tl.load(a_scale_ptr + rows * stride_asm + k_idx, mask=valid, other=0.0)
            b_s = tl.load(
                b_scale_ptr + expert * stride_bse + (offs_n // BLOCK_SCALE) * stride_bsn + k_idx,
                mask=offs_n < N, other=0.0,
            )
            acc += tl.dot(a, b) * a_s[:, None] * b_s[None, :]
        else:
            acc += tl.dot(a, b)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    if MUL_WEIGHT:
        w = tl.load(weights_ptr + slots, mask=valid, other=0.0)
        acc = acc * w[:, None]
    c_ptrs = c_ptr + slots[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=valid[:, None] & (offs_n[None, :] < N))


def _grouped_gemm(a, a_scale, b, b_scale, out, sorted_slots, block_expert, weights, a_row_div, block_m, block,
                  tiles: dict):
    num_slots = out.shape[0]
    n, k = b.shape[1], b.shape[2]
    fp8 = b_scale is not None
    block_n, block_k = tiles["block_n"], tiles["block_k"]
    if fp8:  # a K tile must not straddle two scale blocks
        block_k = min(block_k, block[1])
    grid = (block_expert.shape[0], triton.cdiv(n, block_n))
    dummy = out  # unused pointer slots
    _grouped_gemm_kernel[grid](
        a, b, out, a_scale if fp8 else dummy, b_scale if fp8 else dummy,
        weights if weights is not None else dummy, sorted_slots, block_expert,
        n, k, num_slots, a_row_div,
        a.stride(0), b.stride(0), b.stride(1), out.stride(0),
        a_scale.stride(0) if fp8 else 0, b_scale.stride(0) if fp8 else 0, b_scale.stride(1) if fp8 else 0,
        MUL_WEIGHT=weights is not None, FP8=fp8, BLOCK_SCALE=block[1],
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=tiles["num_warps"], num_stages=tiles["num_stages"],
    )


def fused_moe(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    w13_scale: torch.Tensor | None = None,
    w2_scale: torch.Tensor | None = None,
    block: tuple[int, int] = (128, 128),
    config: dict | None = None,
    shared_output: torch.Tensor | Callable[[], torch.Tensor] | None = None,
    fuse_epilogue: bool = True,
) -> torch.Tensor:
    t, k = topk_ids.shape
    num_experts, two_i, hidden = w13.shape
    fp8 = w13_scale is not None
    if config is None:  # the tuned table for this shape and GPU (moe_configs), else the heuristic
        config = moe_config(t, num_experts, two_i // 2, hidden, k, fp8, x.device.index if x.is_cuda else None)
    block_m = config["block_m"]
    sorted_slots, block_expert = moe_align(topk_ids, num_experts, block_m)
    weights = topk_weights.flatten().float().contiguous()  # [T*k]
    act_dtype = x.dtype
    if fp8:
        a1, a1_scale = _quantize_act(x, block[1])
    else:
        a1, a1_scale = x.contiguous(), None
    h = torch.empty(t * k, two_i, dtype=act_dtype, device=x.device)  # [T*k, 2I]
    _grouped_gemm(a1, a1_scale, w13, w13_scale, h, sorted_slots, block_expert, None, k, block_m, block,
                  config["w13"])
    if fp8 and fuse_epilogue:
        a2, a2_scale = _silu_and_mul_quant(h, block[1])  # [T*k, I] e4m3, [T*k, I/128]
    elif fp8:
        a2, a2_scale = _quantize_act(_silu_and_mul(h), block[1])
    else:
        a2, a2_scale = _silu_and_mul(h), None  # [T*k, I]
    y = torch.empty(t * k, w2.shape[1], dtype=act_dtype, device=x.device)  # [T*k, H]
    _grouped_gemm(a2, a2_scale, w2, w2_scale, y, sorted_slots, block_expert, weights, 1, block_m, block,
                  config["w2"])
    if callable(shared_output):  # the caller overlapped it with the routed experts: join it here
        shared_output = shared_output()
    if fuse_epilogue:
        return moe_sum(y, k, shared_output)  # [T, H]
    out = y.view(t, k, -1).sum(dim=1)  # [T, H]
    return out if shared_output is None else out + shared_output


def _silu_and_mul(h: torch.Tensor) -> torch.Tensor:
    if h.is_cuda:
        from vdeploy_kernels.activation import silu_and_mul
    else:
        from vdeploy_kernels.reference import silu_and_mul
    return silu_and_mul(h)


def _silu_and_mul_quant(h: torch.Tensor, group: int):
    # one kernel on CUDA; on CPU the interpreter's fp32->fp8 cast is wrong (see _quantize_act): the twins composed
    if h.is_cuda:
        return silu_and_mul_quant_fp8(h, group)
    return _quantize_act(_silu_and_mul(h), group)


def _quantize_act(x: torch.Tensor, group: int):
    # The Triton interpreter (CPU) casts fp32->fp8 wrongly (triton issue 8322): quantize with torch there.
    if x.is_cuda:
        from vdeploy_kernels.fp8_gemm import per_token_group_quant_fp8

        return per_token_group_quant_fp8(x, group)
    from vdeploy_kernels.reference_deepseek import quantize_act_per_token_group

    return quantize_act_per_token_group(x, group)
