"""The kernel warm-up steps: which variants they cover, that they respect the scheduler's limits, and that running
them on a runner leaves later results unchanged (they only touch block 0, which no request owns yet)."""

from __future__ import annotations

import pytest
from worker_checkpoints import engine_config, greedy_generate, model_config, save_tiny_checkpoint

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.executor import create_executor
from vdeploy.worker.input_batch import build_host_batch
from vdeploy.worker.kernel_warmup import WARMUP_NUM_DECODES, WARMUP_QUERY_LENS, warm_up_kernels, warmup_steps


def test_steps_cover_every_query_class_and_decode_count():
    steps = warmup_steps(block_size=16, max_num_batched_tokens=8192, max_num_seqs=256, max_model_len=4096)
    assert len(steps) == len(WARMUP_QUERY_LENS) * len(WARMUP_NUM_DECODES)
    seen = set()
    for step in steps:
        hb = build_host_batch(step, 16)  # valid batches: block tables cover every context
        prefill_len = hb.query_lens[-1]
        seen.add((prefill_len, hb.num_decodes))
        assert hb.query_lens[: hb.num_decodes] == [1] * hb.num_decodes
        assert set(hb.slot_mapping.tolist()) <= set(range(16 * 2))  # block 0 (and its neighbour slots) only
        assert step.num_scheduled_tokens == hb.num_tokens
    assert seen == {(q, d) for q in WARMUP_QUERY_LENS for d in WARMUP_NUM_DECODES}


def test_steps_respect_small_limits():
    steps = warmup_steps(block_size=4, max_num_batched_tokens=50, max_num_seqs=2, max_model_len=64)
    assert steps
    for step in steps:
        assert step.num_scheduled_tokens <= 50
        assert len(step.requests) <= 2
        assert all(r.start_pos + len(r.token_ids) <= 64 for r in step.requests)
    assert warmup_steps(block_size=4, max_num_batched_tokens=8, max_num_seqs=1, max_model_len=8)[0].requests[0].token_ids


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama-warmup"), "llama")


def test_warm_up_leaves_generation_unchanged(llama_path):
    prompts = [[1, 5, 9, 33, 17], [1, 100, 3, 8]]
    ex = create_executor(engine_config(llama_path), model_config(llama_path))
    try:
        ex.initialize_kv_cache(ex.determine_num_kv_blocks())
        before = greedy_generate(ex, prompts, 6)
        assert warm_up_kernels(ex.runner) >= 0.0
        assert greedy_generate(ex, prompts, 6) == before
    finally:
        ex.shutdown()


def test_block_tables_padded_to_a_width_multiple():
    """CUDA steps round the table width up to 16 (one Triton stride specialisation); the padding stays zero."""
    greedy = SamplingParams(temperature=0.0)
    reqs = [ScheduledRequest("a", [3], 40, [7, 8, 9], True, greedy), ScheduledRequest("b", [4, 5], 0, [2], True, greedy)]
    so = SchedulerOutput(reqs, 3)
    plain = build_host_batch(so, 16)
    padded = build_host_batch(so, 16, width_multiple=16)
    assert plain.block_tables.shape == (2, 3) and padded.block_tables.shape == (2, 16)
    assert padded.block_tables[:, :3].tolist() == plain.block_tables.tolist() == [[7, 8, 9], [2, 0, 0]]
    assert not padded.block_tables[:, 3:].any()
    assert padded.slot_mapping.tolist() == plain.slot_mapping.tolist() == [9 * 16 + 8, 2 * 16, 2 * 16 + 1]
