"""Tool-call parsers: find the tool calls in a model's answer text, each model family in its own native format, and
stream them as they are generated, in OpenAI's shape (the first delta of a call carries its name, the later ones
pieces of its arguments text).

  deepseek_v3  DeepSeek-V3 / R1:  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
               ```json\\n{ARGS}\\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>  (V3.1 writes NAME<｜tool▁sep｜>{ARGS})
  hermes       Qwen2.5 / R1-Distill-Qwen (Hermes style):  <tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>
  llama3_json  Llama-3.1 / R1-Distill-Llama:  [<|python_tag|>]{"name": …, "parameters": {…}} (several joined by ;)

One reader per answer reads the text incrementally (base.py); a whole answer is the same reader fed the whole text,
so a stream's deltas always add up to exactly the whole answer: its content, and each call's name and arguments.

When a call is known to be one. A stream cannot take back what it has sent, so a call is committed (its name
sent) only once its format has framed it: the call's marker, a complete non-empty name and the `{` that opens its
arguments. From then on the arguments' text is sent as the model writes it, as far as an incremental JSON reader
(json_prefix.py) accepts it as the beginning of a valid JSON value: a syntax error is caught at its first character,
so no argument text is ever sent that a later character proves wrong. What stays possible is that a committed call
never finishes: cut off by max_tokens (or a stop string), or broken by a syntax error later on. Such a call stays a
call, with the arguments it had (less trailing whitespace), streamed and whole alike — vLLM's rule for a named
tool_choice cut off by max_tokens, and what vLLM's streaming parsers leave a client with; `finish_reason` is then
"length" where max_tokens cut it. Reading goes on after it for the next call.

Content. The text before the first committed call is the answer's content, as written (untrimmed, as vLLM's
parsers return it). It streams at once, except what may be part of a call: a tail that may be the beginning of a
marker, and a call's text until it is committed or proves to be no call. Text that proves to be no call before any
call is committed (a malformed call, a marker in prose, a JSON answer without a name, an answer cut off before a
call was committed) is content, as the rest of the answer is when no call ever comes; after the first committed
call only calls count, and the text around and between them (end markers, separators, anything else) is dropped,
as vLLM's whole-answer parsers drop it. Arguments are the model's JSON text, not re-serialized: that is what can be
streamed before the object is complete (OpenAI's `function.arguments` is the model's text too).
"""

from __future__ import annotations

from typing import Optional

from vdeploy.server.tool_parsers.base import CallEvent, CallStream, ParsedCall, ParsedTools, ToolCallParser
from vdeploy.server.tool_parsers.deepseek import DeepSeekV3Parser
from vdeploy.server.tool_parsers.json_calls import HermesParser, Llama3JsonParser

__all__ = ["TOOL_CALL_PARSERS", "CallEvent", "CallStream", "ParsedCall", "ParsedTools", "ToolCallParser",
           "DeepSeekV3Parser", "HermesParser", "Llama3JsonParser", "make_parser", "default_tool_call_parser"]

TOOL_CALL_PARSERS = ("deepseek_v3", "hermes", "llama3_json")
_PARSERS = {"deepseek_v3": DeepSeekV3Parser, "hermes": HermesParser, "llama3_json": Llama3JsonParser}


def make_parser(name: str) -> ToolCallParser:
    if name not in _PARSERS:
        raise ValueError(f"unknown tool-call parser {name!r}; choose from {', '.join(TOOL_CALL_PARSERS)}")
    return _PARSERS[name]()


def default_tool_call_parser(chat_template: Optional[str]) -> str:
    """The parser whose format the chat template teaches the model (hermes when the template shows none)."""
    template = chat_template or ""
    if "tool▁calls▁begin" in template or "tool▁call▁begin" in template:
        return "deepseek_v3"
    if "<tool_call>" in template:
        return "hermes"
    if "<|python_tag|>" in template or '"parameters"' in template:
        return "llama3_json"
    return "hermes"
