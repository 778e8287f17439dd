"""Tool calls under tool_choice auto stream incrementally, as OpenAI and vLLM stream them: a call's name as soon as
the call is framed, then its arguments in pieces as they are generated, and the content before it as content. What
a stream adds up to is exactly the whole answer for the same generation, for every parser, wherever the text was
cut into deltas and wherever max_tokens cut it off (tool_parsers/__init__.py gives the rules)."""

from __future__ import annotations

import json
import random

import pytest
from server_harness import start_server
from test_tool_call_consistency import _literal_regex, _message
from test_tool_parsers import DS_R1, DS_V31, HERMES, LLAMA, join_call_deltas

from vdeploy.server.chat_tools import ToolCallExtractor, finish_reason
from vdeploy.server.guided_request import ToolPlan

EOS = "<｜end▁of▁sentence｜>"
SAMPLES = {
    "deepseek_v3": [
        DS_R1, DS_V31, "Sure. " + DS_V31,
        '<｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```\n{"s": "a \\"quoted\\" }", "n": -1.5e3}\n```<｜tool▁call▁end｜>',
        "<｜tool▁calls▁begin｜>no call here<｜tool▁calls▁end｜> and text",
        '<｜tool▁call▁begin｜>function<｜tool▁sep｜>{"a": 1}<｜tool▁call▁end｜>',  # V3.1's, of a function named "function"
    ],
    "hermes": [
        HERMES, '<tool_call>{"arguments": {"x": [1, {"y": null}]}, "name": "late"}</tool_call>',
        '<tool_call>{"name": "s", "arguments": "{\\"a\\": 1}"}</tool_call>',  # arguments as a JSON string
        'a <tool_call>[1]</tool_call> b <tool_call>{"name": "f", "arguments": {}}</tool_call> c',
        "<tool_call>\n<tool_call>", "plain <tool text",
    ],
    "llama3_json": [
        LLAMA, ' {"name": "f", "arguments": {"k": "v"}} ; {"name": "g", "parameters": {}}',
        '{"not": "a call"} trailing', "Hello <|python_tag|>", '<|python_tag|>{"name": "f", "parameters": {"a": tru',
    ],
}
CASES = [(parser, text) for parser, texts in SAMPLES.items() for text in texts]


def _plan(parallel: bool = True) -> ToolPlan:
    return ToolPlan("auto", parallel=parallel)


def _extractor(parser: str, parallel: bool = True) -> ToolCallExtractor:
    from vdeploy.server.tool_parsers import make_parser

    return ToolCallExtractor(_plan(parallel), make_parser(parser), (EOS,))


def _stream(ex: ToolCallExtractor, pieces: list[str]):
    """(content, [(name, arguments)], every delta, the per-feed (content, deltas)) as a client joins the stream."""
    content, deltas, steps = "", [], []
    for piece in pieces:
        c, d = ex.feed(piece)
        steps.append((c, d))
    steps.append(ex.finish())
    for c, d in steps:
        content += c or ""
        deltas += d
    return content or None, join_call_deltas(deltas), deltas, steps


def _whole(parser: str, text: str, parallel: bool = True):
    content, calls = _extractor(parser, parallel).final(text)
    return content, [(c["function"]["name"], c["function"]["arguments"]) for c in calls or []]


def _cut(text: str, sizes) -> list[str]:
    pieces, i = [], 0
    for size in sizes:
        if i >= len(text):
            break
        pieces.append(text[i : i + size])
        i += size
    return pieces + ([text[i:]] if i < len(text) else [])


# ---- the extractor on recorded outputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("parser, text", CASES)
def test_every_cut_off_point_and_chunking_adds_up_to_the_whole_answer(parser, text):
    """Each prefix is what max_tokens could leave; each is streamed in deltas of 1, 2, 5 characters and in random
    ones: the joined stream is the whole answer of that prefix, content and calls alike."""
    rng = random.Random(len(text))
    for end in range(len(text) + 1):
        prefix = text[:end]
        whole = _whole(parser, prefix)
        for sizes in ([1] * end, [2] * end, [5] * end, [rng.randint(1, 9) for _ in range(end)]):
            got = _stream(_extractor(parser), _cut(prefix, sizes))
            assert got[:2] == whole, (prefix, sizes[:3])


def _generated(rng: random.Random, parser: str) -> tuple[str, list[tuple[str, str]]]:
    """A well-formed answer of 1-3 calls in the format (in its variants) and the calls it holds."""
    calls, texts = [], []
    for _ in range(rng.randint(1, 3)):
        value = {"a": rng.choice([1, -2.5, "x y", None, True, [1, {"b": "q"}]]), "k": "v"}
        args, name = json.dumps(value, separators=rng.choice([(",", ":"), (", ", ": ")])), rng.choice(["f", "get"])
        calls.append((name, args))
        texts.append({
            "hermes": f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>',
            "deepseek_v3": rng.choice([f"<｜tool▁call▁begin｜>{name}<｜tool▁sep｜>{args}<｜tool▁call▁end｜>",
                                       f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{name}\n```json\n{args}\n```"
                                       "<｜tool▁call▁end｜>"]),
            "llama3_json": f'{{"name": "{name}", "{rng.choice(["parameters", "arguments"])}": {args}}}',
        }[parser])
    if parser == "llama3_json":
        return rng.choice(["", "<|python_tag|>"]) + "; ".join(texts), calls
    if parser == "deepseek_v3":
        return "<｜tool▁calls▁begin｜>" + "\n".join(texts) + "<｜tool▁calls▁end｜>", calls
    return "\n".join(texts), calls


@pytest.mark.parametrize("parser", sorted(SAMPLES))
def test_generated_and_damaged_answers_stream_as_they_answer_whole(parser):
    """Well-formed answers give their calls; the same with characters cut, dropped or inserted (what a sampled
    model can write) still stream to exactly their whole answer, in one-character and in random deltas."""
    rng = random.Random(parser)
    for _ in range(150):
        text, calls = _generated(rng, parser)
        assert _whole(parser, text) == (None, calls)
        for _ in range(rng.randint(1, 2)):
            i, op = rng.randrange(len(text) + 1), rng.random()
            if op < 0.4:
                text = text[:i]
            else:
                text = text[:i] + (text[i + 1 :] if op < 0.7 else rng.choice('{}"\\:,< x') + text[i:])
        whole = _whole(parser, text)
        for sizes in ([1] * len(text), [rng.randint(1, 6) for _ in range(len(text))]):
            assert _stream(_extractor(parser), _cut(text, sizes))[:2] == whole, text


@pytest.mark.parametrize("parser, text, name", [
    ("deepseek_v3", DS_R1, "get_weather"), ("hermes", HERMES, "get_weather"), ("llama3_json", LLAMA, "get_weather")])
def test_name_first_then_arguments_in_pieces(parser, text, name):
    """Fed one character at a time: the name goes out in the feed that opens the arguments (before they are
    complete), then every feed that adds argument text sends it; a call keeps one id; content comes first."""
    ex = _extractor(parser)
    content, calls, deltas, steps = _stream(ex, list(text))
    first = deltas[0]
    assert first["function"] == {"name": name, "arguments": ""} and first["type"] == "function"
    named_at = next(i for i, (_, d) in enumerate(steps) if d)
    assert text[named_at] == "{"  # the `{` that opens the arguments commits the call
    args = calls[0][1]
    pieces = [d["function"]["arguments"] for d in deltas if d["index"] == 0 and "id" not in d]
    # a piece for every character but the blanks (each waits for the character after it)
    assert len(pieces) == len(args) - args.count(" ") and "".join(pieces) == args
    assert ex.calls[0]["id"] == first["id"] and [c["id"] for c in ex.calls] == [d["id"] for d in deltas if "id" in d]
    if content:  # all of the content went out before the call's first delta
        assert max(i for i, (c, _) in enumerate(steps) if c) < named_at


@pytest.mark.parametrize("parser, text, content, calls", [
    ("hermes", SAMPLES["hermes"][1], None, [("late", '{"x": [1, {"y": null}]}')]),  # the name after the arguments
    ("hermes", SAMPLES["hermes"][2], None, [("s", '{"a": 1}')]),  # arguments as a string: the text it holds
    # a marker that frames no call is content while no call has come; after one, only calls count
    ("hermes", SAMPLES["hermes"][3], "a <tool_call>[1]</tool_call> b ", [("f", "{}")]),
    ("hermes", SAMPLES["hermes"][4], SAMPLES["hermes"][4], []),
    ("deepseek_v3", SAMPLES["deepseek_v3"][3], None, [("f", '{"s": "a \\"quoted\\" }", "n": -1.5e3}')]),
    ("deepseek_v3", SAMPLES["deepseek_v3"][4], SAMPLES["deepseek_v3"][4], []),
    ("deepseek_v3", SAMPLES["deepseek_v3"][5], None, [("function", '{"a": 1}')]),
    ("llama3_json", SAMPLES["llama3_json"][1], None, [("f", '{"k": "v"}'), ("g", "{}")]),
    ("llama3_json", SAMPLES["llama3_json"][2], SAMPLES["llama3_json"][2], []),  # JSON, but no call
    ("llama3_json", SAMPLES["llama3_json"][4], None, [("f", '{"a": tru')]),  # cut off in a literal
])
def test_what_each_format_answers(parser, text, content, calls):
    assert _whole(parser, text) == (content, calls)


def test_held_back_marker_is_never_sent_as_content_or_arguments():
    ex = _extractor("hermes")
    assert ex.feed("Let me look. <tool_") == ("Let me look. ", [])
    assert ex.feed('call>{"name": "f", "argu') == (None, [])  # framed, not yet a call: nothing goes out
    content, deltas = ex.feed('ments": {"q": "x')
    assert content is None and [d["function"] for d in deltas] == [{"name": "f", "arguments": ""},
                                                                    {"arguments": '{"q": "x'}]
    ex = _extractor("deepseek_v3")
    assert ex.feed("Hi <｜tool▁ca") == ("Hi ", [])  # a partial special-token marker waits
    assert ex.feed("lls▁begin｜>")[0] is None


def test_arguments_stop_at_a_syntax_error_and_stay_whole_as_streamed():
    text = '<tool_call>{"name": "f", "arguments": {"a": 1, "b": ]}}</tool_call>'
    content, calls, deltas, _ = _stream(_extractor("hermes"), list(text))
    assert (content, calls) == _whole("hermes", text) == (None, [("f", '{"a": 1, "b":')])
    assert "]" not in "".join(d["function"]["arguments"] for d in deltas)  # nothing past the error went out


@pytest.mark.parametrize("parser, text", [("hermes", HERMES), ("deepseek_v3", DS_R1), ("llama3_json", LLAMA)])
def test_parallel_tool_calls_false_streams_only_the_first_call(parser, text):
    ex = _extractor(parser, parallel=False)
    content, calls, deltas, _ = _stream(ex, _cut(text, [3] * len(text)))
    assert {d["index"] for d in deltas} == {0} and len(ex.calls) == 1
    assert (content, calls) == _whole(parser, text, parallel=False) and calls[0][0] == "get_weather"
    assert finish_reason("stop", ex.calls) == "tool_calls"


# ---- the incremental JSON reader ---------------------------------------------------------------------------------
VALID_JSON = ['{"a": 1}', ' {"a" : [1, -2.5e-3, 0, 0.5E+2, true, false, null], "b": {"c": "\\u00e9\\n\\"x\\""}} ',
              "[]", "{}", '"s"', "[[], {}, [{}]]", '{"k": "naïve 東京"}', "-0", "12", "1E9"]
INVALID_JSON = ['{"a": 01}', '{"a": 1,}', "[1 2]", '{"a" 1}', '"\x01"', '{"a": tru e}', "-", "1.", "{'a': 1}",
                "NaN", '{"a": 1}}', '"\\x"', '"\\u12g4"', "[1,]", '{"a": +1}', "1e", '{"a": 1] ']


@pytest.mark.parametrize("doc", VALID_JSON + INVALID_JSON)
def test_json_reader_agrees_with_json_loads_at_every_character(doc):
    """Fed a character at a time (and again whole), the reader reads a valid document to its end and never
    accepts an invalid one whole."""
    from vdeploy.server.tool_parsers.json_prefix import JsonScanner

    scanner = JsonScanner(0)
    for i in range(1, len(doc) + 1):
        scanner.feed(doc[:i])
    # a number's end is only known from what follows it: a trailing space shows where it ends
    scanner.feed(doc + " ")
    try:  # RFC 8259: without json.loads' NaN / Infinity extension
        json.loads(doc, parse_constant=lambda name: float("x"))
        valid = True
    except ValueError:
        valid = False
    reads_whole = scanner.done and not doc[scanner.end :].strip()
    assert reads_whole == valid, (doc, scanner.end, scanner.failed)


# ---- through the server, with the official client ----------------------------------------------------------------
ADD = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def parser_servers(engine):
    """A server per parser, over the session's engine (the tiny model's template shows no format: hermes)."""
    servers = {name: start_server(engine, tool_call_parser=name) for name in ("deepseek_v3", "llama3_json")}
    yield servers
    for srv in servers.values():
        srv.stop()


@pytest.fixture
def client_for(client, parser_servers):
    import openai

    made = []

    def get(parser: str):
        if parser == "hermes":
            return client
        made.append(openai.OpenAI(base_url=f"{parser_servers[parser].url}/v1", api_key="unused", max_retries=0,
                                  timeout=60))
        return made[-1]

    yield get
    for c in made:
        c.close()


def _chunks(client, **kw) -> list:
    return [c for c in client.chat.completions.create(stream=True, **kw) if c.choices]


def _joined(chunks):
    """(content, [(name, arguments)], finish_reason) from a stream, checking each call keeps one id and type."""
    content, calls, ids, finish = "", {}, {}, None
    for chunk in chunks:
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for tc in choice.delta.tool_calls or []:
            if tc.id:
                assert tc.index not in ids and tc.index == len(ids) and tc.type == "function"
                ids[tc.index] = tc.id
                assert tc.function.name and tc.function.arguments == ""
            else:
                assert tc.index in ids and not (tc.function.name or "")
            name, args = calls.get(tc.index, ("", ""))
            calls[tc.index] = (name + (tc.function.name or ""), args + (tc.function.arguments or ""))
        finish = choice.finish_reason or finish
    return content or None, [calls[i] for i in sorted(calls)], finish


FORCED = {  # (parser, the forced output, what its answer is)
    "hermes": ('Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 12, "b": "thirty four", "c": [5, 6]}}\n'
               '</tool_call>', "Sure.\n", [("add", '{"a": 12, "b": "thirty four", "c": [5, 6]}')]),
    # V3.1's form then R1's (the markers are many tokens of the tiny model's byte-level vocabulary: two calls fit)
    "deepseek_v3": ('Sure. <｜tool▁call▁begin｜>add<｜tool▁sep｜>{"a": 12, "b": "thirty four"}<｜tool▁call▁end｜>'
                    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"Rome\"}\n```"
                    "<｜tool▁call▁end｜>", "Sure. ",
                    [("add", '{"a": 12, "b": "thirty four"}'), ("get_weather", '{"city": "Rome"}')]),
    "llama3_json": ('{"name": "add", "parameters": {"a": 12, "b": "thirty four"}}; '
                    '{"name": "get_weather", "parameters": {"city": "Paris"}}', None,
                    [("add", '{"a": 12, "b": "thirty four"}'), ("get_weather", '{"city": "Paris"}')]),
}


def _request(text: str, **kw) -> dict:
    return dict(model="tiny", messages=[{"role": "user", "content": "Add."}], max_tokens=230, tools=[ADD, WEATHER],
                extra_body={"guided_regex": _literal_regex(text)}, **kw)


@pytest.mark.parametrize("parser", sorted(FORCED))
def test_server_streams_calls_incrementally_and_adds_up_to_the_whole_answer(client_for, parser):
    client = client_for(parser)
    text, content, calls = FORCED[parser]
    kw = _request(text)
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == (content, calls, "tool_calls")
    chunks = _chunks(client, **kw)
    assert _joined(chunks) == whole
    # the first call's name arrives before its arguments are complete, and they come in several chunks
    named = next(i for i, c in enumerate(chunks) if c.choices[0].delta.tool_calls)
    with_args = [i for i, c in enumerate(chunks) for tc in c.choices[0].delta.tool_calls or []
                 if tc.index == 0 and tc.function.arguments]
    assert named < with_args[0] < with_args[-1] < len(chunks) - 1 and len(with_args) >= 3
    if content:  # content first, as content, before any call delta
        assert "".join(c.choices[0].delta.content or "" for c in chunks[:named]) == content


@pytest.mark.parametrize("parser", sorted(FORCED))
def test_server_parallel_tool_calls_false_streams_one_call(client_for, parser):
    client = client_for(parser)
    text = FORCED[parser][0] if parser != "hermes" else FORCED["hermes"][0] + FORCED["hermes"][0][len("Sure.\n"):]
    kw = _request(text, parallel_tool_calls=False)
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == _joined(_chunks(client, **kw)) and len(whole[1]) == 1 and whole[2] == "tool_calls"


@pytest.mark.parametrize("max_tokens", [8, 20, 30])
def test_server_call_cut_off_by_max_tokens_agrees_streamed_and_whole(client, max_tokens):
    text = FORCED["hermes"][0]
    kw = _request(text)
    kw["max_tokens"] = max_tokens
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == _joined(_chunks(client, **kw)) and whole[2] == "length"
    for _, args in whole[1]:  # a cut call keeps the arguments it had: the beginning of the real ones
        assert FORCED["hermes"][2][0][1].startswith(args)


def test_server_malformed_call_is_content_streamed_and_whole(client):
    text = 'Here: <tool_call>\n{"arguments": {"a": 1}}\n</tool_call>'  # no name: never a call
    kw = _request(text)
    whole = _message(client.chat.completions.create(**kw).choices[0])
    assert whole == _joined(_chunks(client, **kw)) == (text, [], "stop")


def test_server_content_then_call_with_reasoning_free_arguments_json(client):
    text = 'Checking the weather first.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>'
    kw = _request(text)
    content, calls, finish = _joined(_chunks(client, **kw))
    assert content == "Checking the weather first.\n" and finish == "tool_calls"
    assert [(n, json.loads(a)) for n, a in calls] == [("get_weather", {"city": "Rome"})]
