"""Paged attention layer for standard (GQA/MHA) attention: stores this step's K/V in the layer's paged cache,
then attends each query over its request's whole cached context, through the dispatched kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdeploy.layers import ops
from vdeploy.layers.forward_context import ForwardContext


class Attention(nn.Module):
    """Heads are this rank's heads (already divided by TP). kv cache of this layer: ctx.kv_caches[layer_idx],
    [2, NB, BS, Hk, D]. k_scale / v_scale: an fp8 cache's per-layer scales (cached = x / scale), 1.0 unless the
    checkpoint carries them (see vdeploy.checkpoint.kv_scales); host floats, so CUDA graphs bake them in."""

    def __init__(self, num_heads: int, head_dim: int, scale: float, num_kv_heads: int, layer_idx: int):
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"{num_heads} query heads cannot share {num_kv_heads} KV heads evenly")
        self.num_heads, self.head_dim, self.num_kv_heads = num_heads, head_dim, num_kv_heads
        self.scale, self.layer_idx = scale, layer_idx
        self.k_scale, self.v_scale = 1.0, 1.0

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        # q: [T, H * D], k, v: [T, Hk * D] -> [T, H * D]
        num_tokens = q.shape[0]
        q = q.view(num_tokens, self.num_heads, self.head_dim)
        k = k.view(num_tokens, self.num_kv_heads, self.head_dim)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)
        kv_cache = ctx.kv_caches[self.layer_idx] if self.layer_idx < len(ctx.kv_caches) else None
        if kv_cache is None or kv_cache.numel() == 0:
            # before the KV cache exists (the memory-profiling warm-up run): plain causal attention per request
            out = self._attend_without_cache(q, k, v, ctx)
        else:
            ops.store_kv(k, v, kv_cache, ctx.attn.slot_mapping, self.k_scale, self.v_scale)
            out = ops.paged_attention(q, kv_cache, ctx.attn, self.scale, self.k_scale, self.v_scale,
                                      new_kv=(k, v))  # [T, H, D]
        return out.reshape(num_tokens, self.num_heads * self.head_dim)

    def _attend_without_cache(self, q, k, v, ctx: ForwardContext) -> torch.Tensor:
        starts = ctx.attn.query_start_loc.tolist()
        out = torch.empty_like(q)
        group = self.num_heads // self.num_kv_heads
        for start, end in zip(starts[:-1], starts[1:]):
            qi = q[start:end].transpose(0, 1)  # [H, L, D]
            ki = k[start:end].repeat_interleave(group, dim=1).transpose(0, 1)
            vi = v[start:end].repeat_interleave(group, dim=1).transpose(0, 1)
            oi = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=self.scale)
            out[start:end] = oi.transpose(0, 1)
        return out

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, layer={self.layer_idx}"
