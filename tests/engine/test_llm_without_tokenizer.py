"""A checkpoint without tokenizer.json (write_tiny_checkpoint's): text prompts fail with a hint a command-line user
can act on (the old hint, "pass token ids", has no CLI equivalent); token ids still work in Python."""

import json

import pytest
from engine_fake_executor import TINY_LLAMA, PagedTokenExecutor, reference_generation

import vdeploy.executor
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError


def test_text_prompt_without_tokenizer_names_the_directory_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA.raw))
    monkeypatch.setattr(vdeploy.executor, "create_executor", lambda cfg, model_cfg: PagedTokenExecutor(4, 64))
    with LLM(str(tmp_path), block_size=4) as llm:
        with pytest.raises(ConfigError, match="has no tokenizer.json") as info:
            llm.generate("Hello")
        assert str(tmp_path) in info.value.message
        assert "copy the model's tokenizer.json" in info.value.hint
        (out,) = llm.generate([1, 2, 3], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
        assert out.outputs[0].token_ids == reference_generation([1, 2, 3], 3)
