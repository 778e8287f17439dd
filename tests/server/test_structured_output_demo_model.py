"""Structured output and enforced tool calls with the real trained demo model (SmolLM2-135M-Instruct) through the
official openai client: answers parse with Python's strict JSON parser and validate against their schemas, for a few
seeds; named and required tool calls validate; streamed deltas reassemble into the same call."""

from __future__ import annotations

import json

import jsonschema
import pytest
from demo_testlib import skip_if_demo_unreachable
from server_harness import start_server

CITY = {"type": "object", "properties": {
    "city": {"type": "string", "maxLength": 24},
    "country": {"enum": ["France", "Italy", "Spain", "Other"]},
    "population_millions": {"type": "number", "minimum": 0, "maximum": 100},
    "facts": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string", "maxLength": 24}},
    "location": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                 "required": ["lat", "lon"], "additionalProperties": False}},
    "required": ["city", "country", "population_millions", "facts", "location"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                                          "unit": {"enum": ["celsius", "fahrenheit"]}},
                          "required": ["city", "unit"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def demo_client():
    import openai

    from vdeploy.config import EngineConfig, SchedulerConfig
    from vdeploy.engine.async_engine import AsyncEngine
    from vdeploy.server.model_source import resolve_model_source

    with skip_if_demo_unreachable("the demo model"):
        source = resolve_model_source(None)
    cfg = EngineConfig(model=str(source.path), dtype="float32", device="cpu", enforce_eager=True,
                       scheduler=SchedulerConfig(max_model_len=512, max_num_seqs=4))
    engine = AsyncEngine(cfg, model_name=source.default_served_name)
    srv = start_server(engine, served_model_names=(source.default_served_name,))
    try:
        with openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0, timeout=180) as client:
            yield client, source.default_served_name
    finally:
        srv.stop()
        engine.close()


def test_demo_json_schema_answers_parse_strictly_and_validate(demo_client):
    client, name = demo_client
    # n=2 with a seed: two samples with their own derived seeds, decoded in one batch (CPU time)
    r = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Describe Paris as JSON."}], temperature=0.7, seed=0, n=2,
        max_tokens=160, response_format={"type": "json_schema",
                                         "json_schema": {"name": "city", "schema": CITY, "strict": True}})
    assert len(r.choices) == 2
    for choice in r.choices:
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), CITY)


def test_demo_named_and_required_tool_calls(demo_client):
    client, name = demo_client
    messages = [{"role": "user", "content": "What is the weather in Rome?"}]
    named = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=60,
                                           tools=[WEATHER], tool_choice={"type": "function",
                                                                         "function": {"name": "get_weather"}})
    (call,) = named.choices[0].message.tool_calls
    assert named.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    required = client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=80,
                                              tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    (call,) = required.choices[0].message.tool_calls
    assert required.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])

    # streamed: the deltas reassemble into the same call
    args, names, ids, finish = "", "", set(), None
    for chunk in client.chat.completions.create(model=name, messages=messages, temperature=0, max_tokens=60,
                                                stream=True, tools=[WEATHER],
                                                tool_choice={"type": "function", "function": {"name": "get_weather"}}):
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            ids.add(tc.id) if tc.id else None
            names += tc.function.name or ""
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    named_call = named.choices[0].message.tool_calls[0]
    assert finish == "tool_calls" and names == "get_weather" and len(ids) == 1
    assert json.loads(args) == json.loads(named_call.function.arguments)
