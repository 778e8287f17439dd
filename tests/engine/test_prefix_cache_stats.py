"""Prefix-cache counters (/metrics vdeploy_prefix_cache_queries_total / _hits_total and the hit rate) count prompt
tokens looked up at a request's admission and the ones found, on the real engine. A request readmitted after a
preemption recomputes its prompt *and* its output from its own freed blocks: that is neither a prompt lookup nor a
prefix hit, and counting it inflated the hit rate exactly when memory was short."""

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams

PROMPTS = [[(31 * i + 7 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([9, 37, 21, 5])]
PROMPTS.append(PROMPTS[1][:33] + [11, 12])  # shares 8 blocks of 4 with prompt 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("llama"), "llama", dtype="float32", num_shards=1)


@pytest.mark.parametrize("num_blocks", [256, 24])  # 24 blocks of 4: the five requests preempt each other
def test_counters_match_the_prompts_and_the_reported_cached_tokens(checkpoint, num_blocks):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=num_blocks) as llm:
        outs = llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True))
        stats = llm.core.stats()
    assert (stats.num_preemptions > 0) == (num_blocks == 24)
    assert stats.prefix_cache_queries == sum(len(p) for p in PROMPTS)
    # what the counter calls hits is what the usage reports as cached: prompt 4 finds prompt 1's 8 blocks
    assert stats.prefix_cache_hits == sum(o.num_cached_tokens for o in outs) == 32


def test_a_request_scoring_its_prompt_is_no_lookup(checkpoint):
    # prompt logprobs need every prompt position computed: such a request skips the lookup, so it adds no query
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, num_gpu_blocks_override=256) as llm:
        llm.generate(PROMPTS[1:2], SamplingParams(temperature=0, max_tokens=2))
        scored = llm.generate(PROMPTS[1:2], SamplingParams(temperature=0, max_tokens=2, prompt_logprobs=1))
        stats = llm.core.stats()
    assert scored[0].num_cached_tokens == 0
    assert (stats.prefix_cache_queries, stats.prefix_cache_hits) == (len(PROMPTS[1]), 0)
