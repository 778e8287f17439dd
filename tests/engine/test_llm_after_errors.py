"""The Python LLM stays usable after a failed call: a prompt refused halfway through a batch, an interrupt inside a
step, wrong parameter types (refused naming the field, before any step), and using it after close()."""

import json

import pytest
from engine_fake_executor import TINY_LLAMA, PagedTokenExecutor, reference_generation

import vdeploy.executor
from vdeploy.engine.llm import LLM
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

GREEDY = dict(temperature=0, max_tokens=3, ignore_eos=True)


@pytest.fixture
def llm(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA.raw))
    monkeypatch.setattr(vdeploy.executor, "create_executor", lambda cfg, model_cfg: PagedTokenExecutor(4, 64))
    with LLM(str(tmp_path), block_size=4, max_model_len=64) as engine:
        yield engine


def _works(llm):
    (out,) = llm.generate([[1, 2, 3]], SamplingParams(**GREEDY))
    assert out.outputs[0].token_ids == reference_generation([1, 2, 3], 3)
    assert not llm.core.has_unfinished_requests()


def test_a_prompt_refused_halfway_through_a_batch_leaves_nothing_queued(llm):
    with pytest.raises(ConfigError, match="max_model_len"):
        llm.generate([[1, 2], [5] * 100], SamplingParams(**GREEDY))
    _works(llm)


def test_an_interrupt_inside_a_step_aborts_the_calls_requests(llm, monkeypatch):
    real_step, calls = llm.core.step, []

    def interrupted():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_step()

    monkeypatch.setattr(llm.core, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        llm.generate([[1, 2], [3, 4]], SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        for _ in llm.generate_stream([1, 2], SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)):
            pass
    monkeypatch.setattr(llm.core, "step", real_step)
    _works(llm)


@pytest.mark.parametrize("field, value", [("logprobs", True), ("max_tokens", 1.5), ("n", "2"), ("temperature", None),
                                          ("stop", [1]), ("stop_token_ids", [10**9])])
def test_wrong_parameters_are_refused_naming_the_field(llm, field, value):
    with pytest.raises(ConfigError, match=field):
        llm.generate([[1, 2]], SamplingParams(**{**GREEDY, field: value}))
    _works(llm)


def test_vllm_style_none_stops_and_tuple_prompts(llm):
    params = SamplingParams(**GREEDY, stop=None, stop_token_ids=None)
    (out,) = llm.generate((1, 2, 3), params)
    assert out.outputs[0].token_ids == reference_generation([1, 2, 3], 3)


def test_a_closed_llm_says_so(llm):
    llm.close()
    with pytest.raises(ConfigError, match="closed"):
        llm.generate([[1, 2]], SamplingParams(**GREEDY))


def test_chat_takes_tools_and_template_kwargs_as_vllm(tmp_path, monkeypatch):
    from engine_test_tokenizer import write_tokenizer_dir

    template = ("{% if tools %}{{ tools | tojson }}{% endif %}{% if thinking %}<think>{% endif %}"
                "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    model = write_tokenizer_dir(tmp_path / "m", template)
    (model / "config.json").write_text(json.dumps(TINY_LLAMA.raw))
    monkeypatch.setattr(vdeploy.executor, "create_executor", lambda cfg, model_cfg: PagedTokenExecutor(4, 64))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Hi"}]
    with LLM(str(model), block_size=4) as llm:
        (out,) = llm.chat(messages, SamplingParams(**GREEDY), tools=tools, chat_template_kwargs={"thinking": True})
        assert out.prompt_token_ids == llm.tokenizer.encode_chat(messages, tools=tools, thinking=True)
        assert "get_weather" in llm.tokenizer.decode(out.prompt_token_ids)
        with pytest.raises(ConfigError, match="may not set messages"):
            llm.chat(messages, chat_template_kwargs={"messages": []})
