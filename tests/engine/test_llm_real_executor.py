"""The engine on the real executor and model runner (CPU, torch reference ops) with tiny seeded checkpoints:
scheduling choices must never change the tokens."""

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams

PROMPTS = [
    [(31 * i + 7 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([9, 37, 21, 5])
]
PROMPTS.append(PROMPTS[1][:33] + [11, 12])  # shares 8 blocks of 4 with prompt 1


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def checkpoint(request, tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp(request.param), request.param, dtype="float32", num_shards=1)


def greedy(checkpoint, **kw):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, **kw) as llm:
        outs = llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True))
        return [o.outputs[0].token_ids for o in outs], llm.core.stats()


def test_greedy_tokens_identical_across_budget_prefix_caching_and_preemption(checkpoint):
    baseline, _ = greedy(checkpoint, enable_prefix_caching=False, max_num_batched_tokens=4096, num_gpu_blocks_override=256)
    assert all(len(t) == 32 for t in baseline)
    # prefix caching on + chunked prefill (16 tokens a step)
    chunked, stats = greedy(checkpoint, enable_prefix_caching=True, max_num_batched_tokens=16, num_gpu_blocks_override=256)
    assert stats.prefix_cache_hits >= 32 and chunked == baseline
    # 24 blocks x 4 tokens while the five requests need 5 + 18 + 14 + 10 + 17 blocks at the end: preemption
    tight, stats = greedy(checkpoint, enable_prefix_caching=True, max_num_batched_tokens=4096, num_gpu_blocks_override=24)
    assert stats.num_preemptions > 0 and tight == baseline


def test_seeded_n4_sampling_is_reproducible(checkpoint):
    params = SamplingParams(n=4, temperature=1.0, top_p=0.95, seed=7, max_tokens=12, ignore_eos=True)
    runs = []
    for _ in range(2):
        with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=128) as llm:
            (out,) = llm.generate([PROMPTS[2]], params)
            runs.append({c.index: c.token_ids for c in out.outputs})
    assert sorted(runs[0]) == [0, 1, 2, 3] and runs[0] == runs[1]
    assert len({tuple(t) for t in runs[0].values()}) > 1


def test_closing_the_engine_releases_the_model_and_its_kv_cache(checkpoint):
    """Benchmarks and tests load engine after engine in one process: a closed engine must leave nothing behind that
    holds its weights or KV cache (on a GPU, the next engine would run out of memory)."""
    import gc
    import weakref

    import torch

    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=32) as llm:
        llm.generate(PROMPTS[:2], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
        runner = llm.core.executor.runner
        model, cache = weakref.ref(runner.model), weakref.ref(runner.kv_caches[0])
        assert isinstance(cache(), torch.Tensor)
    del llm, runner
    gc.collect()
    assert model() is None and cache() is None
