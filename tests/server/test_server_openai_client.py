"""The official `openai` client against the server over the real engine (tiny random-weight Llama on CPU)."""

from __future__ import annotations

import math

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello world. The capital?"}]


def test_models_health_version_openapi(client, http):
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert http.get("/health").json() == {"status": "ok"}
    import vdeploy

    assert http.get("/version").json() == {"version": vdeploy.__version__}
    spec = http.get("/openapi.json").json()
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/metrics"} <= set(spec["paths"])


def test_chat_completion_with_usage(client, engine):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "tiny"
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("length", "stop")
    prompt = engine.tokenizer.apply_chat_template(MESSAGES)
    assert reply.usage.prompt_tokens == len(engine.tokenizer.encode(prompt, add_special_tokens=False))
    assert 1 <= reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streamed_text_equals_non_streamed_greedy_text(client):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0)
    full = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens

    completion = client.completions.create(model="tiny", prompt="Hello world", max_tokens=16, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Hello world", max_tokens=16, temperature=0, stream=True))
    assert streamed == completion.choices[0].text


def test_n_choices_are_indexed_and_seeded_sampling_repeats(client):
    kwargs = dict(model="tiny", messages=MESSAGES, max_tokens=6, n=3, temperature=1.0, seed=7)
    first = client.chat.completions.create(**kwargs)
    assert [c.index for c in first.choices] == [0, 1, 2]
    again = client.chat.completions.create(**kwargs)
    assert [c.message.content for c in again.choices] == [c.message.content for c in first.choices]
    streamed = {0: "", 1: "", 2: ""}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        for c in chunk.choices:
            streamed[c.index] += c.delta.content or ""
    assert [streamed[i] for i in range(3)] == [c.message.content for c in first.choices]


def test_completions_batch_of_prompts_and_token_ids(client, engine):
    ids = engine.tokenizer.encode("Hello world")
    reply = client.completions.create(model="tiny", prompt=["Hello world", "The capital"], max_tokens=4, n=2)
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    by_ids = client.completions.create(model="tiny", prompt=ids, max_tokens=4)
    assert by_ids.choices[0].text == reply.choices[0].text  # greedy (generation_config): same prompt, same text
    assert by_ids.usage.prompt_tokens == len(ids)
    echoed = client.completions.create(model="tiny", prompt="Hello world", max_tokens=4, echo=True)
    assert echoed.choices[0].text == "Hello world" + reply.choices[0].text


def test_stop_string_truncates_the_output(client):
    base = client.completions.create(model="tiny", prompt="Hello world", max_tokens=24, temperature=0)
    text = base.choices[0].text
    stop = next(text[i : i + 2] for i in range(3, len(text) - 2) if text[i : i + 2].strip())
    cut = text.index(stop)
    stopped = client.completions.create(model="tiny", prompt="Hello world", max_tokens=24, temperature=0, stop=[stop])
    assert stopped.choices[0].text == text[:cut]
    assert stopped.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny", prompt="Hello world", max_tokens=24, temperature=0, stop=[stop], stream=True))
    assert streamed == text[:cut]


def test_chat_logprobs_and_top_logprobs(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5, logprobs=True,
                                           top_logprobs=3, temperature=0)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        # greedy: the sampled token is the most likely one
        assert math.isclose(entry.logprob, entry.top_logprobs[0].logprob, rel_tol=1e-4, abs_tol=1e-4)
        # a whole character's token is its text's bytes; a part of one (text U+FFFD) is its own bytes
        assert entry.bytes == list(entry.token.encode("utf-8")) or entry.token == "\ufffd"
    streamed = []
    for chunk in client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=5, logprobs=True,
                                                top_logprobs=3, temperature=0, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.content
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in content]


def test_completion_logprobs_offsets(client):
    reply = client.completions.create(model="tiny", prompt="Hello world", max_tokens=5, logprobs=2, temperature=0)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert lp.text_offset[0] == 0
    assert all(len(alts) >= 2 for alts in lp.top_logprobs)


def test_generation_config_default_applies_when_request_sets_none(client):
    # the tiny model's generation_config.json says temperature 0: two unseeded requests agree
    a = client.completions.create(model="tiny", prompt="Numbers", max_tokens=12)
    b = client.completions.create(model="tiny", prompt="Numbers", max_tokens=12)
    assert a.choices[0].text == b.choices[0].text


def test_max_completion_tokens_and_response_format_text(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_completion_tokens=3,
                                           response_format={"type": "text"}, temperature=0)
    assert reply.usage.completion_tokens <= 3
