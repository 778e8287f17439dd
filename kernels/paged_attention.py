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
  new_kv    optional (k, v) [T, Hk, D] / [T, Hk, Dv]: this step's keys and values row for row beside q, as they
            were stored. Prefill requests with no cached prefix (seq_len == q_len) then read them there, contiguous,
            in fresh_prefill_attention.py instead of gathering pages; requests with a prefix keep the paged kernel.
            Used only when the cache holds the same dtype as k (the stored copy is then bit-identical; an fp8
            cache must be read back quantized to match the twin), the host lengths are known, and, on a GPU, the
            sweep measured the fresh kernel faster there (a "fresh" tuned table exists; the interpreter always
            takes it). attention_reads_new_kv tells a caller beforehand whether this batch will read them (the
            attention layer then keeps its rotated keys, which it otherwise writes only into the cache).
The decode path reads only device tensors and host ints fixed by the batch shape, so it can be captured in a
CUDA graph; the prefill path also reads meta.max_query_len (host) to size its grid.
"""

from __future__ import annotations

import torch

from vdeploy_kernels.decode_attention import DecodeConfig, decode_attention
from vdeploy_kernels.fresh_prefill_attention import FreshPrefillConfig, fresh_config_from_table, fresh_prefill_attention
from vdeploy_kernels.prefill_attention import PrefillConfig, prefill_attention
from vdeploy_kernels.prefill_attention_configs import tuned_config


def count_fresh(meta) -> tuple[int, int] | None:
    """(prefill requests with no cached prefix, those with one); None if the host lengths are unknown."""
    return meta.fresh_prefill_counts


def _route_prefills(q, kv_cache, meta, new_kv_dtype, fresh_config):
    """(prefill requests the fresh kernel reads from new_kv, those left to the paged kernel, the fresh config)."""
    num_prefills = meta.num_reqs - meta.num_decodes
    usable = new_kv_dtype is not None and kv_cache.dtype == new_kv_dtype
    if usable and q.is_cuda and fresh_config is None:
        # on a GPU only where the sweep measured the fresh kernel faster: it writes a "fresh" table only then
        tuned = tuned_config("fresh", q.shape[2], q.shape[1] // kv_cache.shape[3], q.dtype, q.device,
                             meta.max_query_len)
        usable = tuned is not None
        fresh_config = fresh_config_from_table(tuned) if usable else None
    counts = count_fresh(meta) if usable else None
    fresh, prefixed = counts if counts is not None else (0, num_prefills)
    return fresh, prefixed, fresh_config


def attention_reads_new_kv(q: torch.Tensor, kv_cache: torch.Tensor, meta) -> bool:
    """Whether paged_attention(q, kv_cache, meta, new_kv=(k, v)) with k, v in q's dtype reads them: the attention
    layer then keeps the rotated keys its fused rotary + cache store (rope_store_kv.py) writes. Host values only."""
    if meta.num_reqs == meta.num_decodes:
        return False
    return _route_prefills(q, kv_cache, meta, q.dtype, None)[0] > 0


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
    new_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    fresh_config: FreshPrefillConfig | None = None,
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
    if num_prefills == 0:
        return out
    fresh, prefixed, fresh_config = _route_prefills(
        q, kv_cache, meta, new_kv[0].dtype if new_kv is not None else None, fresh_config)
    # a launch per kind present; with both, each kernel's programs return at once on the other kind's requests
    if fresh > 0:
        fresh_prefill_attention(q, new_kv[0], new_kv[1], out, meta.query_start_loc, meta.seq_lens, num_decodes,
                                num_prefills, meta.max_query_len, scale, fresh_config)
    if prefixed > 0:
        prefill_attention(
            q, kv_cache, out, meta.query_start_loc, meta.seq_lens, meta.block_tables,
            num_decodes, num_prefills, meta.max_query_len, scale, dv, prefill_config, k_scale, v_scale,
            skip_fresh=fresh > 0,
        )
    return out
