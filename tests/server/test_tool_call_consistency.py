"""A tool-call answer is the same streamed and whole: a named tool_choice cut off by max_tokens is a call with the
partial arguments and finish_reason "length" both ways (vLLM's rule: a named choice's output is always the function's
arguments), and parallel_tool_calls=false keeps only the first call under tool_choice auto too (vLLM and OpenAI: at
most one call), not only where the "required" grammar enforces it."""

from __future__ import annotations

import json
import re

import pytest

from vdeploy.server.chat_tools import ToolCallExtractor, finish_reason
from vdeploy.server.guided_request import ToolPlan
from vdeploy.server.tool_parsers import make_parser

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
TWO_HERMES_CALLS = ('Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
                    '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>')


def _stream_through(ex: ToolCallExtractor, text: str, engine_reason: str, step: int = 3):
    """(content, [(name, arguments)], finish_reason) as a client reassembles the extractor's stream."""
    content, calls = "", {}
    for i in range(0, len(text), step):
        c, deltas = ex.feed(text[i:i + step])
        content += c or ""
        _add_deltas(calls, deltas)
    c, deltas = ex.finish()
    content += c or ""
    _add_deltas(calls, deltas)
    return content or None, [calls[i] for i in sorted(calls)], finish_reason(engine_reason, ex.calls)


def _add_deltas(calls: dict, deltas) -> None:
    for d in deltas:
        name, args = calls.get(d["index"], ("", ""))
        calls[d["index"]] = (name + d["function"].get("name", ""), args + d["function"]["arguments"])


def _whole(ex: ToolCallExtractor, text: str, engine_reason: str):
    content, calls = ex.final(text)
    pairs = [(c["function"]["name"], c["function"]["arguments"]) for c in calls or []]
    return content, pairs, finish_reason(engine_reason, calls)


# ---- the extractor, on given text -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, engine_reason", [
    ('{"city', "length"),  # cut off by max_tokens mid-arguments
    ('{"city": "Rome"}', "stop"),  # complete
])
def test_named_choice_is_a_call_streamed_and_whole(text, engine_reason):
    plan = ToolPlan("named", [WEATHER], named="get_weather")
    whole = _whole(ToolCallExtractor(plan), text, engine_reason)
    assert whole == _stream_through(ToolCallExtractor(plan), text, engine_reason)
    want_reason = "length" if engine_reason == "length" else "tool_calls"
    assert whole == (None, [("get_weather", text)], want_reason)


def test_named_choice_with_no_answer_has_no_call():
    # e.g. a reasoning model cut off before `</think>`: nothing was generated as arguments, nothing was streamed
    plan = ToolPlan("named", [WEATHER], named="get_weather")
    assert ToolCallExtractor(plan).final(None) == (None, None)
    ex = ToolCallExtractor(plan)
    assert ex.feed(None) == (None, []) and ex.finish() == (None, []) and ex.calls is None


@pytest.mark.parametrize("parallel, names", [(False, ["get_weather"]), (True, ["get_weather", "add"])])
def test_auto_choice_honours_parallel_tool_calls(parallel, names):
    plan = ToolPlan("auto", [WEATHER, ADD], parallel=parallel)
    whole = _whole(ToolCallExtractor(plan, make_parser("hermes")), TWO_HERMES_CALLS, "stop")
    streamed = _stream_through(ToolCallExtractor(plan, make_parser("hermes")), TWO_HERMES_CALLS, "stop")
    assert [n for n, _ in whole[1]] == names and streamed[1] == whole[1]
    assert whole[0] == streamed[0] == "Checking.\n"  # the text before the calls stays, as written
    assert whole[2] == streamed[2] == "tool_calls"
    assert json.loads(whole[1][0][1]) == {"city": "Rome"}


def test_required_choice_keeps_one_call_even_if_the_grammar_let_two_through():
    text = '[{"name": "get_weather", "parameters": {"city": "Rome"}}, {"name": "add", "parameters": {}}]'
    plan = ToolPlan("required", [WEATHER, ADD], parallel=False)
    whole = _whole(ToolCallExtractor(plan), text, "stop")
    assert [n for n, _ in whole[1]] == ["get_weather"]
    assert _stream_through(ToolCallExtractor(plan), text, "stop") == whole


# ---- through the server (the tiny random model, its output forced where the test needs one) ---------------------
def _reassemble(stream):
    content, calls, finish = "", {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for tc in choice.delta.tool_calls or []:
            name, args = calls.get(tc.index, ("", ""))
            calls[tc.index] = (name + (tc.function.name or ""), args + (tc.function.arguments or ""))
        finish = choice.finish_reason or finish
    return content or None, [calls[i] for i in sorted(calls)], finish


def _message(choice):
    calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    return choice.message.content or None, calls, choice.finish_reason


def test_server_named_choice_cut_off_agrees_streamed_and_whole(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Weather in Rome?"}], max_tokens=5,
              tools=[WEATHER], tool_choice=NAMED)
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == _reassemble(client.chat.completions.create(stream=True, **kw))
    content, calls, reason = whole
    assert content is None and reason == "length" and [n for n, _ in calls] == ["get_weather"]
    assert calls[0][1].startswith("{")


@pytest.mark.parametrize("parallel, count", [(False, 1), (True, 2)])
def test_server_auto_choice_honours_parallel_tool_calls(client, parallel, count):
    two_calls = ('<tool_call>{"name":"add","arguments":{"a":1}}</tool_call>'
                 '<tool_call>{"name":"add","arguments":{"a":2}}</tool_call>')
    # the tiny model's template shows no call format, so the server reads hermes calls
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Add."}], max_tokens=200, tools=[WEATHER, ADD],
              parallel_tool_calls=parallel, extra_body={"guided_regex": re.escape(two_calls)})
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == _reassemble(client.chat.completions.create(stream=True, **kw))
    content, calls, reason = whole
    assert content is None and reason == "tool_calls" and len(calls) == count
    assert [json.loads(args) for _, args in calls] == [{"a": 1}, {"a": 2}][:count]


@pytest.mark.parametrize("before", ["Sure!\n", " Sure! \n\n", "\n"])
def test_server_auto_content_before_a_call_agrees_streamed_and_whole(client, before):
    """The text before a call is the same text streamed and whole (vLLM's hermes parser returns it untrimmed)."""
    text = before + '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Add."}], max_tokens=120, tools=[ADD],
              extra_body={"guided_regex": _literal_regex(text)})
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == _reassemble(client.chat.completions.create(stream=True, **kw))
    assert whole[0] == before and whole[1] == [("add", '{"a": 1}')] and whole[2] == "tool_calls"


def _literal_regex(text: str) -> str:
    """A regex matching exactly `text`, in the dialect xgrammar reads (re.escape writes spaces and newlines as
    escapes it does not take)."""
    return "".join("\\" + ch if ch in "{}()[].*+?|^$\\" else ch for ch in text)
