"""vLLM's /tokenize and /detokenize: a prompt's ids as the completions route takes them, a conversation's as the
chat route renders it (its usage.prompt_tokens is the count), token strings on request, ids back to text; bad input
is a 400 and --api-key guards both."""

import httpx

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


def test_tokenize_a_prompt_and_back(http, engine):
    r = http.post("/tokenize", json={"model": "tiny", "prompt": "Hello world", "return_token_strs": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tokens"] == engine.tokenizer.encode("Hello world") and body["count"] == len(body["tokens"])
    assert body["max_model_len"] == 256 and len(body["token_strs"]) == body["count"]
    back = http.post("/detokenize", json={"model": "tiny", "tokens": body["tokens"]})
    assert back.status_code == 200 and back.json() == {"prompt": "Hello world"}
    # special tokens come back too (vLLM's route): a chat prompt's ids detokenize to the rendered prompt
    chat_ids = http.post("/tokenize", json={"messages": MESSAGES}).json()["tokens"]
    assert http.post("/detokenize", json={"tokens": chat_ids}).json()["prompt"] == \
        engine.tokenizer.apply_chat_template(MESSAGES)


def test_tokenize_a_conversation_counts_what_chat_sends(http, client):
    r = http.post("/tokenize", json={"messages": MESSAGES}).json()
    chat = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1)
    assert r["count"] == chat.usage.prompt_tokens and r["token_strs"] is None
    kwargs = http.post("/tokenize", json={"messages": MESSAGES, "chat_template_kwargs": {"thinking": True}}).json()
    assert kwargs["count"] > r["count"]
    bare = http.post("/tokenize", json={"messages": MESSAGES, "add_generation_prompt": False}).json()
    assert bare["count"] < r["count"]


def test_bad_input_is_a_400(http):
    assert http.post("/tokenize", json={"prompt": "a", "messages": MESSAGES}).status_code == 400
    assert http.post("/tokenize", json={}).status_code == 400
    assert http.post("/detokenize", json={"tokens": [10 ** 9]}).json()["error"]["param"] == "tokens"
    assert http.post("/detokenize", json={"tokens": [1], "model": "other"}).status_code == 404


def test_the_api_key_guards_them(keyed_server):
    r = httpx.post(f"{keyed_server.url}/tokenize", json={"prompt": "a"})
    assert r.status_code == 401
    r = httpx.post(f"{keyed_server.url}/tokenize", json={"prompt": "a"},
                   headers={"Authorization": "Bearer sk-test-key"})
    assert r.status_code == 200
