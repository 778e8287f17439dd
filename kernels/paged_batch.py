"""Random paged-attention batches for the kernel tests and the GPU check/benchmark script.

A batch is described by each request's query length and context length (decodes first, query length 1); the
builder scatters every request's context over randomly permuted cache pages, so a kernel that ignores the block
table or mixes up pages fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vdeploy.layers.forward_context import AttentionMetadata


@dataclass
class PagedBatch:
    q: torch.Tensor  # [T, H, D]
    kv_cache: torch.Tensor  # [K, NB, BS, Hk, D]
    meta: AttentionMetadata


def make_metadata(q_lens: list[int], seq_lens: list[int], block_size: int, num_blocks: int,
                  device: torch.device | str, generator: torch.Generator | None = None) -> AttentionMetadata:
    """Metadata for requests with the given query/context lengths, their pages drawn at random from the pool."""
    if any(q > s for q, s in zip(q_lens, seq_lens)):
        raise ValueError("a request's query is longer than its context")
    num_decodes = 0
    while num_decodes < len(q_lens) and q_lens[num_decodes] == 1:
        num_decodes += 1
    pages_per_req = [(s + block_size - 1) // block_size for s in seq_lens]
    if sum(pages_per_req) > num_blocks:
        raise ValueError(f"{sum(pages_per_req)} pages needed, the pool has {num_blocks}")
    perm = torch.randperm(num_blocks, generator=generator, device=generator.device if generator else "cpu").cpu()
    max_pages = max(max(pages_per_req, default=0), 1)  # an empty batch (T = 0) still gets a [0, 1] table
    block_tables = torch.zeros(len(q_lens), max_pages, dtype=torch.int32)  # [B, max_blocks]
    slots: list[torch.Tensor] = []
    used = 0
    for r, (q_len, seq_len, n_pages) in enumerate(zip(q_lens, seq_lens, pages_per_req)):
        block_tables[r, :n_pages] = perm[used : used + n_pages].to(torch.int32)
        used += n_pages
        pos = torch.arange(seq_len - q_len, seq_len)
        slots.append(block_tables[r, pos // block_size].long() * block_size + pos % block_size)
    query_start_loc = torch.zeros(len(q_lens) + 1, dtype=torch.int32)
    query_start_loc[1:] = torch.tensor(q_lens, dtype=torch.int64).cumsum(0).to(torch.int32)
    return AttentionMetadata(
        slot_mapping=torch.cat(slots).to(device) if slots else torch.zeros(0, dtype=torch.int64, device=device),
        query_start_loc=query_start_loc.to(device),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
        block_tables=block_tables.to(device),
        max_query_len=max(q_lens, default=0),
        max_seq_len=max(seq_lens, default=0),
        num_decodes=num_decodes,
        block_size=block_size,
        query_lens_host=list(q_lens),
        seq_lens_host=list(seq_lens),
    )


def make_paged_batch(q_lens: list[int], seq_lens: list[int], *, num_heads: int, num_kv_heads: int, head_dim: int,
                     block_size: int, dtype: torch.dtype, device: torch.device | str = "cpu",
                     num_components: int = 2, spare_blocks: int = 3,
                     generator: torch.Generator | None = None) -> PagedBatch:
    """Random q and a random cache (every slot filled, unused pages too) for the given request lengths."""
    num_blocks = sum((s + block_size - 1) // block_size for s in seq_lens) + spare_blocks
    meta = make_metadata(q_lens, seq_lens, block_size, num_blocks, device, generator)
    cache_shape = (num_components, num_blocks, block_size, num_kv_heads, head_dim)
    # drawn directly on the device (the generator, if given, must live there too): GPU checks use caches of GBs
    kv_cache = torch.randn(cache_shape, generator=generator, dtype=dtype, device=device)
    q = torch.randn(sum(q_lens), num_heads, head_dim, generator=generator, dtype=dtype, device=device)
    return PagedBatch(q, kv_cache, meta)
