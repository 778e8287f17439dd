"""The OpenAPI document tells the truth (issue 16): a bounded schemathesis run with every check against a real
server (the tiny Llama on CPU, a small context so answers are short). Schema-valid requests must be accepted and
schema-violating ones refused with a documented status and body; responses must match their documented schemas,
statuses and content types. Positive data may only be refused for the few reasons a schema cannot state, each
listed in vdeploy.server.openapi_doc.STATEFUL_REFUSALS with its own error code."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, assume, settings  # noqa: E402
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from vdeploy.server.openapi_doc import STATEFUL_REFUSALS  # noqa: E402

MAX_EXAMPLES = 25
# Bounded work per request, so the run stays short on 2 CPU cores: a schema-valid /v1/completions call may ask for
# 2048 prompts x n=128 choices, which the server accepts and would generate for minutes.
MAX_SEQUENCES = 16


def _sequences(case) -> int:
    body = case.body if isinstance(case.body, dict) else {}
    n = body.get("n", 1) if isinstance(body.get("n", 1), int) else 1
    prompts = body.get("prompt")
    many = isinstance(prompts, list) and prompts and not isinstance(prompts[0], int)
    return n * (len(prompts) if many else 1)


@pytest.fixture(scope="module")
def small_engine(tiny_model_dir):
    from vdeploy.config import CacheConfig, EngineConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine

    cfg = EngineConfig(
        model=str(tiny_model_dir), dtype="float32", device="cpu", enforce_eager=True,
        cache=CacheConfig(block_size=16, num_gpu_blocks_override=128),
        scheduler=SchedulerConfig(max_num_seqs=64, max_num_batched_tokens=1024, max_model_len=48))
    engine = AsyncEngine(cfg, model_name="tiny")
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def app(small_engine):
    from vdeploy.server.app import create_app
    from vdeploy.server.serving_base import ServerSettings

    return create_app(small_engine, ServerSettings(served_model_names=("tiny",)))


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schemathesis.check
def positive_data_accepted_or_refused_for_a_stated_reason(ctx, response, case):
    """The built-in positive-data check, except for the refusals no schema can express (a prompt longer than the
    context, best_of other than n, a tool_choice naming a function missing from tools)."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code < 400:
        return None
    if response.status_code == 400:
        error = response.json()["error"]
        if (error["param"], error["code"]) in STATEFUL_REFUSALS:
            return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_keeps_to_the_openapi_document(case):
    assume(_sequences(case) <= MAX_SEQUENCES)
    case.call_and_validate(excluded_checks=[positive_data_acceptance],
                           additional_checks=[positive_data_accepted_or_refused_for_a_stated_reason])


def test_document_states_errors_metrics_and_prompt(api_schema):
    doc = api_schema.raw_schema
    completions = doc["paths"]["/v1/completions"]["post"]["responses"]
    assert {"200", "400", "404", "500", "503"} <= set(completions) and "422" not in completions
    assert "text/event-stream" in completions["200"]["content"]
    assert completions["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    prompt = doc["components"]["schemas"]["CompletionRequest"]["properties"]["prompt"]
    assert prompt["anyOf"][0] == {"type": "string", "minLength": 1}  # {"prompt": ""} is invalid, as answered


def test_logprobs_of_ruled_out_tokens_stay_json(app):
    """Found by the run above: repetition_penalty 5e-324 drives logprobs to -inf, which JSON cannot carry (the
    response failed to serialise); they are reported at vLLM's floor instead."""
    from fastapi.testclient import TestClient

    body = {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 2, "max_tokens": 3,
            "repetition_penalty": 5e-324}
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    for token in response.json()["choices"][0]["logprobs"]["content"]:
        assert -9999.0 <= token["logprob"] <= 0.0
