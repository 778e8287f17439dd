"""DP attention for DeepSeek MLA over gloo, real rank processes: each tensor rank runs attention for its own
requests over its own latent cache (attention replicated), the dense MLP and the experts stay split over the ranks
and see every rank's tokens. Greedy tokens equal TP = 1 for a tiny DeepSeek-V3 (MLA + MoE), the requests are spread
over both ranks, and a step where one rank has nothing to run still completes (a lone request)."""

from __future__ import annotations

import pytest
from parallel_testlib import ENGINE, MAX_TOKENS, PROMPTS, greedy_tokens


@pytest.fixture(scope="module")
def deepseek(tmp_path_factory):
    from tests.deepseek.deepseek_fixtures import save_hf_model, tiny_v3_config

    path = tmp_path_factory.mktemp("deepseek-v3-dp")
    save_hf_model(tiny_v3_config(), path)  # 3 layers: one dense, two MoE
    return path, greedy_tokens(path)


@pytest.mark.timeout(120)
def test_dp_attention_greedy_matches_tp1_and_splits_requests(deepseek):
    from vdeploy.engine.llm import LLM
    from vdeploy.engine.sampling_params import SamplingParams

    path, expected = deepseek
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True)
    with LLM(str(path), **ENGINE, tensor_parallel_size=2, enable_dp_attention=True) as llm:
        kv = llm.core.kv_manager
        seen: list[list[int]] = []
        step = llm.core.step

        def watched_step():
            seen.append(kv.requests_per_rank())
            return step()

        llm.core.step = watched_step
        outputs = llm.generate(PROMPTS, params)
        assert [o.outputs[0].token_ids for o in outputs] == expected
        assert any(min(counts) > 0 for counts in seen)  # both ranks held requests at once
        lone = llm.generate(PROMPTS[:1], params)  # the other rank runs empty steps meanwhile
        assert lone[0].outputs[0].token_ids == expected[0]
        # each rank's pool holds the blocks of its own requests only
        assert kv.num_total_blocks == 2 * ENGINE["num_gpu_blocks_override"]
