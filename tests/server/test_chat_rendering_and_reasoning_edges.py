"""Chat-facing edge cases found in a bug hunt, each through the real server with the official `openai` client:

  * text content parts are joined with a newline, as vLLM joins them (not glued into one word);
  * continue_final_message works with a template that trims message content (Llama-3 style), as vLLM/transformers do;
  * an assistant turn's reasoning_content in the history reaches the chat template (Qwen3-style templates render it);
  * with tools under tool_choice auto (DeepSeek's parser keeps special tokens), the EOS token's text never shows up in
    reasoning_content, whole or streamed;
  * a generation prompt that already closes the think block (V3.1 / Qwen3 with thinking off) makes the answer content,
    not reasoning, and the answer's grammar starts at once.

The DeepSeek cases use the real DeepSeek tokenizer and a scripted stand-in model (test_reasoning_deepseek_r1.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from server_harness import start_server
from test_reasoning_deepseek_r1 import ScriptedR1Executor, deepseek_dir  # noqa: F401  (a fixture)

USER = [{"role": "user", "content": "Capital of France?"}]
EOS = "<｜end▁of▁sentence｜>"
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def _scripted_server(model_dir: Path, pieces: list[str], template: str | None = None, reasoning: str = "deepseek_r1"):
    """(engine, executor, server) over the DeepSeek tokenizer; `template` replaces the chat template; the model
    generates `pieces` (each tokenized on its own) and then EOS."""
    from vdeploy.config import CacheConfig, EngineConfig, ModelConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.engine.engine_core import EngineCore
    from vdeploy.engine.tokenizer import Tokenizer

    template_file = None
    if template is not None:
        template_file = model_dir.parent / f"{model_dir.name}-{hashlib.sha1(template.encode()).hexdigest()}.jinja"
        template_file.write_text(template)
    tokenizer = Tokenizer.from_dir(model_dir, chat_template_file=template_file)
    script = [t for piece in pieces for t in tokenizer.encode(piece, add_special_tokens=False)]
    model_cfg = ModelConfig.from_dict({
        "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 129280, "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
        "max_position_embeddings": 4096, "bos_token_id": 0, "eos_token_id": 1,
    })
    cfg = EngineConfig(model=str(model_dir), device="cpu", cache=CacheConfig(block_size=16),
                       scheduler=SchedulerConfig(max_model_len=1024))
    executor = ScriptedR1Executor(script, eos_id=1)
    core = EngineCore(cfg, model_config=model_cfg, executor=executor, tokenizer=tokenizer)
    engine = AsyncEngine(cfg, core=core, model_name="ds")
    return engine, executor, start_server(engine, served_model_names=("ds",), reasoning_parser=reasoning)


class Served:
    def __init__(self, model_dir: Path, pieces: list[str], template: str | None = None, reasoning: str = "deepseek_r1"):
        self.args = (model_dir, pieces, template, reasoning)

    def __enter__(self):
        import httpx
        import openai

        self.engine, self.executor, self.srv = _scripted_server(*self.args)
        self.client = openai.OpenAI(base_url=f"{self.srv.url}/v1", api_key="x", max_retries=0, timeout=60)
        self.http = httpx.Client(base_url=self.srv.url, timeout=60)
        return self

    def __exit__(self, *exc):
        self.http.close()
        self.client.close()
        self.srv.stop()
        self.engine.close()

    def rendered(self, messages: list[dict]) -> str:
        """The prompt the chat route renders for `messages`, as text (/tokenize then /detokenize)."""
        ids = self.http.post("/tokenize", json={"messages": messages}).json()["tokens"]
        return self.http.post("/detokenize", json={"tokens": ids}).json()["prompt"]


def _streamed(client, **kw) -> tuple[str, str, str | None]:
    reasoning, content, finish = "", "", None
    for chunk in client.chat.completions.create(model="ds", stream=True, **kw):
        for choice in chunk.choices:
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return reasoning, content, finish


# ---------------------------------------------------------------- messages into the template


def test_text_parts_are_joined_with_a_newline(client, http):
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}]
    as_parts = http.post("/tokenize", json={"messages": [{"role": "user", "content": parts}]}).json()
    as_text = http.post("/tokenize", json={"messages": [{"role": "user", "content": "Hello\nworld"}]}).json()
    assert as_parts["tokens"] == as_text["tokens"]
    reply = client.chat.completions.create(model="tiny", max_tokens=1, messages=[{"role": "user", "content": parts}])
    assert reply.usage.prompt_tokens == as_text["count"]


TRIMMING_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<｜{{ m['role'] }}｜>{{ m['content'] | trim }}"
                     "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<｜assistant｜>{% endif %}")


def test_continue_final_message_with_a_template_that_trims_content(deepseek_dir):  # noqa: F811
    with Served(deepseek_dir, ["ris."], TRIMMING_TEMPLATE, reasoning="none") as s:
        prefill = "The capital is Pa \n"  # the template drops the trailing whitespace
        messages = USER + [{"role": "assistant", "content": prefill}]
        reply = s.client.chat.completions.create(model="ds", messages=messages, max_tokens=5,
                                                 extra_body={"continue_final_message": True})
        expected = s.rendered(USER + [{"role": "assistant", "content": "x"}]).rsplit("x", 1)[0] + prefill.strip()
        count = s.http.post("/tokenize", json={"prompt": expected, "add_special_tokens": False}).json()["count"]
        assert reply.usage.prompt_tokens == count
        assert reply.choices[0].message.content == "ris."


REASONING_HISTORY_TEMPLATE = (
    "{% for m in messages %}<｜{{ m['role'] }}｜>{% if m['reasoning_content'] is defined and m['reasoning_content'] %}"
    "<think>{{ m['reasoning_content'] }}</think>{% endif %}{{ m['content'] }}{% endfor %}<｜assistant｜>")


def test_reasoning_content_in_the_history_reaches_the_template(deepseek_dir):  # noqa: F811
    with Served(deepseek_dir, ["ok"], REASONING_HISTORY_TEMPLATE) as s:
        history = USER + [{"role": "assistant", "content": "Paris.", "reasoning_content": "France: Paris."},
                          {"role": "user", "content": "And Italy?"}]
        assert "<think>France: Paris.</think>Paris." in s.rendered(history)


# ---------------------------------------------------------------- reasoning with tools and closed think blocks


def test_eos_text_never_reaches_reasoning_content_with_tools(deepseek_dir):  # noqa: F811
    # the model stops (EOS) while still thinking: the tool parser needs special tokens kept, EOS must not show
    with Served(deepseek_dir, ["Thinking about France"]) as s:
        reply = s.client.chat.completions.create(model="ds", messages=USER, tools=[TOOL])
        message = reply.choices[0].message
        assert message.reasoning_content == "Thinking about France" and message.content is None
        reasoning, content, finish = _streamed(s.client, messages=USER, tools=[TOOL])
        assert (reasoning, content, finish) == ("Thinking about France", "", "stop")


CLOSED_THINK_TEMPLATE = (  # DeepSeek-V3.1's way: thinking off closes the block in the generation prompt
    "{{ bos_token }}{% for m in messages %}<｜User｜>{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜>{% if thinking is defined and thinking %}<think>"
    "{% else %}</think>{% endif %}{% endif %}")


def test_answer_after_a_think_block_the_template_closed_is_content(deepseek_dir):  # noqa: F811
    with Served(deepseek_dir, ['{"city": "Paris"}'], CLOSED_THINK_TEMPLATE) as s:
        reply = s.client.chat.completions.create(model="ds", messages=USER)
        message = reply.choices[0].message
        assert (message.content, message.reasoning_content) == ('{"city": "Paris"}', None)
        assert _streamed(s.client, messages=USER) == ("", '{"city": "Paris"}', "stop")
        # structured output: nothing to wait for, the grammar applies from the first token
        reply = s.client.chat.completions.create(model="ds", messages=USER, response_format={"type": "json_object"})
        assert reply.choices[0].message.content == '{"city": "Paris"}'
        assert s.executor.seen_params[-1].guided.after_think is None
        # thinking on: the block is open, the same text is reasoning and the grammar waits for </think>
        reply = s.client.chat.completions.create(model="ds", messages=USER,
                                                 extra_body={"chat_template_kwargs": {"thinking": True}})
        assert reply.choices[0].message.reasoning_content == '{"city": "Paris"}'


def test_a_request_chat_template_is_refused_not_ignored(client):
    # vLLM refuses one unless started with --trust-request-chat-template; ignoring it would render another prompt
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=USER, max_tokens=1,
                                       extra_body={"chat_template": "{{ messages[0]['content'] }}"})
    assert "chat_template" in str(e.value) and "--chat-template" in str(e.value)


def test_tokenize_refuses_a_request_chat_template_as_chat_does(http):
    # its count would be of another prompt than the one a chat request with that template is refused for
    answer = http.post("/tokenize", json={"messages": USER, "chat_template": "{{ messages[0]['content'] }}"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "chat_template", answer.text


def test_tokenize_renders_continue_final_message_as_chat_does(client, http):
    messages = USER + [{"role": "assistant", "content": "The capital is"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=1,
                                           extra_body={"continue_final_message": True})
    counted = http.post("/tokenize", json={"messages": messages, "continue_final_message": True}).json()
    assert counted["count"] == reply.usage.prompt_tokens
