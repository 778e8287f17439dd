"""Beam search over HTTP (vLLM's `use_beam_search` extension) with the official `openai` client: the same
sequences, best first, as the offline `LLM.beam_search` on the same weights (itself equal to HF's generate)."""

from __future__ import annotations

import openai
import pytest


def _offline(tiny_model_dir, prompts, width, max_tokens):
    from vdeploy.engine.beam_search import BeamSearchParams
    from vdeploy.engine.llm import LLM

    llm = LLM(str(tiny_model_dir), dtype="float32", device="cpu", enforce_eager=True, max_model_len=256,
              num_gpu_blocks_override=256)
    try:
        return llm.beam_search(prompts, BeamSearchParams(beam_width=width, max_tokens=max_tokens)), llm.tokenizer
    finally:
        llm.close()


def test_beam_search_completions_equal_offline_beam_search(client, engine, tiny_model_dir):
    prompts = ["Hello world", "The capital of France is"]
    reply = client.completions.create(model="tiny", prompt=prompts, max_tokens=6, n=3,
                                      extra_body={"use_beam_search": True})
    expected, tokenizer = _offline(tiny_model_dir, [engine.tokenizer.encode(p) for p in prompts], 3, 6)
    assert [c.index for c in reply.choices] == list(range(6))
    texts = [c.text for c in reply.choices]
    assert texts == [tokenizer.decode(b.token_ids) for beams in expected for b in beams[:3]]
    assert reply.usage.completion_tokens == sum(len(b.token_ids) for beams in expected for b in beams[:3])
    assert all(c.finish_reason in ("stop", "length") for c in reply.choices)


def test_beam_search_rejects_what_it_cannot_do(client):
    for extra in ({"stream": True}, {"logprobs": 2}):
        with pytest.raises(openai.BadRequestError):
            client.completions.create(model="tiny", prompt="Hi", max_tokens=4, n=2,
                                      extra_body={"use_beam_search": True}, **extra)
    with pytest.raises(openai.BadRequestError, match="use_beam_search"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       extra_body={"use_beam_search": True})
    with pytest.raises(openai.BadRequestError, match="log-probs"):  # too wide for the 20 log-probs per beam
        client.completions.create(model="tiny", prompt="Hi", max_tokens=4, n=11, extra_body={"use_beam_search": True})
