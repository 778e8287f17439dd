"""The in-process executor and model runner end to end on a tiny HF-saved Llama (fp32, CPU), against HF greedy."""

from __future__ import annotations

from dataclasses import replace

import pytest
from worker_checkpoints import engine_config, greedy_generate, hf_greedy, model_config, save_tiny_checkpoint

from vdeploy.engine.outputs import ScheduledRequest, SchedulerOutput
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.executor import create_executor
from vdeploy.executor.uniproc import UniProcExecutor

PROMPTS = [[1, 5, 9, 33, 17, 80, 4], [1, 100, 3], [1, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 60]]
STEPS = 12


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="module")
def executor(llama_path):
    ex = create_executor(engine_config(llama_path), model_config(llama_path))
    ex.initialize_kv_cache(ex.determine_num_kv_blocks())
    yield ex
    ex.shutdown()


def test_kv_cache_spec_and_cpu_block_budget(llama_path, executor):
    assert isinstance(executor, UniProcExecutor)
    spec = executor.kv_cache_spec
    assert (spec.kind, spec.num_layers, spec.num_kv_heads, spec.head_dim, spec.dtype) == ("mha", 2, 4, 8, "float32")
    assert executor.determine_num_kv_blocks() == 128  # num_gpu_blocks_override wins
    base = engine_config(llama_path)
    budget = replace(base, cache=replace(base.cache, num_gpu_blocks_override=None, cpu_kv_cache_bytes=1 << 20))
    ex = create_executor(budget, model_config(llama_path))
    try:
        assert ex.determine_num_kv_blocks() == (1 << 20) // spec.bytes_per_block == 512
    finally:
        ex.shutdown()
    caches = executor.runner.kv_caches
    assert len(caches) == 2 and tuple(caches[0].shape) == (2, 128, 4, 4, 8)


def test_greedy_matches_hf_batched_and_chunked(llama_path, executor):
    expected = hf_greedy(llama_path, PROMPTS, STEPS)
    assert greedy_generate(executor, PROMPTS, STEPS) == expected
    # prompts split into chunks of 3 tokens, mixed with other requests' decodes in the same steps
    assert greedy_generate(executor, PROMPTS, STEPS, chunk=3) == expected


def test_no_sampling_step_and_empty_step(executor):
    chunk = ScheduledRequest("x", [1, 2, 3], 0, [0, 1], sample=False)
    out = executor.execute(SchedulerOutput([chunk], 3))
    assert out.req_ids == [] and out.sampled_token_ids == []
    assert executor.execute(SchedulerOutput([], 0)).sampled_token_ids == []


def test_seeded_sampling_and_logprobs_through_the_runner(executor):
    params = SamplingParams(temperature=1.0, seed=7, logprobs=3, max_tokens=None)

    def step():
        reqs = [ScheduledRequest(f"s{i}", [1, 9, 4], 0, [10 + 2 * i, 11 + 2 * i], True, params) for i in range(2)]
        return executor.execute(SchedulerOutput(reqs, 6))

    first, second = step(), step()
    assert first.sampled_token_ids == second.sampled_token_ids
    assert first.sampled_token_ids[0] == first.sampled_token_ids[1]  # same seed, same step, same prompt
    assert len(first.logprobs) == 2 and len(first.logprobs[0].top) == 3
    assert first.logprobs[0].token_id == first.sampled_token_ids[0]


def test_memory_warmup_steps_run_on_a_one_block_scratch_cache(executor):
    from vdeploy.worker.memory_profile import decode_batch, warmup_batch

    runner = executor.runner
    saved = runner.kv_caches
    runner.allocate_kv_cache(1)
    try:
        sched = warmup_batch(max_num_batched_tokens=64, max_num_seqs=8, max_model_len=256, vocab_size=128,
                             block_size=4)
        assert sched.num_scheduled_tokens == 64 and len(sched.requests) == 8
        out = runner.execute(sched)
        assert len(out.sampled_token_ids) == 8 and all(len(lp.top) == 20 for lp in out.logprobs)
        assert runner.execute(decode_batch(8)).sampled_token_ids == []
    finally:
        runner.kv_caches = saved
