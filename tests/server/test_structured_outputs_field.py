"""vLLM's current structured-output field, `structured_outputs` (the guided_* fields are its deprecated spellings),
through the official openai client against the test server: each constraint is honoured on chat and completions,
and what vdeploy cannot honour (a whitespace pattern, structural tags, unknown keys, two constraints) is a 400 that
names the field, never a 200 with unconstrained text."""

from __future__ import annotations

import json
import re

import httpx
import jsonschema
import openai
import pytest

ITEM = {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 99},
                                         "ok": {"type": "boolean"}},
        "required": ["id", "ok"], "additionalProperties": False}
CHAT = [{"role": "user", "content": "hi"}]
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def _chat(client, structured_outputs, **kw):
    kw.setdefault("max_tokens", 60)
    r = client.chat.completions.create(model="tiny", messages=CHAT, temperature=1.0, seed=1,
                                       extra_body={"structured_outputs": structured_outputs}, **kw)
    return r.choices[0]


@pytest.mark.parametrize("stream", [False, True])
def test_regex_and_choice_constrain_the_chat_answer(client, stream):
    for fields, fits in (({"regex": "[0-9]{2}"}, lambda t: re.fullmatch("[0-9]{2}", t)),
                         ({"choice": ["yes", "no"]}, lambda t: t in ("yes", "no")),
                         ({"grammar": 'root ::= "a" | "bb"'}, lambda t: t in ("a", "bb"))):
        if stream:
            chunks = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=8, stream=True,
                                                    extra_body={"structured_outputs": fields})
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = _chat(client, fields, max_tokens=8).message.content
        assert fits(text), (fields, text)


@pytest.mark.parametrize("schema", [ITEM, json.dumps(ITEM)])  # vLLM takes the schema as an object or as JSON text
def test_json_schema_and_json_object(client, schema):
    choice = _chat(client, {"json": schema})
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content, strict=False), ITEM)
    content = _chat(client, {"json_object": True}).message.content
    assert content.startswith("{")


def test_completions_take_structured_outputs(client):
    r = client.completions.create(model="tiny", prompt="Code:", max_tokens=10, temperature=1.0, seed=2,
                                  extra_body={"structured_outputs": {"regex": "[A-Z]{3}-[0-9]{2}"}})
    assert re.fullmatch("[A-Z]{3}-[0-9]{2}", r.choices[0].text)


def test_options_vdeploy_already_follows_are_accepted(client):
    # JSON here is always compact and strict: both values of these options hold, whatever the constraint
    for options in ({"disable_any_whitespace": True, "disable_additional_properties": True},
                    {"disable_any_whitespace": False, "disable_additional_properties": False}):
        choice = _chat(client, {"json": ITEM, **options})
        jsonschema.validate(json.loads(choice.message.content, strict=False), ITEM)
    # no constraint at all (every key null or left out, as vLLM's defaults): the answer is free
    assert _chat(client, {}, max_tokens=4).finish_reason in ("stop", "length")
    assert _chat(client, {"regex": None, "json": None}, max_tokens=4).finish_reason in ("stop", "length")


def _refused(client, param, **extra_body):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=4, extra_body=extra_body)
    error = e.value.body
    assert error["param"] == param, error
    assert param.split(".")[-1] in error["message"]
    return error


@pytest.mark.parametrize("extra_body, param", [
    # what vdeploy cannot honour: refused, not ignored
    ({"structured_outputs": {"json": ITEM, "whitespace_pattern": "[ ]{3}"}}, "structured_outputs.whitespace_pattern"),
    ({"guided_json": ITEM, "guided_whitespace_pattern": "[ ]{3}"}, "guided_whitespace_pattern"),
    ({"structured_outputs": {"structural_tag": "{}"}}, "structured_outputs.structural_tag"),
    ({"structured_outputs": {"regex": "a", "backend": "outlines"}}, "structured_outputs.backend"),
    # malformed
    ({"structured_outputs": "regex"}, "structured_outputs"),
    ({"structured_outputs": {"regex": ""}}, "structured_outputs.regex"),
    ({"structured_outputs": {"choice": []}}, "structured_outputs.choice"),
    ({"structured_outputs": {"json": 3}}, "structured_outputs.json"),
    ({"structured_outputs": {"json_object": False}}, "structured_outputs.json_object"),
    ({"structured_outputs": {"disable_any_whitespace": "yes"}}, "structured_outputs.disable_any_whitespace"),
    # two constraints, inside structured_outputs or across fields: one per request, as with guided_*
    ({"structured_outputs": {"regex": "a", "choice": ["b"]}}, "structured_outputs.choice"),
    ({"guided_regex": "a", "structured_outputs": {"choice": ["b"]}}, "structured_outputs.choice"),
])
def test_refusals_name_the_field(client, extra_body, param):
    _refused(client, param, **extra_body)


def test_refusal_codes(client):
    assert _refused(client, "structured_outputs.json", structured_outputs={"json": "{not json"})["code"] == \
        "invalid_json"
    error = _refused(client, "structured_outputs.whitespace_pattern", structured_outputs={"whitespace_pattern": " "})
    assert error["code"] == "unsupported_value"


def test_one_constraint_with_response_format_and_tool_choice(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=4,
                                       response_format={"type": "json_object"},
                                       extra_body={"structured_outputs": {"regex": "a"}})
    assert e.value.body["param"] == "structured_outputs.regex"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=4, tools=[ADD],
                                       tool_choice="required", extra_body={"structured_outputs": {"regex": "a"}})
    assert e.value.body["param"] == "tool_choice"
    # tool_choice auto does not constrain the answer: a regex goes with it (as guided_regex does)
    r = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=4, tools=[ADD],
                                       extra_body={"structured_outputs": {"regex": "[0-9]{2}"}})
    assert re.fullmatch("[0-9]{2}", r.choices[0].message.content)


def test_beam_search_refuses_structured_outputs(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", max_tokens=4, n=2,
                                  extra_body={"use_beam_search": True, "structured_outputs": {"regex": "a"}})
    assert e.value.body["param"] == "structured_outputs"


def test_openapi_documents_structured_outputs(server):
    schema = httpx.get(f"{server.url}/openapi.json", timeout=30).json()["components"]["schemas"]
    for request in ("ChatCompletionRequest", "CompletionRequest"):
        field = schema[request]["properties"]["structured_outputs"]
        obj = next(v for v in field["anyOf"] if v.get("type") == "object")
        assert {"json", "regex", "choice", "grammar", "json_object"} <= set(obj["properties"])
        assert "whitespace_pattern" not in obj["properties"] and obj["additionalProperties"] is False
