"""Multi-LoRA through the whole engine (one rank) against HF transformers + peft with each adapter merged: two
adapters and the base model batched together give HF's greedy tokens and log-probabilities; the prefix cache never
hands one adapter's KV blocks to another (the same prompts run under every adapter, twice)."""

from __future__ import annotations

import pytest
from lora_testlib import ENGINE, MAX_TOKENS, build_setup, check_outputs, mixed_batch

from vdeploy.engine.sampling_params import SamplingParams

PARAMS = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True, logprobs=0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return build_setup(tmp_path_factory.mktemp("lora"))



@pytest.mark.timeout(120)
def test_two_adapters_and_base_batched_match_hf_peft(setup):
    from vdeploy.engine.llm import LLM

    jobs, prompts, requests = mixed_batch(setup)
    for name in ("sql", "chat"):
        assert any(setup.expected[(name, i)][0] != setup.expected[(None, i)][0] for i in range(3)), name
    with LLM(str(setup.model), **ENGINE) as llm:
        slots_per_step: list[set[int]] = []
        launch = llm.core.executor.execute_async

        def watched(sched):
            slots_per_step.append({r.lora_slot for r in sched.requests})
            return launch(sched)

        llm.core.executor.execute_async = watched
        first = llm.generate(prompts, PARAMS, lora_request=requests)
        assert {-1, 0, 1} in slots_per_step  # both adapters and the base model in one forward
        check_outputs(setup, jobs, first)
        # again: now every prompt's blocks are cached, under three different salts
        again = llm.generate(prompts, PARAMS, lora_request=requests)
        check_outputs(setup, jobs, again)
        assert sum(o.num_cached_tokens for o in again) > 0
        assert sorted(llm.core.list_loras()) == ["chat", "sql"]
