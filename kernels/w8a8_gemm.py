"""W8A8 GEMM with per-token dynamic activation quantization (Triton), for compressed-tensors INT8 and FP8 W8A8:
y [M, N] = (x_q [M, K] · W [N, K]ᵀ) * x_scale [M] * w_scale [N]. Twin and rounding rules:
vdeploy_kernels.reference_quant.w8a8_matmul.

The Triton kernel (INT8 at every M, FP8 at decode-sized M; two launches): `_row_scale_kernel` finds each token's
amax (x_scale = amax / QMAX); the GEMM then quantizes each x tile as it loads it (no x_q round trip through memory),
multiplies int8·int8 into int32 (INT8, sm80+ tensor cores) or e4m3·e4m3 into fp32 (FP8, sm89+), and applies both
scales once in the epilogue.

FP8 at prefill-sized M on Hopper (config {"backend": "cublas"}): requantizing x for every N tile inside the loop kept
the tensor cores at 0.55-0.65x of a bf16 GEMM (H100, benchmarks/results/2026-12-06b-h100/), so x is quantized once
(`_row_scale_kernel` with WRITE_Q, the same rounding) and cuBLAS multiplies with row-wise scales (torch._scaled_mm).
INT8 stays on the Triton kernel: torch._int_mm wants its second operand contiguous (a transposed weight view is known
to give wrong results), which would mean a second, transposed copy of every INT8 weight. At prefill-sized M it too
quantizes x once (`_row_scale_kernel` with WRITE_Q, rounding half up as the GEMM does) and the GEMM loads int8 tiles
(X_QUANT) instead of requantizing bf16 tiles for every N tile, which ran at 0.30-0.34x of a bf16 GEMM.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

PREFILL_M = 64  # above this many tokens, x is quantized once up front (its re-quantization per N tile dominates)


@triton.jit
def _row_scale_kernel(x_ptr, s_ptr, q_ptr, K, stride_xm, stride_qm, QMAX: tl.constexpr, WRITE_Q: tl.constexpr,
                      BLOCK: tl.constexpr, ROUND_INT: tl.constexpr = False):
    """One row: x_scale = amax / QMAX; WRITE_Q: also q = clamp(x / x_scale) in q's dtype (e4m3, or int8 rounded half
    up with ROUND_INT), as the GEMM kernel quantizes its tiles."""
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    amax = tl.zeros((BLOCK,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK):
        x = tl.load(x_ptr + row * stride_xm + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(x))
    scale = tl.maximum(tl.max(amax, axis=0), 1e-12) / QMAX
    tl.store(s_ptr + row, scale)
    if WRITE_Q:
        for k0 in range(0, K, BLOCK):
            x = tl.load(x_ptr + row * stride_xm + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)
            v = tl.clamp(x / scale, -QMAX, QMAX)
            if ROUND_INT:
                v = tl.floor(v + 0.5)
            tl.store(q_ptr + row * stride_qm + k0 + offs, v.to(q_ptr.dtype.element_ty), mask=k0 + offs < K)


@triton.jit
def _w8a8_kernel(
    x_ptr, xs_ptr, w_ptr, ws_ptr, c_ptr,
    M, N, K, stride_xm, stride_wn, stride_cm,
    IS_INT8: tl.constexpr, QMAX: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    X_QUANT: tl.constexpr = False,  # x_ptr holds int8 x_q already (quantized once); else x, quantized per tile here
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
    offs_k = tl.arange(0, BLOCK_K)
    m_mask = offs_m < M
    n_mask = offs_n < N
    xs = tl.load(xs_ptr + offs_m, mask=m_mask, other=1.0)  # [BM]
    if IS_INT8:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + offs_k
        k_mask = k < K
        w = tl.load(w_ptr + offs_n[None, :] * stride_wn + k[:, None], mask=n_mask[None, :] & k_mask[:, None],
                    other=0.0)  # [BK, BN] (W is [N, K])
        if X_QUANT:
            a = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & k_mask[None, :],
                        other=0)  # [BM, BK] int8
            acc += tl.dot(a, w, out_dtype=tl.int32)
        else:
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + k[None, :], mask=m_mask[:, None] & k_mask[None, :],
                        other=0.0).to(tl.float32)  # [BM, BK]
            v = tl.clamp(x / xs[:, None], -QMAX, QMAX)
            if IS_INT8:
                a = tl.clamp(tl.floor(v + 0.5), -128.0, 127.0).to(tl.int8)
                acc += tl.dot(a, w, out_dtype=tl.int32)
            else:
                acc += tl.dot(v.to(w.dtype), w)
    ws = tl.load(ws_ptr + offs_n, mask=n_mask, other=0.0)  # [BN]
    out = acc.to(tl.float32) * xs[:, None] * ws[None, :]
    tl.store(c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :], out.to(c_ptr.dtype.element_ty),
             mask=m_mask[:, None] & n_mask[None, :])


def w8a8_config(m: int, n: int = 0, k: int = 0, device: torch.device | None = None) -> dict:
    """Tiles by token count: narrow M tiles for decode (the weight stream dominates), square ones for prefill; on
    Hopper, prefill-sized M goes to cuBLAS when the weights are FP8 (shapes it accepts: K and N multiples of 16)."""
    if (m > PREFILL_M and k % 16 == 0 and n % 16 == 0 and device is not None and device.type == "cuda"
            and torch.cuda.get_device_capability(device) >= (9, 0)):
        return {"backend": "cublas"}
    if m <= 16:
        return dict(block_m=16, block_n=64, block_k=128, num_warps=4, num_stages=4)
    if m <= 128:
        return dict(block_m=64, block_n=128, block_k=128, num_warps=4, num_stages=4)
    return dict(block_m=128, block_n=128, block_k=128, num_warps=8, num_stages=3)


def w8a8_matmul(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
                config: dict | None = None) -> torch.Tensor:
    """x [M, K] (fp16/bf16/fp32) @ weight [N, K]ᵀ (int8 or float8_e4m3fn), weight_scale [N] float32 -> [M, N]."""
    x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    if m == 0:
        return torch.empty(m, n, dtype=x.dtype, device=x.device)
    is_int8 = weight.dtype == torch.int8
    qmax = 127.0 if is_int8 else 448.0
    x_scale = torch.empty(m, dtype=torch.float32, device=x.device)
    cfg = config or w8a8_config(m, n, k, x.device)
    cublas = cfg.get("backend") == "cublas" and not is_int8 and x.dtype == torch.bfloat16  # cuBLAS writes bf16 only
    if cfg.get("backend") == "cublas" and not cublas:
        cfg = w8a8_config(m)
    # quantize x once up front for cuBLAS and for INT8 prefill; else the GEMM quantizes each tile as it loads it
    x_quant = cublas or (is_int8 and m > PREFILL_M)
    x_in = torch.empty(m, k, dtype=weight.dtype, device=x.device) if x_quant else x  # [M, K]: what the GEMM reads
    _row_scale_kernel[(m,)](x, x_scale, x_in, k, x.stride(0), x_in.stride(0), QMAX=qmax, WRITE_Q=x_quant, BLOCK=1024,
                            ROUND_INT=is_int8)
    if cublas:  # weight [N, K] row-major is the column-major [K, N] operand cuBLAS wants
        return torch._scaled_mm(x_in, weight.t(), scale_a=x_scale[:, None], scale_b=weight_scale[None, :].float(),
                                out_dtype=x.dtype)
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(m, cfg["block_m"]), triton.cdiv(n, cfg["block_n"]))
    _w8a8_kernel[grid](
        x_in, x_scale, weight, weight_scale, out, m, n, k, x_in.stride(0), weight.stride(0), n,
        IS_INT8=is_int8, QMAX=qmax, BLOCK_M=cfg["block_m"], BLOCK_N=cfg["block_n"], BLOCK_K=cfg["block_k"],
        X_QUANT=x_quant, num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return out
