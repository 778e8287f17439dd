"""Chat logprobs' `bytes` are each token's own bytes: an emoji split over byte tokens (each decoding alone as U+FFFD)
is rebuilt exactly by joining them, as OpenAI's field promises."""


def test_bytes_of_split_characters_rebuild_the_answer(client):
    answer = "🎉 東京"
    reply = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Party?"}], max_tokens=16, logprobs=True, top_logprobs=2,
        extra_body={"guided_regex": answer})
    choice = reply.choices[0]
    assert choice.message.content == answer
    entries = choice.logprobs.content
    assert any(e.token == "\ufffd" for e in entries)  # the emoji is not one token of the tiny vocabulary
    rebuilt = bytes(b for e in entries for b in e.bytes).decode("utf-8")
    assert rebuilt in (answer, answer + "<|im_end|>")  # the stop token is the last scored token
    for e in entries:  # the alternatives carry their own bytes too
        assert all(isinstance(t.bytes, list) and t.bytes for t in e.top_logprobs)
