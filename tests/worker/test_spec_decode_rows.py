"""Draft verification in an all-decode batch runs as one decode row per token (as_decode_rows): same token rows,
each row's context ends at its own position, each row reads its request's block table; a batch with a prefill
keeps its extend path."""

import numpy as np

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.worker.input_batch import as_decode_rows, build_host_batch

GREEDY = SamplingParams(temperature=0)


def batch(*requests):
    return build_host_batch(SchedulerOutput(list(requests), sum(len(r.token_ids) for r in requests)), 4)


def test_verify_batch_becomes_decode_rows():
    decode = ScheduledRequest("a", [7], 9, [3, 5, 6], True, GREEDY)
    spec = ScheduledRequest("b", [1, 2, 3, 4], 6, [8, 2, 9], True, GREEDY, num_draft_tokens=3)
    hb = batch(decode, spec)
    rows = as_decode_rows(hb)
    assert rows.num_reqs == rows.num_decodes == 5 and rows.is_pure_decode
    np.testing.assert_array_equal(rows.seq_lens, [10, 7, 8, 9, 10])
    np.testing.assert_array_equal(rows.query_start_loc, np.arange(6))
    assert rows.block_tables.tolist() == [[3, 5, 6]] + [[8, 2, 9]] * 4
    # token rows, slots, sampled rows and the draft-judging rows are the step's own
    for name in ("input_ids", "positions", "slot_mapping", "logits_indices", "spec_rows"):
        np.testing.assert_array_equal(getattr(rows, name), getattr(hb, name))
    assert rows.query_lens == [1] * 5 and rows.seq_lens_list == [10, 7, 8, 9, 10]


def test_batch_with_a_prefill_keeps_the_extend_path():
    spec = ScheduledRequest("b", [1, 2, 3], 6, [8, 2, 9], True, GREEDY, num_draft_tokens=2)
    prefill = ScheduledRequest("c", [4, 5, 6, 7, 8], 0, [1, 4], True, GREEDY)
    assert as_decode_rows(batch(spec, prefill)) is None
    assert as_decode_rows(batch(ScheduledRequest("a", [7], 9, [3, 5, 6], True, GREEDY))) is None  # no drafts
