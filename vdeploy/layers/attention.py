"""Paged attention layer for standard (GQA/MHA) attention: applies the rotary embedding, stores this step's K/V in
the layer's paged cache, then attends each query over its request's whole cached context, through the dispatched
kernels. With a cache, rotary and the store are one kernel (ops.rope_store_kv)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdeploy.layers import ops
from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext
from vdeploy.layers.rotary import RotaryEmbedding


class Attention(nn.Module):
    """Heads are this rank's heads (already divided by TP). kv cache of this layer: ctx.kv_caches[layer_idx],
    [2, NB, BS, Hk, D]. k_scale / v_scale: an fp8 cache's per-layer scales (cached = x / scale), 1.0 unless the
    checkpoint carries them (see vdeploy.checkpoint.kv_scales); host floats, so CUDA graphs bake them in.
    rotary: applied here to q and k at the positions forward is given (None: q and k come rotated, or use none)."""

    # False: rotary and the cache store as two kernels (rotary.py, store_kv.py), for A/B checks; the result is the same
    fuse_rope_store: bool = True

    def __init__(self, num_heads: int, head_dim: int, scale: float, num_kv_heads: int, layer_idx: int,
                 rotary: RotaryEmbedding | None = None):
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"{num_heads} query heads cannot share {num_kv_heads} KV heads evenly")
        self.num_heads, self.head_dim, self.num_kv_heads = num_heads, head_dim, num_kv_heads
        self.scale, self.layer_idx = scale, layer_idx
        self.k_scale, self.v_scale = 1.0, 1.0
        self.rotary_emb = rotary  # may be shared by every layer (one cos/sin cache)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: ForwardContext,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        # q: [T, H * D], k, v: [T, Hk * D] (not yet rotated), positions: [T] -> [T, H * D]
        num_tokens = q.shape[0]
        q = q.view(num_tokens, self.num_heads, self.head_dim)
        k = k.view(num_tokens, self.num_kv_heads, self.head_dim)
        v = v.view(num_tokens, self.num_kv_heads, self.head_dim)
        kv_cache = ctx.kv_caches[self.layer_idx] if self.layer_idx < len(ctx.kv_caches) else None
        if kv_cache is None or kv_cache.numel() == 0:
            # before the KV cache exists (the memory-profiling warm-up run): plain causal attention per request
            if self.rotary_emb is not None:
                q, k = self.rotary_emb(positions, q, k)
            out = self._attend_without_cache(q, k, v, ctx)
        else:
            q, new_kv = self._rotate_and_store(q, k, v, positions, kv_cache, ctx.attn)
            out = ops.paged_attention(q, kv_cache, ctx.attn, self.scale, self.k_scale, self.v_scale,
                                      new_kv=new_kv)  # [T, H, D]
        return out.reshape(num_tokens, self.num_heads * self.head_dim)

    def _rotate_and_store(self, q, k, v, positions, kv_cache: torch.Tensor, meta: AttentionMetadata):
        """Rotary of q and k, the rotated k and v into the cache: (rotated q [T, H, D], new_kv for paged_attention:
        this step's (k, v) as stored, or None where the fused kernel kept no rotated k because attention reads the
        cache only, as every decode step does)."""
        if self.rotary_emb is None or not self.fuse_rope_store:
            if self.rotary_emb is not None:
                q, k = self.rotary_emb(positions, q, k)
            ops.store_kv(k, v, kv_cache, meta.slot_mapping, self.k_scale, self.v_scale)
            return q, (k, v)
        keep_k = ops.attention_reads_new_kv(q, kv_cache, meta)  # host values: no sync, CUDA graphs unaffected
        q, k_rot = self.rotary_emb.rotate_and_store(positions, q, k, v, kv_cache, meta.slot_mapping, self.k_scale,
                                                    self.v_scale, return_k=keep_k)
        return q, ((k_rot, v) if k_rot is not None else None)

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
