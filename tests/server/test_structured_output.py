"""Structured output and enforced tool calls through the official openai client against the test server (a tiny
random-weight Llama: whatever it would say, the grammar makes it say valid JSON)."""

from __future__ import annotations

import json

import jsonschema
import pytest

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z][a-z ]{0,11}$"},
        "note": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Rome"]}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "tags", "address", "active"],
    "additionalProperties": False,
}
POINTS = {
    "type": "object",
    "properties": {"points": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
        "type": "object", "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9},
                                         "label": {"enum": ["a", "b"]}},
        "required": ["x", "label"], "additionalProperties": False}}},
    "required": ["points"],
    "additionalProperties": False,
}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Rome", "Tokyo"]},
                                                    "unit": {"enum": ["c", "f"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0,
                                                                          "maximum": 99},
                                                                    "b": {"type": "integer", "minimum": 0,
                                                                          "maximum": 99}},
                                  "required": ["a", "b"], "additionalProperties": False}}}
# xgrammar's JSON strings admit raw control characters (U+0000-U+001F other than CR/LF), which Python's strict parser
# refuses; a random-weight model writes them, trained ones hardly ever
def _loads(text):
    return json.loads(text, strict=False)


MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]


def _json_schema(name, schema):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.mark.parametrize("name, schema", [("person", PERSON), ("points", POINTS)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_json_schema_answers_validate(client, name, schema, seed):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=seed, max_tokens=160,
                                       response_format=_json_schema(name, schema))
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    jsonschema.validate(_loads(choice.message.content), schema)


def test_json_object_and_vllm_guided_fields(client):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=3, max_tokens=120,
                                       response_format={"type": "json_object"})
    # any object: a random model's free keys and strings may run to max_tokens; a finished answer must parse
    content = r.choices[0].message.content
    assert content.startswith("{")
    if r.choices[0].finish_reason == "stop":
        assert isinstance(_loads(content), dict)
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=4, max_tokens=20,
                                       extra_body={"guided_choice": ["yes", "no", "maybe"]})
    assert r.choices[0].message.content in ("yes", "no", "maybe") and r.choices[0].finish_reason == "stop"
    r = client.completions.create(model="tiny", prompt="Code:", temperature=1.0, seed=5, max_tokens=20,
                                  extra_body={"guided_regex": "[A-Z]{3}-[0-9]{2}"})
    text = r.choices[0].text
    assert len(text) == 6 and text[:3].isupper() and text[4:].isdigit() and text[3] == "-"
    r = client.completions.create(model="tiny", prompt="Person:", temperature=1.0, seed=6, max_tokens=160,
                                  extra_body={"guided_json": PERSON})
    jsonschema.validate(_loads(r.choices[0].text), PERSON)


def test_constrained_and_free_requests_in_one_batch_with_n(client):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=1.0, seed=7, max_tokens=160, n=3,
                                       response_format=_json_schema("points", POINTS))
    assert len(r.choices) == 3
    for c in r.choices:
        jsonschema.validate(_loads(c.message.content), POINTS)
    free = client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=0.0, max_tokens=8)
    assert free.choices[0].message.content is not None


@pytest.mark.parametrize("seed", [0, 1])
def test_named_tool_choice_returns_a_valid_call(client, seed):
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Weather in Rome?"}], temperature=1.0, seed=seed,
        max_tokens=60, tools=[WEATHER, ADD], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_required_tool_choice_returns_valid_calls(client, seed):
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Add 2 and 3, and the weather in Paris."}],
        temperature=1.0, seed=seed, max_tokens=120, tools=[WEATHER, ADD], tool_choice="required",
        parallel_tool_calls=seed == 0)  # a random model may add calls until max_tokens: most seeds allow one
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, ADD)}
    for call in choice.message.tool_calls:
        jsonschema.validate(json.loads(call.function.arguments), schemas[call.function.name])


def _reassemble(stream):
    calls: dict[int, dict] = {}
    content, finish = "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for tc in delta.tool_calls or []:
            call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = call["id"] or tc.id
            call["name"] += (tc.function.name or "") if tc.function else ""
            call["arguments"] += (tc.function.arguments or "") if tc.function else ""
        finish = chunk.choices[0].finish_reason or finish
    return content, [calls[i] for i in sorted(calls)], finish


@pytest.mark.parametrize("tool_choice", [{"type": "function", "function": {"name": "add"}}, "required"])
def test_streamed_tool_call_deltas_reassemble_into_the_same_call(client, tool_choice):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Add 2 and 3."}], temperature=1.0, seed=11,
              max_tokens=120, tools=[WEATHER, ADD], tool_choice=tool_choice, parallel_tool_calls=False)
    whole = client.chat.completions.create(**kw).choices[0]
    content, calls, finish = _reassemble(client.chat.completions.create(stream=True, **kw))
    assert finish == whole.finish_reason == "tool_calls" and not content
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [
        (t.function.name, json.loads(t.function.arguments)) for t in whole.message.tool_calls]
    assert all(c["id"].startswith("call_") for c in calls)


def test_tool_messages_round_trip_and_tool_choice_none(client):
    history = [
        {"role": "user", "content": "Weather in Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome", "unit": "c"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
    ]
    r = client.chat.completions.create(model="tiny", messages=history, max_tokens=8, tools=[WEATHER],
                                       tool_choice="none")
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason in ("stop", "length")
    # auto: the tiny model writes no call, so the answer is plain content
    r = client.chat.completions.create(model="tiny", messages=history, max_tokens=8, tools=[WEATHER])
    assert r.choices[0].finish_reason in ("stop", "length") and not r.choices[0].message.tool_calls
