"""Paged attention entry point: routes the decode rows and the prefill/extend rows of one flat batch.

Contract of `paged_attention(q, kv_cache, meta, scale, v_head_dim=None, k_scale=1.0, v_scale=1.0) -> out`:
  q         [T, H, D] fp16/bf16/fp32 (strided views are fine), H a multiple of Hk
  kv_cache  [K, NB, BS, Hk, D]: K=2 separate key/value; K=1 MLA-style latent cache whose first `v_head_dim`
            channels are the values (v_head_dim defaults to D). Every token of this step is already stored.
  meta      AttentionMetadata: requests ordered decodes first. Requests [0, meta.num_decodes) have one query row
            each (row r = request r) and go to the split-KV decode kernel; the rest go to the prefill kernel,
            which handles any query length against any cached prefix (chunked prefill, prefix-cache hits).
  k_scale, v_scale  an fp8 (e4m3) cache's per-layer scales: cached = x / scale (ignored for 16/32-bit caches;
            a K=1 cache uses k_scale for its values too)
  out       [T, H, Dv] in q's dtype. Row i of a request with q_len rows and context seq_len attends causally to
            keys [0, seq_len - q_len + i].
The decode path reads only device tensors and host ints fixed by the batch shape, so it can be captured in a
CUDA graph; the prefill path also reads meta.max_query_len (host) to size its grid.
"""

from __future__ import annotations

import torch

from vdeploy_kernels.decode_attention import DecodeConfig, decode_attention
from vdeploy_kernels.prefill_attention import PrefillConfig, prefill_attention


def paged_attention(
    q: torch.Tensor,
    kv_cache: torch.Tensor,
    meta,
    scale: float,
    v_head_dim: int | None = None,
    decode_config: DecodeConfig | None = None,
    prefill_config: PrefillConfig | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    num_tokens, num_heads, head_dim = q.shape
    if num_heads % kv_cache.shape[3] != 0:
        raise ValueError(f"{num_heads} query heads are not a multiple of {kv_cache.shape[3]} KV heads")
    if kv_cache.shape[4] != head_dim:
        raise ValueError(f"query head dim {head_dim} != cache head dim {kv_cache.shape[4]}")
    dv = v_head_dim or head_dim
    out = torch.empty(num_tokens, num_heads, dv, dtype=q.dtype, device=q.device)  # [T, H, Dv]
    num_decodes = meta.num_decodes
    decode_attention(q, kv_cache, out, meta.seq_lens, meta.block_tables, num_decodes, scale, dv, decode_config,
                     k_scale, v_scale)
    num_prefills = meta.num_reqs - num_decodes
    if num_prefills > 0:
        prefill_attention(
            q, kv_cache, out, meta.query_start_loc, meta.seq_lens, meta.block_tables,
            num_decodes, num_prefills, meta.max_query_len, scale, dv, prefill_config, k_scale, v_scale,
        )
    return out
