"""vLLM's `chat_template_kwargs` reach the chat template (DeepSeek-V3.1 switches thinking with {"thinking": true},
Qwen3 with {"enable_thinking": false}); a name the server itself passes to the template is a 400."""

import openai
import pytest

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_chat_template_kwargs_reach_the_template(client, engine):
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1)
    thinking = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1,
                                              extra_body={"chat_template_kwargs": {"thinking": True}})
    off = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1,
                                         extra_body={"chat_template_kwargs": {"thinking": False}})
    added = len(engine.tokenizer.encode("<think>\n"))
    assert thinking.usage.prompt_tokens == plain.usage.prompt_tokens + added
    assert off.usage.prompt_tokens == plain.usage.prompt_tokens


@pytest.mark.parametrize("name", ["messages", "add_generation_prompt", "bos_token", "raise_exception"])
def test_a_variable_the_server_sets_is_refused(client, name):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1,
                                       extra_body={"chat_template_kwargs": {name: 1}})
    assert info.value.body["param"] == "chat_template_kwargs" and name in info.value.body["message"]

