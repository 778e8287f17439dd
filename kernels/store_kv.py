"""Write this step's keys/values into the paged KV cache at their slots.

Contract of `store_kv(k, v, kv_cache, slot_mapping)`:
  k            [T, Hk, D]  (any strides, e.g. a view into a fused qkv projection)
  v            [T, Hk, D] or None (MLA: the cache has one component, K = 1)
  kv_cache     [K, NB, BS, Hk, D]; flat slot s = block_id * BS + offset addresses kv_cache[:, s // BS, s % BS]
  slot_mapping [T] int64/int32; negative slots (padding tokens) are skipped
Values are converted to the cache dtype. For an fp8 cache k/v are converted with torch before the launch (the
kernel then only moves bytes), so no fp32 -> fp8 cast ever runs inside a kernel.
One program per token moves all Hk heads of its key (and value).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _store_kv_kernel(
    k_ptr, v_ptr, cache_ptr, slot_mapping_ptr,
    stride_kt, stride_kh, stride_kd, stride_vt, stride_vh, stride_vd,
    stride_ck, stride_cb, stride_cs, stride_ch, stride_cd,
    HAS_V: tl.constexpr, PAGE_SIZE: tl.constexpr, NUM_HEADS: tl.constexpr, HEAD_DIM: tl.constexpr,
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
    tl.store(dest + dest_offs, k.to(cache_ptr.dtype.element_ty), mask=mask)
    if HAS_V:
        v = tl.load(v_ptr + token * stride_vt + offs_h[:, None] * stride_vh + offs_d[None, :] * stride_vd,
                    mask=mask)
        tl.store(dest + stride_ck + dest_offs, v.to(cache_ptr.dtype.element_ty), mask=mask)


def _as_cache_dtype(x: torch.Tensor, cache_dtype: torch.dtype) -> torch.Tensor:
    # fp8 caches: convert outside the kernel (see module docstring); other dtypes convert inside
    return x.to(cache_dtype) if cache_dtype.itemsize == 1 and x.dtype != cache_dtype else x


def store_kv(k: torch.Tensor, v: torch.Tensor | None, kv_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    num_tokens, num_heads, head_dim = k.shape
    if num_tokens == 0:
        return
    if kv_cache.shape[0] < (2 if v is not None else 1):
        raise ValueError(f"kv_cache has {kv_cache.shape[0]} component(s); cannot store a value tensor")
    k = _as_cache_dtype(k, kv_cache.dtype)
    v_arg = _as_cache_dtype(v, kv_cache.dtype) if v is not None else k  # unused when HAS_V is False
    _store_kv_kernel[(num_tokens,)](
        k, v_arg, kv_cache, slot_mapping,
        *k.stride(), *v_arg.stride(),
        *kv_cache.stride(),
        HAS_V=v is not None, PAGE_SIZE=kv_cache.shape[2], NUM_HEADS=num_heads, HEAD_DIM=head_dim,
        BLOCK_H=triton.next_power_of_2(num_heads), BLOCK_D=triton.next_power_of_2(head_dim),
        num_warps=4,
    )
