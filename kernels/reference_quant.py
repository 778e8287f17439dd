"""Plain-torch twins of the quantized-weight GEMMs (the CPU path and the oracle of the kernel tests).

W4A16 internal layout (what vdeploy.layers.int4 builds at load time from AWQ or GPTQ checkpoints, so that one
kernel serves both formats):
- qweight [K/8, N] int32: 4-bit values packed along K, nibble j (bits 4j..4j+3) of word i = input row 8i + j;
- scales [G, N] and zeros [G, N] (the checkpoint's fp16 scales; zero points as floats, GPTQ v1's +1 applied);
- g_idx [K] int32: the group of each input row, w[k, n] = (q[k, n] - zeros[g_idx[k], n]) * scales[g_idx[k], n].
"""

from __future__ import annotations

import torch

INT4_SHIFTS = tuple(range(0, 32, 4))  # bit offset of nibble j in an int32 word


def unpack_int4_rows(qweight: torch.Tensor) -> torch.Tensor:
    """[K/8, N] int32 -> [K, N] int32 values in 0..15 (row 8i + j from nibble j of row i)."""
    shifts = torch.tensor(INT4_SHIFTS, dtype=torch.int32, device=qweight.device)
    # arithmetic shift of a negative word drags the sign bit along; the mask keeps only the nibble
    return ((qweight[:, None, :] >> shifts[None, :, None]) & 0xF).reshape(-1, qweight.shape[1])


def pack_int4_rows(values: torch.Tensor) -> torch.Tensor:
    """Inverse of unpack_int4_rows: [K, N] ints in 0..15 -> [K/8, N] int32."""
    k, n = values.shape
    v = values.to(torch.int64).reshape(k // 8, 8, n)
    shifts = torch.tensor(INT4_SHIFTS, dtype=torch.int64, device=values.device)
    words = (v << shifts[None, :, None]).sum(dim=1)  # [K/8, N] in 0..2^32-1
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def dequantize_w4(qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, g_idx: torch.Tensor,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """-> W [K, N] in `dtype` (computed in float32, rounded once, like the kernel's tiles)."""
    q = unpack_int4_rows(qweight).float()  # [K, N]
    g = g_idx.long()
    return ((q - zeros.float()[g]) * scales.float()[g]).to(dtype)


def w4a16_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                 g_idx: torch.Tensor, group_size: int = 0) -> torch.Tensor:
    """x [M, K] @ dequantized W [K, N] -> [M, N] in x's dtype. `group_size` (rows per group when the groups are
    uniform) only steers the kernel's tiles; the twin always follows g_idx."""
    return x @ dequantize_w4(qweight, scales, zeros, g_idx, x.dtype)


# W8A8 (compressed-tensors INT8 / FP8): weight [N, K] int8 or float8_e4m3fn with one float32 scale per output
# channel [N]; activations quantized per token at run time: x ≈ x_q * x_scale, x_scale [M] = amax(|x|) / QMAX.
# Rounding to int8 is half up (floor(v + 0.5)), the same rule as the kernel; fp8 conversion is torch's / Triton's
# round-to-nearest-even.
W8A8_QMAX = {torch.int8: 127.0, torch.float8_e4m3fn: 448.0}


def quantize_per_token(x: torch.Tensor, qdtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (x_q [M, K] in qdtype, x_scale [M] float32)."""
    qmax = W8A8_QMAX[qdtype]
    xf = x.float()
    scale = xf.abs().amax(dim=-1).clamp(min=1e-12) / qmax  # [M]
    v = (xf / scale[:, None]).clamp(-qmax, qmax)
    if qdtype == torch.int8:
        v = torch.floor(v + 0.5).clamp(-128, 127)
    return v.to(qdtype), scale


def w8a8_matmul(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] (activations quantized per token here) @ weight [N, K]ᵀ, scaled by x_scale [M] and weight_scale [N]
    -> [M, N] in x's dtype. The integer / fp8 products are summed in float64 (exact for int8, as the kernel's int32)."""
    xq, xs = quantize_per_token(x, weight.dtype)
    acc = xq.double() @ weight.double().t()  # [M, N]
    return (acc * xs.double()[:, None] * weight_scale.double()[None, :]).to(x.dtype)
