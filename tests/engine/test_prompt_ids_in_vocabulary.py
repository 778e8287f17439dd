"""Prompt token ids outside the model's embedding are refused at intake, naming the id, before anything is queued
(on a GPU an out-of-range index faults the device; on the CPU it raised an IndexError deep in the forward pass)."""

import json

import pytest
from engine_fake_executor import TINY_LLAMA, PagedTokenExecutor, reference_generation

import vdeploy.executor
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError


@pytest.mark.parametrize("bad", [TINY_LLAMA.vocab_size, TINY_LLAMA.vocab_size + 7, -1])
def test_an_id_outside_the_vocabulary_is_refused_and_the_engine_goes_on(tmp_path, monkeypatch, bad):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA.raw))
    monkeypatch.setattr(vdeploy.executor, "create_executor", lambda cfg, model_cfg: PagedTokenExecutor(4, 64))
    params = SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)
    with LLM(str(tmp_path), block_size=4) as llm:
        with pytest.raises(ConfigError, match=rf"prompt token id {bad} is outside .*\[0, {TINY_LLAMA.vocab_size}\)") as info:
            llm.generate([1, bad, 2], params)
        assert "tokenizer must match" in info.value.hint
        assert not llm.core.has_unfinished_requests()
        last = TINY_LLAMA.vocab_size - 1  # the last row of the embedding is a valid id
        (out,) = llm.generate([1, last], params)
        assert out.outputs[0].token_ids == reference_generation([1, last], 3)
