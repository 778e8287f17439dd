"""SiLU-and-multiply of the fused gate/up projection.

Contract of `silu_and_mul(x)`:
  x        [T, 2I] = [gate ‖ up] (last dim contiguous; any row stride), fp16/bf16/fp32
  returns  [T, I] = silu(gate) * up in x's dtype, computed in fp32.
Grid (T, column blocks): each element of x is read once and each output written once.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_COLUMNS = 1024


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, stride_x, stride_o, INTER: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < INTER
    gate = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + INTER + offs, mask=mask, other=0.0).to(tl.float32)
    silu = gate / (1.0 + tl.exp(-gate))
    tl.store(out_ptr + row * stride_o + offs, (silu * up).to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    if x.stride(-1) != 1:
        x = x.contiguous()
    inter = x.shape[-1] // 2
    x2 = x.reshape(-1, x.shape[-1])  # [T, 2I]
    out = torch.empty(x2.shape[0], inter, dtype=x.dtype, device=x.device)  # [T, I]
    if x2.shape[0] > 0 and inter > 0:
        block = min(BLOCK_COLUMNS, triton.next_power_of_2(inter))
        grid = (x2.shape[0], triton.cdiv(inter, block))
        _silu_and_mul_kernel[grid](x2, out, x2.stride(0), out.stride(0), INTER=inter, BLOCK=block,
                                   num_warps=4)
    return out.view(*x.shape[:-1], inter)
