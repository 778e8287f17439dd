"""vLLM's stream_options.continuous_usage_stats (completions and chat) through the official openai client: with
include_usage, every chunk carries the usage so far (its prompt's tokens, its own choice's tokens), and the last
chunk the totals."""

from __future__ import annotations

OPTIONS = {"include_usage": True, "continuous_usage_stats": True}


def test_completion_chunks_carry_the_usage_so_far(client):
    chunks = list(client.completions.create(model="tiny", prompt=["Hello world", "The capital of France"], n=2,
                                            max_tokens=5, temperature=0, stream=True, stream_options=OPTIONS,
                                            extra_body={"ignore_eos": True}))
    *deltas, final = chunks
    assert not final.choices and final.usage.completion_tokens == 4 * 5
    prompts = {0: None, 1: None}
    seen = {i: 0 for i in range(4)}
    for c in deltas:
        (choice,) = c.choices
        assert c.usage is not None and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
        assert c.usage.completion_tokens >= seen[choice.index]  # its own tokens, never fewer than before
        seen[choice.index] = c.usage.completion_tokens
        prompt = prompts[choice.index // 2]
        assert prompt in (None, c.usage.prompt_tokens)
        prompts[choice.index // 2] = c.usage.prompt_tokens
    assert set(seen.values()) == {5} and final.usage.prompt_tokens == sum(prompts.values())


def test_without_include_usage_chunks_carry_none(client):
    chunks = list(client.completions.create(model="tiny", prompt="Hello", max_tokens=3, stream=True,
                                            stream_options={"continuous_usage_stats": True}))
    assert all(c.usage is None for c in chunks)


def test_chat_chunks_carry_the_usage_so_far(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}],
                                                 max_tokens=4, temperature=0, stream=True, stream_options=OPTIONS,
                                                 extra_body={"ignore_eos": True}))
    *deltas, final = chunks
    assert not final.choices and final.usage.completion_tokens == 4
    assert deltas[0].choices[0].delta.role == "assistant" and deltas[0].usage.completion_tokens == 0
    counts = [c.usage.completion_tokens for c in deltas]
    assert counts == sorted(counts) and counts[-1] == 4
    assert {c.usage.prompt_tokens for c in deltas} == {final.usage.prompt_tokens}
