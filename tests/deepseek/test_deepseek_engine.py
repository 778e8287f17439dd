"""DeepSeek through the whole engine (scheduler, paged latent cache, executor): greedy tokens equal HF's; prefix
caching, chunked prefill and tensor parallelism (2 real processes over gloo) change nothing."""

import pytest

from tests.deepseek.deepseek_fixtures import save_hf_model, tiny_v3_config
from tests.deepseek.test_deepseek_vs_hf import hf_greedy

PROMPTS = [[5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
            27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38],
           [5, 17, 99, 3, 250, 41, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 60, 61, 62],  # shared prefix
           [200, 201, 202]]
STEPS = 6


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("v3")
    hf = save_hf_model(tiny_v3_config(), path)
    return path, [hf_greedy(hf, p, STEPS) for p in PROMPTS]


def generate(path, **engine_kwargs):
    from vdeploy import LLM, SamplingParams

    llm = LLM(str(path), dtype="float32", block_size=16, **engine_kwargs)
    try:
        params = SamplingParams(temperature=0, max_tokens=STEPS, ignore_eos=True)
        first = llm.generate(PROMPTS[:1], params)  # fills the prefix cache for the second prompt
        rest = llm.generate(PROMPTS[1:], params)
        return [o.outputs[0].token_ids for o in first + rest]
    finally:
        llm.close()


@pytest.mark.parametrize("engine_kwargs", [
    {},
    {"enable_prefix_caching": False},
    {"max_num_batched_tokens": 16},  # chunked prefill over the latent cache
])
def test_engine_greedy_matches_hf(checkpoint, engine_kwargs):
    path, expected = checkpoint
    assert generate(path, **engine_kwargs) == expected


def test_tensor_parallel_2_matches_tp1(checkpoint):
    path, expected = checkpoint
    assert generate(path, tensor_parallel_size=2) == expected
