"""Draft tokens from DeepSeek's MTP module, run on every tensor rank right after the target step.

After a step's tokens are known (sampled, or verified drafts), for each request that sampled:
  1. the MTP module runs over the step's token rows with the step's attention metadata: row i gets the main
     model's hidden state at i and the token after i (the input shifted by one; at the request's last valid row the
     token the step just emitted). This also writes the MTP layer's KV for every position the step computed, so
     its cache follows the main model's; rows of rejected drafts are written too and overwritten later, exactly
     like the main layers' slots.
  2. the hidden state at the last valid row gives draft 1 (argmax: a deterministic draft, so the verification's
     one-hot rule stays exact for sampling);
  3. drafts 2..k reuse the module recurrently on its own hidden state and the previous draft, one decode row per
     request at positions P+1 …, in KV slots the scheduler reserved ahead (a request without such room gets
     fewer drafts; those slots are rewritten by the next step's pass 1).
A non-final prefill chunk's last row gets the prompt token after it from the scheduler
(SchedulerOutput.next_token_ids), so chunked prefill leaves the same MTP cache as one pass.
All-decode passes replay CUDA graphs (worker/mtp_graph.py) when the decode graphs are captured; others run eagerly.
"""

from __future__ import annotations

import numpy as np
import torch

from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext
from vdeploy.worker.device import to_device
from vdeploy.worker.input_batch import HostBatch


class MTPDrafter:
    def __init__(self, model, parallel, device: torch.device, block_size: int, num_speculative_tokens: int,
                 max_positions: int):
        self.model, self.parallel, self.device = model, parallel, device
        self.block_size = block_size
        self.k = num_speculative_tokens
        self.max_positions = max_positions  # the rotary cache's length: no draft row beyond it
        self.graphs = None  # MTPGraphs once the decode CUDA graphs are captured (set by the model runner)

    def propose(self, hb: HostBatch, hidden: torch.Tensor, kv_caches: list[torch.Tensor],
                tables: dict[str, list[int]], num_rejected: torch.Tensor | None, next_tokens: torch.Tensor | None,
                decode_rows: HostBatch | None = None) -> list[list[int]]:
        """hidden [T, D]: the main model's output for the step's rows; per sampling request (hb.sample_requests
        order), on the device: how many of its rows were rejected drafts [N], and the last token it emitted [N]
        (None for a step without sampling requests). `decode_rows`: the step's batch as one decode row per token,
        when it ran so (the attention metadata to use). Returns the drafts of each sampling request; the host
        waits for the step's tokens only through these (and, for k > 1, for the rows each request kept)."""
        num = len(hb.sample_requests)
        ids = np.roll(hb.input_ids, -1)  # [T] the token after each row, within a request
        ids[hb.query_start_loc[1:] - 1] = 0  # a chunk's last row: the token after it is set below
        if hb.next_token_rows is not None:  # non-final prefill chunks: the next prompt token
            ids[hb.next_token_rows] = hb.next_token_ids
        ids = to_device(ids, self.device)
        last_valid = to_device(hb.logits_indices[:num], self.device)  # [N] rows
        if num:
            last_valid = last_valid - num_rejected
            ids[last_valid] = next_tokens  # sampling rows: the token just emitted
        # the step's own rows: their metadata is the step's (still staged, when the step replayed a graph)
        h = self._forward(decode_rows or hb, ids, hidden, kv_caches, staged=True)  # [T, D]
        h = h[last_valid]  # [N, D]
        tokens = self._argmax(h)  # [N]
        drafts = [[t] for t in tokens.tolist()]
        if self.k == 1 or not num:
            return drafts
        positions = hb.positions[last_valid.cpu().numpy()]  # [N] the position each draft's hidden state belongs to
        rows = np.arange(num)  # requests still drafting
        block_tables = [tables[r.req_id] for r in hb.sample_requests]
        for _ in range(1, self.k):
            positions = positions + 1
            # only where the request holds a slot for the new position (reserved ahead by the scheduler)
            room = np.fromiter((pos // self.block_size < len(block_tables[i]) and pos < self.max_positions
                                for pos, i in zip(positions, rows)), dtype=bool, count=rows.size)
            if not room.any():
                break
            keep = np.flatnonzero(room)
            rows, positions, h, tokens = rows[keep], positions[keep], h[to_device(keep, self.device)], tokens[
                to_device(keep, self.device)]
            step = _decode_rows(positions, [block_tables[i] for i in rows], self.block_size, self.device)
            h = self._forward(step, tokens, h, kv_caches, staged=False)  # [n, D]
            tokens = self._argmax(h)
            for i, t in zip(rows.tolist(), tokens.tolist()):
                drafts[i].append(t)
        return drafts

    def _forward(self, hb: HostBatch, ids: torch.Tensor, hidden: torch.Tensor, kv_caches: list[torch.Tensor],
                 staged: bool) -> torch.Tensor:
        """The MTP module over hb's rows: ids [T] (the token after each row), hidden [T, D] -> [T, D]; from its
        CUDA graph when hb is an all-decode batch that fits one (the same test the step's forward makes)."""
        if self.graphs is not None and self.graphs.can_run(hb):
            return self.graphs.run(hb, ids, hidden, staged)
        self.model.decode_row_pinning.active = hb.is_pure_decode  # as the step's forward (speculation is on)
        ctx = ForwardContext(attn=_metadata(hb, self.block_size, self.device), kv_caches=kv_caches)
        return self.model.mtp_forward(ids, to_device(hb.positions, self.device), hidden, ctx)

    def _argmax(self, h: torch.Tensor) -> torch.Tensor:
        # every rank gathers the same logits; the driver's argmax is broadcast so ranks can never disagree
        tokens = self.model.mtp_logits(h).argmax(dim=-1)  # [n]
        return self.parallel.broadcast_from_first(tokens.contiguous())


def _metadata(hb: HostBatch, block_size: int, device: torch.device) -> AttentionMetadata:
    """The step's attention metadata again (the step itself may have run from a CUDA graph's static buffers)."""
    return AttentionMetadata(
        slot_mapping=to_device(hb.slot_mapping, device), query_start_loc=to_device(hb.query_start_loc, device),
        seq_lens=to_device(hb.seq_lens, device), block_tables=to_device(hb.block_tables, device),
        max_query_len=max(hb.query_lens, default=0), max_seq_len=max(hb.seq_lens_list, default=0),
        num_decodes=hb.num_decodes, block_size=block_size, query_lens_host=hb.query_lens,
        seq_lens_host=hb.seq_lens_list)


def _decode_rows(positions: np.ndarray, tables: list[list[int]], block_size: int, device: torch.device) -> HostBatch:
    """One decode row per request at `positions` [n], attending to everything up to and including it."""
    n = positions.size
    seq_lens = (positions + 1).astype(np.int32)  # [n]
    width = max(int(-(-seq_lens.max() // block_size)), 1)
    width = -(-width // 16) * 16 if device.type == "cuda" else width  # the runner's table-width multiple
    bt = np.zeros((n, width), dtype=np.int32)  # [n, W]
    for i, table in enumerate(tables):
        need = -(-int(seq_lens[i]) // block_size)
        bt[i, :need] = table[:need]
    slots = bt[np.arange(n), positions // block_size].astype(np.int64) * block_size + positions % block_size
    return HostBatch(
        input_ids=np.zeros(n, dtype=np.int64), positions=positions.astype(np.int64), slot_mapping=slots,
        query_start_loc=np.arange(n + 1, dtype=np.int32), seq_lens=seq_lens, block_tables=bt,
        logits_indices=np.arange(n, dtype=np.int64), sample_requests=[], num_decodes=n, query_lens=[1] * n,
        seq_lens_list=seq_lens.tolist())
