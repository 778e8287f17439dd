"""From a stateless SchedulerOutput to the flat token batch the model runs on.

`build_host_batch` is pure host code (numpy) and is what the tests check: request order (decodes first, as
AttentionMetadata requires), positions, KV slots, lengths, block tables and the rows whose logits are sampled.
`InputStager` moves a host batch to the device through persistent pinned buffers with non-blocking copies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from vdeploy.engine.outputs import PLACEHOLDER_TOKEN_ID, ScheduledRequest, SchedulerOutput
from vdeploy.layers.forward_context import AttentionMetadata


@dataclass
class HostBatch:
    input_ids: np.ndarray  # [T] int64
    positions: np.ndarray  # [T] int64
    slot_mapping: np.ndarray  # [T] int64
    query_start_loc: np.ndarray  # [B + 1] int32
    seq_lens: np.ndarray  # [B] int32
    block_tables: np.ndarray  # [B, max_blocks] int32, padded with 0
    logits_indices: np.ndarray  # [N] int64: token row of each sampling request, in SchedulerOutput order
    sample_requests: list[ScheduledRequest]  # the N requests that sample, in SchedulerOutput order
    num_decodes: int
    query_lens: list[int]  # [B]
    seq_lens_list: list[int]  # [B]
    # tokens the previous step samples (PLACEHOLDER_TOKEN_ID in input_ids): their rows, and whose token each is
    placeholder_rows: np.ndarray | None = None  # [P] int64
    placeholder_req_ids: list[str] | None = None  # [P]
    # speculative decoding: the rows whose logits judge the drafts ([S], sum of the draft counts), and which of
    # sample_requests speculate (their drafts, in order, own consecutive stretches of spec_rows)
    spec_rows: np.ndarray | None = None
    spec_samples: list[int] | None = None
    # LoRA: each token's adapter slot [T] int32 (-1: the base model); None when no request of the step has one
    token_lora_slots: np.ndarray | None = None
    # MTP: the last rows of non-final prefill chunks [C] and the known token after each [C]
    next_token_rows: np.ndarray | None = None
    next_token_ids: np.ndarray | None = None

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_reqs(self) -> int:
        return int(self.seq_lens.shape[0])

    @property
    def is_pure_decode(self) -> bool:
        return self.num_decodes == self.num_reqs


def build_host_batch(
    sched: SchedulerOutput, block_size: int, block_table_width: int | None = None, width_multiple: int = 1,
    tables: dict[str, list[int]] | None = None,
) -> HostBatch:
    """Flatten the scheduled requests. `block_table_width` fixes the block-table width (CUDA graphs need one shape);
    by default it is the widest table this step needs, rounded up to `width_multiple` (on CUDA 16: Triton
    specialises a row stride on divisibility by 16, so a stable multiple keeps one compiled kernel variant).

    `tables`: the rank's block tables by request id (BlockTables.apply of this step); without them every request
    must carry its whole table (`new_table`), as tests and warm-up steps do.

    Vectorised over tokens and blocks (a Python loop per request costs milliseconds at batch 256, a sizeable share
    of a GPU decode step); the only per-request Python work is list concatenation."""
    reqs = sched.requests
    all_query_lens = [len(r.token_ids) for r in reqs]
    num_decodes = all_query_lens.count(1)
    if all_query_lens[num_decodes:].count(1) == 0:  # already decodes first (the scheduler sends them so)
        order = None
        ordered, query_lens = reqs, all_query_lens
    else:  # decodes first; stable, so the relative order of the rest is the scheduler's
        order = sorted(range(len(reqs)), key=lambda i: all_query_lens[i] != 1)
        ordered = [reqs[i] for i in order]
        query_lens = [all_query_lens[i] for i in order]
    num_reqs = len(ordered)

    q_lens = np.asarray(query_lens, dtype=np.int64)  # [B]
    starts = np.fromiter((r.start_pos for r in ordered), dtype=np.int64, count=num_reqs)  # [B]
    seq_lens = starts + q_lens  # [B]
    n_blocks = -(-seq_lens // block_size)  # [B] blocks each request needs
    if tables is None:
        if not all(r.new_table for r in ordered):
            raise ValueError("a step with block-table diffs needs the rank's tables")
        req_tables = [r.block_ids for r in ordered]
    else:
        req_tables = [tables[r.req_id] for r in ordered]
    held = np.fromiter((len(t) for t in req_tables), dtype=np.int64, count=num_reqs)  # [B]
    if block_table_width is not None:
        width = block_table_width
    else:
        width = -(-int(n_blocks.max(initial=0)) // width_multiple) * width_multiple
    short = np.flatnonzero(held < n_blocks)
    if short.size:
        b = int(short[0])
        raise ValueError(
            f"request {ordered[b].req_id}: {held[b]} blocks cannot hold {seq_lens[b]} tokens of block size {block_size}"
        )
    if num_reqs and int(n_blocks.max()) > width:
        b = int(n_blocks.argmax())
        raise ValueError(f"request {ordered[b].req_id} needs {n_blocks[b]} blocks, more than the table width {width}")

    query_start_loc = np.zeros(num_reqs + 1, dtype=np.int32)  # [B + 1]
    np.cumsum(q_lens, out=query_start_loc[1:])
    num_tokens = int(query_start_loc[-1])
    input_ids = np.fromiter(chain.from_iterable(r.token_ids for r in ordered), dtype=np.int64, count=num_tokens)
    if num_decodes == num_reqs:  # pure decode: one token per request
        positions = starts.copy()  # [T]
        req_of_token = np.arange(num_reqs)  # [T]
    else:
        req_of_token = np.repeat(np.arange(num_reqs), q_lens)  # [T]
        positions = np.arange(num_tokens, dtype=np.int64) + (starts - query_start_loc[:-1])[req_of_token]  # [T]

    placeholder_rows = np.flatnonzero(input_ids == PLACEHOLDER_TOKEN_ID)  # [P]
    placeholder_req_ids = None
    if placeholder_rows.size:
        placeholder_req_ids = [ordered[i].req_id for i in req_of_token[placeholder_rows].tolist()]
        input_ids[placeholder_rows] = 0  # a valid id until the device substitutes the sampled token
    else:
        placeholder_rows = None

    total_blocks = int(n_blocks.sum())
    # a running request holds exactly the blocks it needs: slice only the rare list that holds more
    needed_list = n_blocks.tolist()
    flat_blocks = np.fromiter(
        chain.from_iterable(
            t if len(t) == n else t[:n] for t, n in zip(req_tables, needed_list)
        ),
        dtype=np.int64,
        count=total_blocks,
    )
    block_tables = np.zeros((num_reqs, width), dtype=np.int32)  # [B, W]
    # a boolean mask walks the table row-major, i.e. in the order of flat_blocks
    block_tables[np.arange(width)[None, :] < n_blocks[:, None]] = flat_blocks
    slot_block = block_tables[req_of_token, positions // block_size].astype(np.int64)  # [T]
    slot_mapping = slot_block * block_size + positions % block_size  # [T]

    # each sampling request's last token row, in SchedulerOutput order
    last_rows = query_start_loc[1:] - 1  # [B] in batch order
    if order is not None:
        row_in_sched = np.empty(num_reqs, dtype=np.int64)
        row_in_sched[np.asarray(order, dtype=np.int64)] = last_rows
    else:
        row_in_sched = last_rows.astype(np.int64)
    sampled = [i for i, r in enumerate(reqs) if r.sample]
    if len(sampled) == num_reqs:
        logits_indices, sample_requests = row_in_sched, list(reqs)
    else:
        logits_indices = row_in_sched[np.asarray(sampled, dtype=np.int64)]
        sample_requests = [reqs[i] for i in sampled]
    spec = [(j, r.num_draft_tokens) for j, r in enumerate(sample_requests) if r.num_draft_tokens]
    spec_rows = None
    if spec:  # rows of t0, d1 … d(k-1): the logits that judge each draft (the last row's logits give the bonus)
        spec_rows = np.concatenate([logits_indices[j] - k + np.arange(k) for j, k in spec]).astype(np.int64)
    token_lora_slots = None
    if any(r.lora_slot >= 0 for r in ordered):
        req_slots = np.fromiter((r.lora_slot for r in ordered), dtype=np.int32, count=num_reqs)  # [B]
        token_lora_slots = req_slots[req_of_token]  # [T]
    next_token_rows = next_token_ids = None
    if sched.next_token_ids:  # MTP only: a few prefill chunks
        known = [(int(query_start_loc[b + 1]) - 1, sched.next_token_ids[r.req_id])
                 for b, r in enumerate(ordered) if r.req_id in sched.next_token_ids]
        next_token_rows = np.asarray([row for row, _ in known], dtype=np.int64)
        next_token_ids = np.asarray([tok for _, tok in known], dtype=np.int64)
    return HostBatch(
        input_ids=input_ids,
        positions=positions,
        slot_mapping=slot_mapping,
        query_start_loc=query_start_loc,
        seq_lens=seq_lens.astype(np.int32),
        block_tables=block_tables,
        logits_indices=np.ascontiguousarray(logits_indices, dtype=np.int64),
        sample_requests=sample_requests,
        num_decodes=num_decodes,
        query_lens=query_lens,
        seq_lens_list=seq_lens.tolist(),
        placeholder_rows=placeholder_rows,
        placeholder_req_ids=placeholder_req_ids,
        spec_rows=spec_rows,
        spec_samples=[j for j, _ in spec] if spec else None,
        token_lora_slots=token_lora_slots,
        next_token_rows=next_token_rows,
        next_token_ids=next_token_ids,
    )


def as_decode_rows(hb: HostBatch) -> HostBatch | None:
    """A speculative batch whose requests are all decodes or draft verifications, as one decode row per token:
    row j of a request at position p attends to the context up to and including p (seq_len p + 1) through the
    request's block table. Every layer stores the whole batch's keys/values before attending, so a row sees the
    keys of the rows before it in the same step: the same causal attention, computed by the decode path, and the
    step becomes a pure-decode batch the decode CUDA graphs replay. Token rows (and so logits_indices, spec_rows,
    placeholder rows) are unchanged. None when some request prefills (the batch keeps its extend path)."""
    if hb.spec_rows is None or hb.num_tokens != hb.num_reqs + hb.spec_rows.size:
        return None
    q_lens = np.diff(hb.query_start_loc)  # [B]
    req_of_token = np.repeat(np.arange(hb.num_reqs), q_lens)  # [T]
    seq_lens = (hb.positions + 1).astype(np.int32)  # [T]
    return dataclasses.replace(
        hb, query_start_loc=np.arange(hb.num_tokens + 1, dtype=np.int32), seq_lens=seq_lens,
        block_tables=hb.block_tables[req_of_token], num_decodes=hb.num_tokens, query_lens=[1] * hb.num_tokens,
        seq_lens_list=seq_lens.tolist(), next_token_rows=None, next_token_ids=None)


@dataclass
class DeviceBatch:
    input_ids: torch.Tensor  # [T]
    positions: torch.Tensor  # [T]
    attn: AttentionMetadata


class CopyFence:
    """Guards persistent pinned staging buffers. With asynchronous scheduling the next step is staged while the
    previous one may not even have started on the device (its copies wait behind the step before it), so a step
    waits for the previous step's host-to-device copies before it rewrites the buffers they read."""

    def __init__(self, enabled: bool):
        self._event = torch.cuda.Event() if enabled else None
        self._pending = False

    def before_write(self) -> None:
        if self._pending:
            self._event.synchronize()
            self._pending = False

    def after_copies(self) -> None:
        if self._event is not None:
            self._event.record()
            self._pending = True


class InputStager:
    """Host -> device transfer of a HostBatch. On CUDA: persistent pinned buffers sized for the largest step and
    non-blocking copies, guarded by a CopyFence (`fence.before_write()` before a step's first upload,
    `fence.after_copies()` after its last)."""

    def __init__(self, device: torch.device, max_num_tokens: int, max_num_reqs: int):
        self.device = device
        self.pinned = device.type == "cuda"
        self._buffers: dict[str, torch.Tensor] = {}
        self.max_num_tokens = max_num_tokens
        self.max_num_reqs = max_num_reqs
        self.fence = CopyFence(self.pinned)

    def _upload(self, name: str, array: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(array)
        if not self.pinned:
            return host
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < host.numel() or buf.dtype != host.dtype:
            capacity = max(host.numel(), self._default_capacity(name))
            buf = torch.empty(capacity, dtype=host.dtype, pin_memory=True)
            self._buffers[name] = buf
        staged = buf[: host.numel()].view(host.shape)
        staged.copy_(host)
        return staged.to(self.device, non_blocking=True)

    def _default_capacity(self, name: str) -> int:
        if name in ("input_ids", "positions", "slot_mapping", "logits_indices"):
            return self.max_num_tokens
        return self.max_num_reqs + 1

    def stage(self, hb: HostBatch, block_size: int) -> DeviceBatch:
        attn = AttentionMetadata(
            slot_mapping=self._upload("slot_mapping", hb.slot_mapping),
            query_start_loc=self._upload("query_start_loc", hb.query_start_loc),
            seq_lens=self._upload("seq_lens", hb.seq_lens),
            block_tables=self._upload("block_tables", hb.block_tables),
            max_query_len=max(hb.query_lens, default=0),
            max_seq_len=max(hb.seq_lens_list, default=0),
            num_decodes=hb.num_decodes,
            block_size=block_size,
            query_lens_host=hb.query_lens,
            seq_lens_host=hb.seq_lens_list,
        )
        return DeviceBatch(
            input_ids=self._upload("input_ids", hb.input_ids),
            positions=self._upload("positions", hb.positions),
            attn=attn,
        )

    def upload_indices(self, logits_indices: np.ndarray) -> torch.Tensor:
        """The token rows whose logits are sampled: [N] int64."""
        return self._upload("logits_indices", logits_indices)

    def upload_placeholders(self, dst_rows: np.ndarray, src_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The placeholder token rows [P] and the rows of last step's samples that fill them [P] (int64). Through
        the pinned buffers: a copy from pageable memory may wait for the step in flight, which is what asynchronous
        scheduling must never do."""
        return self._upload("placeholder_dst", dst_rows), self._upload("placeholder_src", src_rows)
