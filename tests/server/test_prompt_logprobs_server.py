"""Scoring a text through the server, through the official `openai` client: `echo` with `logprobs` (the legacy
completions shape lm-eval's loglikelihood tasks send: token-id prompt, max_tokens 1, logprobs 1) returns the
prompt's tokens with transformers' logprobs, streamed or not; vLLM's `prompt_logprobs` extension on completions and
chat; `prompt_logprobs` with streaming is a 400."""

import openai
import pytest
import torch


@pytest.fixture(scope="module")
def prompt_ids(engine):
    return engine.tokenizer.encode("The capital of France is Paris, and the capital of Spain is")


@pytest.fixture(scope="module")
def hf_prompt_logprobs(tiny_model_dir, prompt_ids):
    """transformers' logprob of each prompt token after the ones before it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([prompt_ids])).logits[0].float(), dim=-1)
    return [logprobs[i, t].item() for i, t in enumerate(prompt_ids[1:])]


def test_echo_with_logprobs_scores_the_prompt_as_lm_eval_asks(client, prompt_ids, hf_prompt_logprobs):
    reply = client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=1, temperature=0, logprobs=1,
                                      echo=True, seed=1234)
    lp = reply.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(prompt_ids) + 1
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.token_logprobs[1:len(prompt_ids)] == pytest.approx(hf_prompt_logprobs, abs=1e-4)
    # lm-eval's greedy check: is each prompt token the top-1 there? the top_logprobs list says, with the token
    for token, logprob, top in zip(lp.tokens[1:], lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert top[token] == pytest.approx(logprob) and len(top) <= 2
    assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
    assert reply.choices[0].text.startswith(reply.choices[0].text[:lp.text_offset[-1]])
    # streamed: the echo chunk carries the prompt's logprobs, then the generated token's follow
    tokens, logprobs = [], []
    for chunk in client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=1, temperature=0,
                                           logprobs=1, echo=True, stream=True):
        for choice in chunk.choices:
            if choice.logprobs is not None:
                tokens += choice.logprobs.tokens
                logprobs += choice.logprobs.token_logprobs
    assert tokens == lp.tokens
    assert logprobs[0] is None and logprobs[1:] == pytest.approx(lp.token_logprobs[1:], abs=1e-6)


def test_vllm_prompt_logprobs_on_completions_and_chat(client, prompt_ids, hf_prompt_logprobs):
    reply = client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=2, extra_body={"prompt_logprobs": 2})
    scored = reply.choices[0].model_extra["prompt_logprobs"]  # vLLM puts them on each completion choice
    assert len(scored) == len(prompt_ids) and scored[0] is None
    for position, (token, want) in enumerate(zip(prompt_ids[1:], hf_prompt_logprobs), start=1):
        entry = scored[position]
        assert entry[str(token)]["logprob"] == pytest.approx(want, abs=1e-4)
        ranks = sorted(e["rank"] for e in entry.values())
        assert ranks[:2] == [1, 2] and entry[str(token)]["rank"] >= 1
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                          extra_body={"prompt_logprobs": 0})
    scored = chat.model_extra["prompt_logprobs"]
    assert len(scored) == chat.usage.prompt_tokens and scored[0] is None
    assert all(len(entry) == 1 for entry in scored[1:])  # top 0: only the prompt's own token
    plain = client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=1)
    assert plain.choices[0].model_extra.get("prompt_logprobs") is None


def test_prompt_logprobs_with_streaming_is_refused(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="Hello", max_tokens=1, stream=True,
                                  extra_body={"prompt_logprobs": 1})
    assert info.value.body["param"] == "prompt_logprobs"
