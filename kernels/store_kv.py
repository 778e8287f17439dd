"""Write this step's keys/values into the paged KV cache at their slots.

Contract of `store_kv(k, v, kv_cache, slot_mapping, k_scale=1.0, v_scale=1.0)`:
  k            [T, Hk, D]  (any strides, e.g. a view into a fused qkv projection)
  v            [T, Hk, D] or None (MLA: the cache has one component, K = 1)
  kv_cache     [K, NB, BS, Hk, D]; flat slot s = block_id * BS + offset addresses kv_cache[:, s // BS, s % BS]
  slot_mapping [T] int64/int32; negative slots (padding tokens) are skipped
Values are converted to the cache dtype. An fp8 (e4m3) cache is quantized here, in the kernel: x * (1 / scale) in
float32, saturated to +-448, rounded to nearest even (the twin, vdeploy_kernels.reference.quantize_kv, computes the
same product, so the bytes agree on the GPU). The Triton interpreter's fp32 -> fp8 cast is wrong, so the fp8 case is
checked by benchmarks/kernels/fp8_kv_check.py on the GPU only.
One program per token moves all Hk heads of its key (and value).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.fp8_gemm import FP8_MAX  # largest finite float8_e4m3fn (a constexpr global)

@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, cache_ptr, slot_mapping_ptr, inv_k_scale, inv_v_scale,
    stride_kt, stride_kh, stride_kd, stride_vt, stride_vh, stride_vd,
    stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
    HAS_V: tl.constexpr, QUANT: tl.constexpr, PAGE_SIZE: tl.constexpr, NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    if slot < 0:
        return
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_h[:, None] < NUM_HEADS) & (offs_d[None, :] < HEAD_DIM)  # [BH, BD]
    dest = cache_ptr + (slot // PAGE_SIZE) * stride_cb + (slot % PAGE_SIZE) * stride_cs
    dest_offs = offs_h[:, None] * stride_ch + offs_d[None, :] * stride_cd
    k = tl.load(k_ptr + token * stride_kt + offs_h[:, None] * stride_kh + offs_d[None, :] * stride_kd, mask=mask)
    tl.store(dest + dest_offs, to_cache(k, inv_k_scale, cache_ptr, QUANT), mask=mask)
    if HAS_V:
        v = tl.load(v_ptr + token * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :] * stride_vd,
                    mask=mask)
        tl.store(dest + stride_ck + dest_offs, to_cache(v, inv_v_scale, cache_ptr, QUANT), mask=mask)


@triton.jit
def to_cache(x, inv_scale, cache_ptr, QUANT: tl.constexpr):
    if QUANT:  # fp8: scale, saturate (e4m3 has no infinity: an unclamped overflow would be NaN), round
        x = x.to(tl.float32) * inv_scale
        x = tl.minimum(tl.maximum(x, -FP8_MAX), FP8_MAX)
    return x.to(cache_ptr.dtype.element_ty)


def store_kv(k: torch.Tensor, v: torch.Tensor | None, kv_cache: torch.Tensor, slot_mapping: torch.Tensor,
             k_scale: float = 1.0, v_scale: float = 1.0) -> None:
    num_tokens, num_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    if kv_cache.shape[0] < (2 if v is not None else 1):
        raise ValueError(f"kv_cache has {kv_cache.shape[0]} component(s); cannot store a value tensor")
    v_arg = v if v is not None else k  # unused when HAS_V is False
    _store_kv_kernel[(num_tokens,)](
        k, v_arg, kv_cache, slot_mapping, 1.0 / k_scale, 1.0 / v_scale,
        *k.stride(), *v_arg.stride(),
        *kv_cache.stride(),
        HAS_V=v is not None, QUANT=kv_cache.dtype.itemsize == 1, PAGE_SIZE=kv_cache.shape[2], NUM_HEADS=num_heads, HEAD_DIM=head_dim,
        BLOCK_H=triton.next_power_of_2(num_heads), BLOCK_D=triton.next_power_of_2(head_dim),
        num_warps=4,
    )
