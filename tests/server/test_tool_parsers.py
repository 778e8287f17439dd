"""Tool-call parsers on recorded outputs of each model family's native format, malformed ones included (those are
plain content, never an exception), and the streaming extractor's deltas."""

from __future__ import annotations

import json

import pytest

from vdeploy.server.chat_tools import ToolCallExtractor
from vdeploy.server.guided_request import ToolPlan
from vdeploy.server.tool_parsers import default_tool_call_parser, make_parser

DS_R1 = ("Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n"
         '{"city": "Paris", "unit": "c"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>add\n'
         '```json\n{"a": 1, "b": 2}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>')
DS_V31 = ('<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Rome"}<｜tool▁call▁end｜>'
          '<｜tool▁calls▁end｜>')
HERMES = ('I will call it.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Tokyo"}}\n</tool_call>\n'
          '<tool_call>\n{"name": "add", "arguments": {"a": 4, "b": 5}}\n</tool_call>')
LLAMA = '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "add", "parameters": {"a": 1}}'


def _calls(parsed):
    return [(c.name, json.loads(c.arguments)) for c in parsed.calls]


def test_deepseek_r1_and_v31_formats():
    p = make_parser("deepseek_v3")
    parsed = p.parse(DS_R1)
    assert parsed.content == "Let me check."
    assert _calls(parsed) == [("get_weather", {"city": "Paris", "unit": "c"}), ("add", {"a": 1, "b": 2})]
    assert _calls(p.parse(DS_V31)) == [("get_weather", {"city": "Rome"})]


def test_hermes_and_llama3_formats():
    parsed = make_parser("hermes").parse(HERMES)
    assert parsed.content == "I will call it.\n"  # the text before the call as written, as vLLM's parser returns it
    assert _calls(parsed) == [("get_weather", {"city": "Tokyo"}), ("add", {"a": 4, "b": 5})]
    parsed = make_parser("llama3_json").parse(LLAMA)
    assert parsed.content is None and _calls(parsed) == [("get_weather", {"city": "Paris"}), ("add", {"a": 1})]


@pytest.mark.parametrize("name, text", [
    ("deepseek_v3", "<｜tool▁calls▁begin｜>nothing after"),
    ("deepseek_v3", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```python\nf()\n```"),
    ("deepseek_v3", "<｜tool▁call▁begin｜>two\nlines<｜tool▁sep｜>{}<｜tool▁call▁end｜>"),
    ("hermes", '<tool_call>\n{"arguments": {}}\n</tool_call>'),  # no name
    ("hermes", "<tool_call>\n[1, 2]\n</tool_call>"),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": 3}\n</tool_call>'),
    ("hermes", '<tool_call>\n{"name": "f", "argu'),  # cut off before its arguments opened
    ("llama3_json", '{"name": "f", "parameters": 3}'),
    ("llama3_json", '{"name": "f", "arguments": "not json"}'),
    ("llama3_json", '{"answer": 4}'),
    ("llama3_json", "The answer is 4."),
])
def test_malformed_output_is_plain_content(name, text):
    """Output that never framed a call (a name and the `{` of its arguments) is plain content, whole."""
    parsed = make_parser(name).parse(text)
    assert parsed.calls == [] and parsed.content == text
@pytest.mark.parametrize("name, text, args", [
    ("deepseek_v3", '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{"a": 1,\n```'
                    "<｜tool▁call▁end｜>", '{"a": 1,'),  # broken by the fence
    ("deepseek_v3", '<｜tool▁call▁begin｜>f<｜tool▁sep｜>{"a": [1, 2', '{"a": [1, 2'),  # cut off by max_tokens
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": </tool_call>', '{"a":'),
    ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": "Ro', '{"a": "Ro'),
    ("llama3_json", '{"name": "f", "parameters": {"a": 1}', '{"a": 1}'),  # the arguments are complete
])
def test_a_call_broken_after_its_name_keeps_its_arguments_so_far(name, text, args):
    """Once a call's name and the `{` of its arguments are written, a stream has sent them: the call stays, with the
    arguments as far as they were valid JSON (less trailing whitespace), whole as streamed."""
    parsed = make_parser(name).parse(text)
    assert parsed.content is None and [(c.name, c.arguments) for c in parsed.calls] == [("f", args)]


def test_parser_from_chat_template():
    assert default_tool_call_parser("{{'<｜tool▁calls▁begin｜>'}}") == "deepseek_v3"
    assert default_tool_call_parser("<tool_call>\\n{{ tool_call | tojson }}") == "hermes"
    assert default_tool_call_parser('{"name": ..., "parameters": ...} <|python_tag|>') == "llama3_json"
    assert default_tool_call_parser(None) == "hermes"


@pytest.mark.parametrize("text, parser", [
    (HERMES, "hermes"), (DS_R1, "deepseek_v3"), (LLAMA, "llama3_json"), ("just text, <tool no call", "hermes"),
    # whitespace around the text before a call: streamed as written, so the whole answer keeps it too
    ("  Sure!\n\n" + HERMES[len("I will call it.\n"):], "hermes"),
    ("\n" + HERMES[len("I will call it.\n"):], "hermes"),
    ("Let me check. \n" + DS_R1[len("Let me check."):], "deepseek_v3"),
    ("\n " + LLAMA, "llama3_json"),
    ("Result:\n" + LLAMA, "llama3_json"),  # a python tag after text: not a call, all of it is content
])
@pytest.mark.parametrize("step", [1, 3, 7])  # tags split across deltas in different places
def test_auto_stream_matches_the_whole_answer(text, parser, step):
    strip = ("<｜end▁of▁sentence｜>",)
    whole_content, whole_calls = ToolCallExtractor(ToolPlan("auto"), make_parser(parser), strip).final(text)
    ex = ToolCallExtractor(ToolPlan("auto"), make_parser(parser), strip)
    content, deltas = "", []
    for i in range(0, len(text), step):
        c, d = ex.feed(text[i:i + step])
        content += c or ""
        deltas += d
    c, d = ex.finish()
    content += c or ""
    deltas += d
    assert (content or None) == whole_content  # exactly: the deltas join to the whole answer's content
    assert join_call_deltas(deltas) == [(c["function"]["name"], c["function"]["arguments"]) for c in whole_calls or []]


def join_call_deltas(deltas) -> list[tuple[str, str]]:
    """[(name, arguments)] as a client joins OpenAI's tool-call deltas, checking their shape on the way: a call's
    first delta has its id, type and name with arguments "", the later ones arguments only; indexes come in order."""
    calls: list[list[str]] = []
    for d in deltas:
        if "id" in d:
            assert d["index"] == len(calls) and d["type"] == "function" and d["function"]["arguments"] == ""
            calls.append([d["function"]["name"], ""])
        else:
            assert set(d) == {"index", "function"} and set(d["function"]) == {"arguments"}
            assert d["index"] == len(calls) - 1  # pieces of the latest call only: calls do not interleave
            calls[d["index"]][1] += d["function"]["arguments"]
    return [(name, args) for name, args in calls]


def test_messages_fit_the_template():
    from vdeploy.server.chat_tools import adapt_messages

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "3", "tool_call_id": "c1"}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    # Qwen-style templates write `arguments | tojson`: they get the object
    qwen = adapt_messages(msgs, tools, "{% for tool in tools %}{{ tool_call.arguments | tojson }}", "hermes")
    assert qwen[1]["tool_calls"][0]["function"]["arguments"] == {"a": 1} and len(qwen) == 3
    # DeepSeek's stock template concatenates the text and never renders `tools`: a system message lists them
    ds = adapt_messages(msgs, tools, "<｜tool▁call▁begin｜>{{ tool['function']['arguments'] }}", "deepseek_v3")
    assert ds[0]["role"] == "system" and "<｜tool▁calls▁begin｜>" in ds[0]["content"] and '"name": "f"' in ds[0]["content"]
    assert ds[2]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
    # a template without any tool support gets no listing
    assert adapt_messages(msgs, tools, "{{ m['content'] }}", "hermes")[0]["role"] == "user"
