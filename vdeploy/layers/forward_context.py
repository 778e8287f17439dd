"""Per-step inputs shared by every attention layer, passed explicitly down the model (no globals).

Tokens of all scheduled requests are flattened into one batch of T tokens. Requests are ordered decodes first
(query length 1), then prefills/extends, so kernels can split the batch at `num_decodes`.
"""

from __future__ import annotations

import functools
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

    @functools.cached_property
    def prefill_context_len(self) -> int:
        """Context tokens (cached prefix + new) of the prefill/extend requests; needs the host lengths."""
        return sum(self.seq_lens_host[self.num_decodes :])

    @functools.cached_property
    def fresh_prefill_counts(self) -> tuple[int, int] | None:
        """(prefill requests with no cached prefix, those with one), from the host lengths; None if unknown. Every
        attention layer's choice of prefill kernel reads it (kernels/paged_attention.py): counted once per step."""
        if self.query_lens_host is None or self.seq_lens_host is None:
            return None
        lens = zip(self.query_lens_host[self.num_decodes :], self.seq_lens_host[self.num_decodes :])
        fresh = sum(1 for q_len, seq_len in lens if q_len == seq_len)
        return fresh, self.num_reqs - self.num_decodes - fresh

    @functools.cached_property
    def query_rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per query token (all T, padding included): its request index and the context length it may see
        (causal: the cached prefix plus its own position in the chunk), int32 on the device. Every MLA layer's
        kernel reads them; computed once per step (a handful of small launches that were once per layer)."""
        qsl = self.query_start_loc.long()  # [B + 1]
        tok = torch.arange(self.slot_mapping.shape[0], device=qsl.device)  # [T]
        req = torch.searchsorted(qsl[1:], tok, right=True)  # [T]
        start = qsl[req]
        visible = self.seq_lens.long()[req] - (qsl[req + 1] - start) + (tok - start) + 1
        return req.to(torch.int32), visible.to(torch.int32)

    @functools.cached_property
    def prefill_query_start_loc(self) -> torch.Tensor:
        """[Bp + 1] int32: query_start_loc of the prefill/extend requests, counted from their first row (the decodes
        before them have one row each)."""
        return self.query_start_loc[self.num_decodes :] - self.num_decodes

    @functools.cached_property
    def prefill_context_starts(self) -> torch.Tensor:
        """[Bp] int32: where each prefill/extend request's context begins in prefill_context_slots."""
        seq_lens = self.seq_lens[self.num_decodes :]  # [Bp]
        return (torch.cumsum(seq_lens, 0) - seq_lens).to(torch.int32)

    @functools.cached_property
    def prefill_context_slots(self) -> torch.Tensor:
        """[S] flat cache slot of every context token of the prefill/extend requests, request after request: the
        gather MLA's expanded prefill does, computed once per step for every layer."""
        seq_lens = self.seq_lens[self.num_decodes :]  # [Bp]
        total = self.prefill_context_len
        req = torch.repeat_interleave(torch.arange(seq_lens.shape[0], device=seq_lens.device), seq_lens.long(),
                                      output_size=total)  # [S]
        pos = torch.arange(total, device=seq_lens.device) - self.prefill_context_starts.long()[req]
        blocks = self.block_tables[self.num_decodes + req, pos // self.block_size].long()
        return blocks * self.block_size + pos % self.block_size


@dataclass
class ForwardContext:
    attn: AttentionMetadata
    kv_caches: list[torch.Tensor]  # per layer: [K, num_blocks, block_size, num_kv_heads, head_dim]
    dp: "DPTokens | None" = None  # DP attention: how this step's tokens are spread over the tensor ranks


@dataclass
class DPTokens:
    """DP attention: each tensor rank holds only its own requests' tokens; the MLP / experts run over every rank's
    tokens, gathered (and their output given back row by row)."""

    counts: list[int]  # tokens of each tensor rank this step (every rank computes the same list from the step)
    rank: int

    def gather(self, x: torch.Tensor, parallel) -> torch.Tensor:
        """x [counts[rank], D] on each rank -> [sum(counts), D], rank after rank, on every rank."""
        width = max(self.counts)
        padded = x.new_zeros(width, *x.shape[1:])  # all_gather needs one shape on every rank
        padded[: x.shape[0]] = x
        full = parallel.all_gather(padded, dim=0)  # [tp * width, D]
        return torch.cat([full[r * width: r * width + n] for r, n in enumerate(self.counts)])

    def own(self, y: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a gathered [sum(counts), D]."""
        start = sum(self.counts[: self.rank])
        return y[start: start + self.counts[self.rank]]
