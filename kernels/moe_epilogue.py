"""The passes of the fused MoE between and after its two grouped GEMMs, each one Triton launch (issue 15).

- silu_and_mul_quant_fp8(h [M, 2I], group=128) -> (a_fp8 [M, I] e4m3, a_scale [M, ceil(I/group)] f32):
  the block-FP8 path's activation. silu(gate) * up in fp32, rounded to h's dtype, then quantized per token per
  128-channel group: the same values, bit for bit, as activation.silu_and_mul followed by
  fp8_gemm.per_token_group_quant_fp8, without writing and re-reading the [M, I] activation.
- moe_sum(y [T*k, H], top_k, shared_output=None) -> [T, H]: the sum of each token's k expert rows (already
  weighted by the second GEMM), plus the shared experts' output when given, in one pass.
Twins: reference_deepseek.silu_and_mul_quant and .moe_sum.

No host syncs, shapes depend only on T: both run inside a CUDA graph.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.fp8_gemm import FP8_MAX


@triton.jit
def _silu_and_mul_quant_kernel(h_ptr, q_ptr, s_ptr, M, INTER, stride_h, num_groups,
                               GROUP: tl.constexpr, BLOCK_M: tl.constexpr):
    # one program: BLOCK_M rows x one 128-channel group of the activation (the tiling of
    # per_token_group_quant_fp8, so a prefill of 8k tokens x 8 slots is not half a million tiny programs)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    g = tl.program_id(1)
    cols = g * GROUP + tl.arange(0, GROUP)  # [G]
    mask = (rows[:, None] < M) & (cols[None, :] < INTER)
    h_offs = rows[:, None].to(tl.int64) * stride_h + cols[None, :]  # [BM, G]
    gate = tl.load(h_ptr + h_offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(h_ptr + h_offs + INTER, mask=mask, other=0.0).to(tl.float32)
    # activation.silu_and_mul's expression, then its rounding to h's dtype: the quantizer below sees the very
    # values the two-kernel path stored and re-read
    silu = gate / (1.0 + tl.exp(-gate))
    x = (silu * up).to(h_ptr.dtype.element_ty).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-12)  # [BM]
    scale = amax / FP8_MAX
    q = tl.clamp(x / scale[:, None], -FP8_MAX, FP8_MAX)
    q_offs = rows[:, None].to(tl.int64) * INTER + cols[None, :]
    tl.store(q_ptr + q_offs, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + rows.to(tl.int64) * num_groups + g, scale, mask=rows < M)


def silu_and_mul_quant_fp8(h: torch.Tensor, group: int = 128,
                           out_dtype: torch.dtype = torch.float8_e4m3fn) -> tuple[torch.Tensor, torch.Tensor]:
    """h [M, 2I] = [gate ‖ up] (last dim contiguous, any row stride) -> (q [M, I], scale [M, ceil(I/group)]).
    out_dtype float32 lets the interpreter tests check the clamped values (its fp32 -> fp8 cast is wrong,
    triton issue 8322); the engine calls this on CUDA only."""
    if h.stride(-1) != 1:
        h = h.contiguous()
    m, inter = h.shape[0], h.shape[1] // 2
    groups = triton.cdiv(inter, group)
    q = torch.empty(m, inter, dtype=out_dtype, device=h.device)  # [M, I]
    s = torch.empty(m, groups, dtype=torch.float32, device=h.device)  # [M, G]
    if m:
        block_m = min(32, triton.next_power_of_2(m))
        _silu_and_mul_quant_kernel[(triton.cdiv(m, block_m), groups)](
            h, q, s, m, inter, h.stride(0), groups, GROUP=group, BLOCK_M=block_m)
    return q, s


@triton.jit
def _moe_sum_kernel(y_ptr, shared_ptr, out_ptr, H, stride_y, stride_s, stride_o,
                    TOP_K: tl.constexpr, HAS_SHARED: tl.constexpr, BLOCK: tl.constexpr):
    token = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK] hidden channels
    mask = offs < H
    rows = y_ptr + token * TOP_K * stride_y + offs
    # fp32 accumulation in slot order 0, 1, ..., k-1, one rounding at the end: what torch's sum over the k rows of a
    # bf16 [T, k, H] view does (its reduction may add in another order: a rare one-step difference after rounding)
    acc = tl.load(rows, mask=mask, other=0.0).to(tl.float32)
    for j in tl.static_range(1, TOP_K):
        acc += tl.load(rows + j * stride_y, mask=mask, other=0.0).to(tl.float32)
    if HAS_SHARED:
        # the routed sum rounds to the activation dtype first, then the shared output is added in fp32 and rounded
        # again: the two roundings of `routed + shared` in torch, kept so results match the unfused path
        routed = acc.to(out_ptr.dtype.element_ty).to(tl.float32)
        acc = routed + tl.load(shared_ptr + token * stride_s + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + token * stride_o + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def moe_sum(y: torch.Tensor, top_k: int, shared_output: torch.Tensor | None = None) -> torch.Tensor:
    """y [T*k, H] (row t*k + j: token t's j-th expert, weighted) -> [T, H] = Σ_j y[t*k + j] (+ shared_output [T, H]),
    in y's dtype."""
    num_tokens, hidden = y.shape[0] // top_k, y.shape[1]
    out = torch.empty(num_tokens, hidden, dtype=y.dtype, device=y.device)  # [T, H]
    if shared_output is not None and shared_output.stride(-1) != 1:
        shared_output = shared_output.contiguous()
    if num_tokens and hidden:
        block = min(1024, triton.next_power_of_2(hidden))
        shared = shared_output if shared_output is not None else out  # an unused pointer without it
        _moe_sum_kernel[(num_tokens, triton.cdiv(hidden, block))](
            y, shared, out, hidden, y.stride(0), shared.stride(0), out.stride(0),
            TOP_K=top_k, HAS_SHARED=shared_output is not None, BLOCK=block, num_warps=4)
    return out
