"""A minimal, eager driver for a vdeploy model outside the engine: a private paged KV cache, contiguous block
assignment per sequence, one ForwardContext per step, greedy decoding. It is what model-level tests and one-off
checks (the demo model answering a question) use; the engine's model runner does the same job with scheduling,
prefix caching and sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext


@dataclass
class _Sequence:
    blocks: list[int] = field(default_factory=list)
    num_cached: int = 0  # tokens whose K/V are in the cache


class ReferenceRunner:
    def __init__(self, model: nn.Module, *, num_kv_heads: int, head_dim: int, num_layers: int,
                 num_blocks: int = 64, block_size: int = 16, kv_components: int = 2,
                 dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        self.model = model
        first = next(model.parameters())
        self.device = torch.device(device) if device is not None else first.device
        self.dtype = dtype or first.dtype
        self.block_size = block_size
        shape = (kv_components, num_blocks, block_size, num_kv_heads, head_dim)
        self.kv_caches = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(num_layers)]
        self._free_blocks = list(range(num_blocks))
        self._sequences: dict[str, _Sequence] = {}

    def release(self, seq_id: str) -> None:
        seq = self._sequences.pop(seq_id)
        self._free_blocks.extend(seq.blocks)

    @torch.inference_mode()
    def step(self, batch: dict[str, list[int]]) -> dict[str, torch.Tensor]:
        """Run the new tokens of each sequence (prefill, chunk or decode) in one forward pass; returns each
        sequence's float32 logits [n_new, V] for all of its new tokens."""
        order = sorted(batch, key=lambda s: len(batch[s]) != 1)  # decodes (one new token) first
        token_ids, positions, slots, block_rows = [], [], [], []
        query_lens, seq_lens = [], []
        for seq_id in order:
            seq = self._sequences.setdefault(seq_id, _Sequence())
            new = batch[seq_id]
            total = seq.num_cached + len(new)
            while len(seq.blocks) * self.block_size < total:
                if not self._free_blocks:
                    raise RuntimeError("reference runner out of KV blocks")
                seq.blocks.append(self._free_blocks.pop(0))
            for pos in range(seq.num_cached, total):
                slots.append(seq.blocks[pos // self.block_size] * self.block_size + pos % self.block_size)
            token_ids += new
            positions += range(seq.num_cached, total)
            query_lens.append(len(new))
            seq_lens.append(total)
            block_rows.append(seq.blocks)
            seq.num_cached = total
        width = max(len(r) for r in block_rows)
        starts = [0]
        for n in query_lens:
            starts.append(starts[-1] + n)
        num_decodes = next((i for i, n in enumerate(query_lens) if n != 1), len(query_lens))
        as_int = dict(device=self.device, dtype=torch.int32)
        meta = AttentionMetadata(
            slot_mapping=torch.tensor(slots, device=self.device, dtype=torch.int64),
            query_start_loc=torch.tensor(starts, **as_int),
            seq_lens=torch.tensor(seq_lens, **as_int),
            block_tables=torch.tensor([r + [0] * (width - len(r)) for r in block_rows], **as_int),
            max_query_len=max(query_lens), max_seq_len=max(seq_lens), num_decodes=num_decodes,
            block_size=self.block_size, query_lens_host=query_lens, seq_lens_host=seq_lens,
        )
        ctx = ForwardContext(attn=meta, kv_caches=self.kv_caches)
        ids = torch.tensor(token_ids, device=self.device, dtype=torch.int64)
        pos = torch.tensor(positions, device=self.device, dtype=torch.int64)
        logits = self.model.compute_logits(self.model(ids, pos, ctx))  # [T, V]
        return {seq_id: logits[starts[i]: starts[i + 1]] for i, seq_id in enumerate(order)}

    def greedy(self, prompts: dict[str, list[int]], max_new_tokens: int,
               stop_token_ids: tuple[int, ...] = ()) -> dict[str, list[int]]:
        """Greedy continuation of every prompt, batched: one prefill step, then one decode step per token."""
        outputs: dict[str, list[int]] = {seq_id: [] for seq_id in prompts}
        step_input = dict(prompts)
        for _ in range(max_new_tokens):
            if not step_input:
                break
            logits = self.step(step_input)
            step_input = {}
            for seq_id, seq_logits in logits.items():
                token = int(seq_logits[-1].argmax())
                outputs[seq_id].append(token)
                if token not in stop_token_ids:
                    step_input[seq_id] = [token]
        return outputs
