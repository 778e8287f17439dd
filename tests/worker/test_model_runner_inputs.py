"""Input preparation: the flat batch built from a SchedulerOutput (CPU, no model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker.input_batch import InputStager, build_host_batch

BS = 4
GREEDY = SamplingParams(temperature=0.0)


def sched(*reqs: ScheduledRequest) -> SchedulerOutput:
    return SchedulerOutput(requests=list(reqs), num_scheduled_tokens=sum(len(r.token_ids) for r in reqs))


def test_mixed_prefill_chunk_and_decodes_put_decodes_first():
    prefill = ScheduledRequest("p", [10, 11, 12, 13, 14], 0, [7, 3], True, GREEDY)
    # a middle chunk of a long prompt: positions 6..8, no sampling yet
    chunk = ScheduledRequest("c", [20, 21, 22], 6, [1, 2, 5], False)
    decode_a = ScheduledRequest("a", [30], 9, [4, 6, 8], True, GREEDY)
    decode_b = ScheduledRequest("b", [40], 0, [9], True, GREEDY)
    hb = build_host_batch(sched(prefill, decode_a, chunk, decode_b), BS)

    assert hb.num_decodes == 2 and hb.query_lens == [1, 1, 5, 3]  # order: a, b, p, c
    assert hb.input_ids.tolist() == [30, 40, 10, 11, 12, 13, 14, 20, 21, 22]
    assert hb.positions.tolist() == [9, 0, 0, 1, 2, 3, 4, 6, 7, 8]
    assert hb.seq_lens.tolist() == [10, 1, 5, 9]
    assert hb.query_start_loc.tolist() == [0, 1, 2, 7, 10]
    # slot = block_ids[pos // BS] * BS + pos % BS
    assert hb.slot_mapping.tolist() == [
        8 * 4 + 1,  # a: pos 9 -> block index 2 (id 8), offset 1
        9 * 4 + 0,  # b: pos 0
        7 * 4 + 0, 7 * 4 + 1, 7 * 4 + 2, 7 * 4 + 3, 3 * 4 + 0,  # p
        2 * 4 + 2, 2 * 4 + 3, 5 * 4 + 0,  # c: pos 6, 7 in block 2, pos 8 in block 5
    ]
    assert hb.block_tables.tolist() == [[4, 6, 8], [9, 0, 0], [7, 3, 0], [1, 2, 5]]
    # sampled rows follow the SchedulerOutput order (p, a, b), each at its request's last token
    assert [r.req_id for r in hb.sample_requests] == ["p", "a", "b"]
    assert hb.logits_indices.tolist() == [6, 0, 1]
    assert not hb.is_pure_decode


def test_block_table_width_fixed_and_only_needed_blocks_used():
    r = ScheduledRequest("r", [1, 2], 2, [5, 6, 7], True, GREEDY)  # 4 tokens: one block needed of three held
    hb = build_host_batch(sched(r), BS, block_table_width=6)
    assert hb.block_tables.tolist() == [[5, 0, 0, 0, 0, 0]]
    assert hb.slot_mapping.tolist() == [22, 23]


def test_missing_blocks_is_an_error():
    r = ScheduledRequest("r", [1] * 5, 0, [5], True, GREEDY)
    with pytest.raises(ValueError, match="cannot hold"):
        build_host_batch(sched(r), BS)


def test_all_decode_batch_and_stager_produce_attention_metadata():
    reqs = [ScheduledRequest(f"d{i}", [i], 1 + i, [i], True, GREEDY) for i in range(3)]
    hb = build_host_batch(sched(*reqs), BS)
    assert hb.is_pure_decode
    batch = InputStager(torch.device("cpu"), 64, 8).stage(hb, BS)
    assert batch.attn.num_decodes == 3 and batch.attn.max_query_len == 1 and batch.attn.max_seq_len == 4
    assert batch.attn.query_start_loc.dtype == torch.int32 and batch.attn.block_tables.dtype == torch.int32
    assert batch.attn.slot_mapping.dtype == torch.int64 and batch.input_ids.dtype == torch.int64
    assert np.array_equal(batch.positions.numpy(), [1, 2, 3])
