"""Bad requests get the right 4xx in OpenAI's error shape, never a 500, and the server keeps serving; the API key
is enforced; a full waiting queue is a 503."""

from __future__ import annotations

import httpx
import openai
import pytest
from server_harness import MAX_WAITING

CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}


def _chat(**overrides):
    body = {**CHAT, **overrides}
    return {k: v for k, v in body.items() if v is not None}


BAD_REQUESTS = [
    ("/v1/chat/completions", _chat(max_tokens=-1), 400, "max_tokens"),
    ("/v1/chat/completions", _chat(max_tokens=0), 400, "max_tokens"),
    ("/v1/chat/completions", _chat(temperature=3.5), 400, "temperature"),
    ("/v1/chat/completions", _chat(top_p=0), 400, "top_p"),
    ("/v1/chat/completions", _chat(presence_penalty=9), 400, "presence_penalty"),
    ("/v1/chat/completions", _chat(model="gpt-4o"), 404, "model"),  # OpenAI: 404, invalid_request_error
    ("/v1/chat/completions", _chat(max_tokens=100_000), 400, "max_tokens"),
    ("/v1/chat/completions", _chat(messages=[{"role": "user", "content": "Hello " * 400}]), 400, "messages"),
    ("/v1/chat/completions", _chat(messages=[]), 400, "messages"),
    ("/v1/chat/completions", _chat(messages=[{"role": "wizard", "content": "x"}]), 400, "messages.0.role"),
    ("/v1/chat/completions", _chat(temperature="hot"), 400, "temperature"),
    ("/v1/chat/completions", _chat(n=0), 400, "n"),
    ("/v1/chat/completions", _chat(top_logprobs=3), 400, "top_logprobs"),
    ("/v1/chat/completions", _chat(logprobs=True, top_logprobs=50), 400, "top_logprobs"),
    ("/v1/chat/completions", _chat(response_format={"type": "yaml"}), 400, "response_format.type"),
    ("/v1/chat/completions", _chat(response_format={"type": "json_schema"}), 400, "response_format"),
    ("/v1/chat/completions", _chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}),
     400, "response_format.json_schema.schema"),
    ("/v1/chat/completions", _chat(guided_choice=[]), 400, "guided_choice"),
    ("/v1/chat/completions", _chat(guided_regex="a", guided_choice=["b"]), 400, "guided_choice"),
    ("/v1/chat/completions", _chat(guided_grammar="root ::= ???"), 400, None),
    ("/v1/chat/completions", _chat(structured_outputs={"regex": "a", "json_object": True}), 400,
     "structured_outputs.json_object"),
    ("/v1/chat/completions", _chat(guided_json={}, guided_whitespace_pattern=" "), 400, "guided_whitespace_pattern"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "structured_outputs": {"grammar": "root ::= ???"}}, 400, None),
    ("/v1/completions", {"model": "tiny", "prompt": "Hello", "max_tokens": -5}, 400, "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": [], "max_tokens": 2}, 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": [1, 2, 99999], "max_tokens": 2}, 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "logprobs": 99}, 400, "logprobs"),
    ("/v1/completions", {"model": "tiny"}, 400, "prompt"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "logit_bias": {"5": 10}}, 400, "logit_bias"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "allowed_token_ids": [5]}, 400, "allowed_token_ids"),
    ("/v1/chat/completions", _chat(bad_words=["x"]), 400, "bad_words"),
    ("/v1/chat/completions", _chat(stream_options={"include_usage": True}), 400, "stream_options"),  # OpenAI's 400
    ("/v1/chat/completions", _chat(seed=2**70), 400, "seed"),  # past int64: once a 500 on the core's wire
    ("/v1/chat/completions", _chat(top_k=2**70), 400, "top_k"),
    ("/v1/chat/completions", _chat(stop_token_ids=[2**70]), 400, "stop_token_ids"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "stop_token_ids": [-5]}, 400, "stop_token_ids"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "use_beam_search": True, "stop": ["."]}, 400, "stop"),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "n": MAX_WAITING + 1}, 400, "n"),  # can never queue
    ("/v1/completions", {"model": "tiny", "prompt": ["x", "y"], "n": MAX_WAITING // 2 + 1}, 400, "prompt"),
    ("/v1/chat/completions", _chat(tools=[{"type": "function"}]), 400, "tools[0]"),
    ("/v1/chat/completions", _chat(tools=[{"type": "function", "function": {"name": "f"}}],
                                   tool_choice={"type": "function", "function": {"name": "g"}}), 400, "tool_choice"),
]


@pytest.mark.parametrize("path, body, status, param", BAD_REQUESTS, ids=[f"{b[3]}-{i}" for i, b in
                                                                           enumerate(BAD_REQUESTS)])
def test_bad_request_is_4xx_in_openai_shape_and_server_keeps_serving(http, path, body, status, param):
    response = http.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    ok = http.post("/v1/chat/completions", json=CHAT)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] is not None


def test_malformed_json_and_unknown_route(http):
    response = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    missing = http.get("/v1/engines")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    wrong_method = http.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert http.get("/v1/models/nope").status_code == 404


def test_streaming_request_errors_before_the_stream_starts(http):
    response = http.post("/v1/chat/completions", json=_chat(stream=True, temperature=-1))
    assert response.status_code == 400 and response.json()["error"]["param"] == "temperature"


def test_full_waiting_queue_is_503_and_server_recovers(http, engine, monkeypatch):
    from vdeploy.engine.scheduler import QueueFull

    async def full(*args, **kwargs):
        raise QueueFull("the waiting queue is full", hint="retry shortly")
        yield  # an async generator, as the engine's

    with monkeypatch.context() as patch:
        patch.setattr(engine, "generate", full)
        response = http.post("/v1/completions", json={"model": "tiny", "prompt": "Hello", "max_tokens": 2})
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "queue_full"
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_an_internal_error_is_a_counted_500_and_the_connection_serves_on(http, metric, monkeypatch):
    from vdeploy.server.serving_base import ServingContext

    def count() -> float:
        try:
            return metric("vdeploy_request_errors_total", 'status="500"')
        except KeyError:
            return 0.0

    before = count()
    with monkeypatch.context() as patch:
        patch.setattr(ServingContext, "check_model", lambda self, name: 1 / 0)
        response = http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error" and "ZeroDivisionError" in response.json()["error"]["message"]
    # the same keep-alive connection serves the next request (Starlette's catch-all used to drop it)
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert count() == before + 1


def test_openai_client_raises_typed_errors(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert info.value.body["param"] == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("not-served")
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="not-served", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"


def _count_401(metric, srv) -> float:
    try:
        return metric("vdeploy_request_errors_total", 'status="401"', srv=srv)
    except KeyError:  # no 401 yet: the labelled series does not exist
        return 0.0


def test_api_key_is_enforced(keyed_server, metric):
    url = f"{keyed_server.url}/v1"
    refused_before = _count_401(metric, keyed_server)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    missing = httpx.post(f"{url}/chat/completions", json=CHAT)
    assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
    good = openai.OpenAI(base_url=url, api_key="sk-test-key", max_retries=0)
    assert good.chat.completions.create(**CHAT).choices[0].message.content is not None
    # health and metrics stay open for probes and Prometheus; the 401s were counted by this server only
    assert httpx.get(f"{keyed_server.url}/health").status_code == 200
    assert _count_401(metric, keyed_server) == refused_before + 2


def test_each_server_has_its_own_metrics_registry(server, keyed_server, metric):
    httpx.get(f"{keyed_server.url}/v1/models")  # a 401 on the keyed server only
    assert _count_401(metric, server) == 0
    assert _count_401(metric, keyed_server) >= 1


def test_profile_sampling_defaults_sit_below_generation_config(engine):
    import openai
    from server_harness import start_server

    srv = start_server(engine, sampling_defaults={"temperature": 1.5, "max_tokens": 3})
    try:
        c = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        replies = [c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello"}])
                   for _ in range(2)]
        # max_tokens from the profile; temperature 0 from generation_config.json wins over the profile's 1.5
        assert all(r.usage.completion_tokens <= 3 for r in replies)
        assert replies[0].choices[0].message.content == replies[1].choices[0].message.content
    finally:
        srv.stop()
