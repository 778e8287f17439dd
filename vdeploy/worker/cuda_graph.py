"""CUDA graphs for decode steps: one graph per bucketed batch size, replayed to remove kernel-launch overhead.

Captured after the KV cache is allocated (the graphs bake in its addresses), largest bucket first so that every
smaller graph reuses the same memory pool. A step replays a graph when every request decodes one token and the
batch fits the largest bucket; it is padded to the next bucket with requests that write nowhere (slot -1) and
read one cached token (seq_len 1), whose outputs are dropped.

Everything a graph reads lives in static device buffers of fixed shape: block tables are
[max_batch, blocks for max_model_len] and `max_seq_len` is max_model_len, so kernels sized from it at capture time
cover any context. Only used on CUDA; the CPU path never imports this module.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from vdeploy.layers.forward_context import AttentionMetadata, ForwardContext
from vdeploy.worker.input_batch import CopyFence, HostBatch

logger = logging.getLogger(__name__)

MAX_GRAPH_BATCH = 512


def graph_batch_sizes(max_num_seqs: int) -> list[int]:
    """1, 2, 4, 8, then every multiple of 16 up to min(max_num_seqs, 512) (padding waste stays under 16 rows)."""
    cap = max(1, min(max_num_seqs, MAX_GRAPH_BATCH))
    sizes = [s for s in (1, 2, 4, 8) if s <= cap] + list(range(16, cap + 1, 16))
    if sizes[-1] != cap:
        sizes.append(cap)
    return sizes


class DecodeGraphRunner:
    def __init__(
        self,
        model: torch.nn.Module,
        kv_caches: list[torch.Tensor],
        device: torch.device,
        batch_sizes: list[int],
        block_size: int,
        max_model_len: int,
        lora_batch=None,
    ):
        self.model = model
        self.kv_caches = kv_caches
        self.device = device
        self.batch_sizes = sorted(batch_sizes)
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.lora_batch = lora_batch  # LoRABatch: graphs read its static buffers, one run per token
        self.max_batch = self.batch_sizes[-1]
        width = -(-max_model_len // block_size)
        width = -(-width // 16) * 16  # as eager steps round theirs: a multiple of 16 (see build_host_batch)
        b = self.max_batch
        with torch.device(device):
            self.input_ids = torch.zeros(b, dtype=torch.int64)  # [Bmax]
            self.positions = torch.zeros(b, dtype=torch.int64)  # [Bmax]
            self.slot_mapping = torch.full((b,), -1, dtype=torch.int64)  # [Bmax]
            self.seq_lens = torch.ones(b, dtype=torch.int32)  # [Bmax]
            self.query_start_loc = torch.arange(b + 1, dtype=torch.int32)  # [Bmax + 1]: one token per request
            self.block_tables = torch.zeros((b, width), dtype=torch.int32)  # [Bmax, W]
        # pinned staging, so each step's inputs reach the static buffers with non-blocking copies
        self.host_tokens = torch.empty((3, b), dtype=torch.int64, pin_memory=True)  # ids, positions, slots
        self.host_seq_lens = torch.empty(b, dtype=torch.int32, pin_memory=True)
        self.fence = CopyFence(True)  # the staging above is rewritten while the last step may be queued
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}  # bucket -> static hidden states [bucket, D]
        self.memory_bytes = 0

    def context(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, ForwardContext]:
        """(input ids, positions, context) over the first `batch` rows of the static buffers."""
        attn = AttentionMetadata(
            slot_mapping=self.slot_mapping[:batch],
            query_start_loc=self.query_start_loc[: batch + 1],
            seq_lens=self.seq_lens[:batch],
            block_tables=self.block_tables[:batch],
            max_query_len=1,
            max_seq_len=self.max_model_len,
            num_decodes=batch,
            block_size=self.block_size,
        )
        return self.input_ids[:batch], self.positions[:batch], ForwardContext(attn=attn, kv_caches=self.kv_caches)

    @torch.inference_mode()
    def capture(self, companion=None) -> None:
        """Every bucket's graph, largest first. `companion` (e.g. MTPGraphs): captures its own graph per bucket
        right after the step's, in the same memory pool, reading the same static metadata."""
        torch.cuda.synchronize(self.device)
        free_before, _ = torch.cuda.mem_get_info(self.device)
        pool = None
        for batch in reversed(self.batch_sizes):
            if self.lora_batch is not None:  # captured with the LoRA op in: a step without adapters skips it inside
                self.lora_batch.set_graph(np.full(0, -1, dtype=np.int32), batch)
            # a fresh context per call: the metadata caches per-step values (query_rows) the graph must compute
            self.graphs[batch], self.outputs[batch] = capture_graph(
                lambda b=batch: self.model(*self.context(b)), pool)
            pool = self.graphs[batch].pool() if pool is None else pool
            if companion is not None:
                companion.capture(self, batch, pool)
        torch.cuda.synchronize(self.device)
        free_after, _ = torch.cuda.mem_get_info(self.device)
        self.memory_bytes = max(free_before - free_after, 0)
        logger.info(
            "captured %d decode CUDA graphs (batch %d..%d)%s using %.1f MiB",
            len(self.graphs), self.batch_sizes[0], self.max_batch, " with their MTP passes" if companion else "",
            self.memory_bytes / 2**20,
        )

    def can_run(self, hb: HostBatch) -> bool:
        return hb.is_pure_decode and 0 < hb.num_reqs <= self.max_batch

    def bucket_for(self, num_reqs: int) -> int:
        return next(s for s in self.batch_sizes if s >= num_reqs)

    def stage(self, hb: HostBatch) -> int:
        """Write an all-decode batch's inputs and metadata into the static buffers (padded to its bucket);
        returns the bucket. Graphs replayed after it (the step's, an MTP pass's) read them."""
        batch = hb.num_reqs
        bucket = self.bucket_for(batch)
        tokens = self.host_tokens[:, :bucket]
        seq_lens = self.host_seq_lens[:bucket]
        self.fence.before_write()
        fill_padded_decode_inputs(hb, tokens.numpy(), seq_lens.numpy())
        self.input_ids[:bucket].copy_(tokens[0], non_blocking=True)
        self.positions[:bucket].copy_(tokens[1], non_blocking=True)
        self.slot_mapping[:bucket].copy_(tokens[2], non_blocking=True)
        self.seq_lens[:bucket].copy_(seq_lens, non_blocking=True)
        self.fence.after_copies()
        width = hb.block_tables.shape[1]
        # only the columns this step needs; stale columns beyond each seq_len are never read, and padding rows
        # read column 0 of whatever table was there before, which is always a valid block id
        tables = torch.from_numpy(np.ascontiguousarray(hb.block_tables)).pin_memory()
        self.block_tables[:batch, :width].copy_(tables, non_blocking=True)
        return bucket

    def run(self, hb: HostBatch, fill: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Replay the bucket's graph for an all-decode HostBatch; returns hidden states [B, D]. `fill`:
        (token rows [P], token ids [P]) on the device, written over the input ids (placeholder tokens)."""
        bucket = self.stage(hb)
        if fill is not None:
            self.input_ids.index_copy_(0, *fill)
        if self.lora_batch is not None:
            slots = hb.token_lora_slots if hb.token_lora_slots is not None else np.full(0, -1, dtype=np.int32)
            self.lora_batch.set_graph(slots, bucket)
        self.graphs[bucket].replay()
        return self.outputs[bucket][: hb.num_reqs]


def capture_graph(body, pool) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """(graph, its static output) of `body()`, after one eager warm-up call (lazy init, Triton compilation,
    workspace allocation happen outside the capture)."""
    body()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    # thread_local: other engine threads may touch CUDA while this one captures
    with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
        out = body()
    return graph, out


def fill_padded_decode_inputs(hb: HostBatch, tokens: np.ndarray, seq_lens: np.ndarray) -> None:
    """Write an all-decode batch padded to the bucket size len(seq_lens): tokens [3, bucket] = input ids,
    positions, KV slots; seq_lens [bucket]. Padding requests: token 0 at position 0, no KV write (slot -1),
    a one-token context."""
    batch = hb.num_reqs
    tokens[0, :batch] = hb.input_ids
    tokens[1, :batch] = hb.positions
    tokens[2, :batch] = hb.slot_mapping
    tokens[0:2, batch:] = 0
    tokens[2, batch:] = -1
    seq_lens[:batch] = hb.seq_lens
    seq_lens[batch:] = 1
