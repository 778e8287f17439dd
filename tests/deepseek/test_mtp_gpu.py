"""MTP speculation on a GPU, where verification rows and the MTP passes replay CUDA graphs: on the tiny DeepSeek-V3
with an MTP layer (fp32), greedy tokens with k = 1, 2 drafts equal the same GPU's tokens without speculation and
HF transformers' plain greedy generation (run with TRITON_INTERPRET=0 on a CUDA machine; skipped elsewhere)."""

import os

import pytest
import torch

from tests.deepseek.test_mtp_speculative import PROMPTS, STEPS, checkpoints  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                       reason="needs a CUDA GPU with compiled Triton"),
]


def gpu_greedy(path, k: int):
    from vdeploy import LLM, SamplingParams

    spec = {"method": "mtp", "num_speculative_tokens": k} if k else None
    params = SamplingParams(temperature=0, max_tokens=STEPS, ignore_eos=True)
    # 16 sequences: graph buckets 1..16 hold every verify batch of these prompts ((k + 1) rows per request)
    with LLM(str(path), dtype="float32", device="cuda", block_size=16, max_num_seqs=16, max_model_len=256,
             gpu_memory_utilization=0.3, speculative_config=spec) as llm:
        outs = llm.generate(PROMPTS, params)
        stats = llm.core.stats()
    assert stats.num_free_blocks == stats.num_total_blocks
    return [o.outputs[0].token_ids for o in outs], stats


@pytest.fixture(scope="module")
def plain(checkpoints):  # noqa: F811
    return gpu_greedy(checkpoints[0], 0)[0]


def test_plain_gpu_greedy_equals_hf(checkpoints, plain):  # noqa: F811
    assert plain == checkpoints[1]


@pytest.mark.parametrize("k", [1, 2])
def test_mtp_with_cuda_graphs_keeps_the_greedy_tokens(checkpoints, plain, k):  # noqa: F811
    tokens, stats = gpu_greedy(checkpoints[0], k)
    assert tokens == plain
    assert stats.spec_accepted_tokens_total > 0 and 1 < stats.spec_mean_accepted_length <= k + 1
