"""Multi-LoRA at tensor parallel 3 over gloo, real rank processes: column-parallel layers hold their rows of B,
row-parallel ones their columns of A (their partial deltas join the layer's all-reduce); and over 2 pipeline stages
(each loads its own layers' adapter weights). Two adapters and the base model batched together give HF + peft's
greedy tokens and log-probabilities, and an adapter loaded while the engine runs reaches every rank."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lora"))
from lora_testlib import ENGINE, MAX_TOKENS, build_setup, check_outputs, mixed_batch  # noqa: E402

from vdeploy.engine.sampling_params import SamplingParams  # noqa: E402


@pytest.mark.timeout(180)
@pytest.mark.parametrize("tp,pp", [(3, 1), (1, 2)])
def test_two_adapters_and_base_match_hf_peft(tmp_path, tp, pp):
    from vdeploy.engine.llm import LLM

    setup = build_setup(tmp_path)
    jobs, prompts, requests = mixed_batch(setup)
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True, logprobs=0)
    # "sql" given at start, "chat" loaded on first use (after the ranks started)
    with LLM(str(setup.model), **ENGINE, tensor_parallel_size=tp, pipeline_parallel_size=pp,
             lora_modules={"sql": str(setup.adapters["sql"])}) as llm:
        check_outputs(setup, jobs, llm.generate(prompts, params, lora_request=requests))
