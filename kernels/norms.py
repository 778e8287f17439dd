"""RMSNorm with an optional fused residual add.

Contract of `rms_norm(x, weight, eps, residual=None)`:
  x         [T, D] (last dim contiguous; any row stride), fp16/bf16/fp32
  weight    [D]
  residual  [T, D] or None
  returns   normed [T, D] in x's dtype, or (normed, x + residual) when residual is given. Both outputs are new
            tensors; the inputs are never modified.
The sum x + residual is rounded to x's dtype before it is normalised (as the twin does), statistics in fp32.
One program per row holds the whole row in registers: one read of x (and residual), one write of each output.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(
    x_ptr, residual_ptr, weight_ptr, out_ptr, residual_out_ptr,
    stride_x, stride_r, stride_o, stride_ro, eps,
    HAS_RESIDUAL: tl.constexpr, HIDDEN: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < HIDDEN
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(residual_ptr + row * stride_r + offs, mask=mask, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)
        tl.store(residual_out_ptr + row * stride_ro + offs, x, mask=mask)
    xf = x.to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(xf * xf, 0) / HIDDEN + eps)
    w = tl.load(weight_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_o + offs, (xf * inv_rms * w).to(out_ptr.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    if x.stride(-1) != 1:
        x = x.contiguous()
    hidden = x.shape[-1]
    x2 = x.reshape(-1, hidden)  # [T, D]
    out = torch.empty_like(x2)
    block = triton.next_power_of_2(hidden)
    num_warps = min(max(block // 256, 1), 16)
    if residual is None:
        if x2.shape[0] > 0:
            _rms_norm_kernel[(x2.shape[0],)](
                x2, x2, weight, out, out, x2.stride(0), 0, out.stride(0), 0, eps,
                HAS_RESIDUAL=False, HIDDEN=hidden, BLOCK=block, num_warps=num_warps,
            )
        return out.view(x.shape)
    r2 = residual.reshape(-1, hidden)
    if r2.stride(-1) != 1:
        r2 = r2.contiguous()
    residual_out = torch.empty_like(x2)
    if x2.shape[0] > 0:
        _rms_norm_kernel[(x2.shape[0],)](
            x2, r2, weight, out, residual_out, x2.stride(0), r2.stride(0), out.stride(0), residual_out.stride(0),
            eps, HAS_RESIDUAL=True, HIDDEN=hidden, BLOCK=block, num_warps=num_warps,
        )
    return out.view(x.shape), residual_out.view(x.shape)
