"""Asynchronous scheduling on the real model runner (CPU, torch reference ops, a tiny seeded fp32 checkpoint):
the same tokens as the synchronous loop, for one rank and for three tensor-parallel rank processes (gloo), with
chunked prefill, prefix caching, preemption, seeded n > 1 sampling and penalties."""

import pytest

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams

PROMPTS = [[(31 * i + 7 * j) % 250 + 3 for j in range(n)] for i, n in enumerate([9, 37, 21, 5])]
PROMPTS.append(PROMPTS[1][:33] + [11, 12])  # shares 8 blocks of 4 with prompt 1
PARAMS = [
    SamplingParams(temperature=0, max_tokens=24, ignore_eos=True),
    SamplingParams(n=2, temperature=1.0, top_p=0.9, seed=3, max_tokens=16, ignore_eos=True),
    SamplingParams(temperature=0, max_tokens=1),
    SamplingParams(temperature=0.7, seed=11, max_tokens=20, ignore_eos=True, logprobs=2),
    SamplingParams(temperature=0, max_tokens=24, ignore_eos=True),
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # 6 heads / 3 KV heads / intermediate 192: divisible by three tensor ranks
    overrides = {"hidden_size": 96, "num_attention_heads": 6, "num_key_value_heads": 3, "intermediate_size": 192}
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tp3"), "llama", dtype="float32", num_shards=1,
                                 config_overrides=overrides)


def generate(checkpoint, params=PARAMS, **kw):
    with LLM(str(checkpoint), dtype="float32", device="cpu", block_size=4, max_num_batched_tokens=16,
             num_gpu_blocks_override=24, **kw) as llm:
        outs = llm.generate(PROMPTS, params)
        stats = llm.core.stats()
        assert stats.num_free_blocks == stats.num_total_blocks
        tokens = [[(c.index, c.token_ids, c.finish_reason) for c in o.outputs] for o in outs]
        logprobs = [[round(lp.logprob, 4) for lp in o.outputs[0].logprobs or []] for o in outs]
        return tokens, logprobs, stats


def test_one_rank_async_equals_sync(checkpoint):
    sync_tokens, sync_lp, _ = generate(checkpoint, async_scheduling=False)
    async_tokens, async_lp, stats = generate(checkpoint, async_scheduling=True)
    assert stats.num_preemptions > 0  # 24 blocks of 4 for ~60 blocks of demand: recomputation happened
    assert async_tokens == sync_tokens and async_lp == sync_lp
    penalised = [SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, presence_penalty=0.5)] * len(PROMPTS)
    assert generate(checkpoint, penalised, async_scheduling=True)[0] == generate(
        checkpoint, penalised, async_scheduling=False)[0]


@pytest.mark.timeout(180)
def test_three_tensor_ranks_async_equal_one_rank_sync(checkpoint):
    reference, _, _ = generate(checkpoint, async_scheduling=False)
    tp3, _, _ = generate(checkpoint, async_scheduling=True, tensor_parallel_size=3)
    assert tp3 == reference
