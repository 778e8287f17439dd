"""Per-step inputs shared by every attention layer, passed explicitly down the model (no globals).

Tokens of all scheduled requests are flattened into one batch of T tokens. Requests are ordered decodes first
(query length 1), then prefills/extends, so kernels can split the batch at `num_decodes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [T] int64: flat KV slot (block_id * block_size + offset) of each token; -1 = pad
    query_start_loc: torch.Tensor  # [B + 1] int32: token offsets of each request in the batch
    seq_lens: torch.Tensor  # [B] int32: context length after this step (cached prefix + new tokens)
    block_tables: torch.Tensor  # [B, max_blocks] int32: physical block ids, padded with 0
    max_query_len: int
    max_seq_len: int
    num_decodes: int  # the first num_decodes requests have exactly one query token
    block_size: int
    # host copies (lists) for the torch reference path, which loops over requests
    query_lens_host: list[int] | None = None
    seq_lens_host: list[int] | None = None

    @property
    def num_reqs(self) -> int:
        return int(self.seq_lens.shape[0])


@dataclass
class ForwardContext:
    attn: AttentionMetadata
    kv_caches: list[torch.Tensor]  # per layer: [K, num_blocks, block_size, num_kv_heads, head_dim]
