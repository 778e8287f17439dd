"""Tool-call parsers: find the tool calls in a model's answer text, each model family in its own native format.

  deepseek_v3  DeepSeek-V3 / R1:  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
               ```json\\n{ARGS}\\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>  (V3.1 writes NAME<｜tool▁sep｜>{ARGS})
  hermes       Qwen2.5 / R1-Distill-Qwen (Hermes style):  <tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>
  llama3_json  Llama-3.1 / R1-Distill-Llama:  [<|python_tag|>]{"name": …, "parameters": {…}} (several joined by ;)

A parser never raises on what a model wrote: output that does not parse is plain content with no tool calls. The
content before a call is the text as written, untrimmed, streamed or whole.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

TOOL_CALL_PARSERS = ("deepseek_v3", "hermes", "llama3_json")


@dataclass
class ParsedCall:
    name: str
    arguments: str  # JSON text of the arguments object, as OpenAI returns it


@dataclass
class ParsedTools:
    content: Optional[str]
    calls: list[ParsedCall] = field(default_factory=list)


def _arguments_text(args: object) -> Optional[str]:
    """The arguments as JSON text, or None when they are not a JSON object."""
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return json.dumps(args, ensure_ascii=False)


def _plain(text: str) -> ParsedTools:
    return ParsedTools(content=text or None)


def _before(text: str, start: int) -> Optional[str]:
    """The content before a call, exactly as written (not trimmed), as vLLM's parsers return it: a stream has already
    sent this text as content deltas (chat_tools.py), so the whole answer must say the same."""
    return text[:start] or None


class DeepSeekV3Parser:
    name = "deepseek_v3"
    start_markers = ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>")
    needs_special_tokens = True  # the markers are special tokens: the detokenizer must keep them
    _CALL = re.compile(
        r"<｜tool▁call▁begin｜>\s*(?:function\s*<｜tool▁sep｜>\s*(?P<name>[^\n<]+?)\s*\n\s*```(?:json)?\s*(?P<args>.*?)\s*```"
        r"|(?P<name2>[^<\n]+?)\s*<｜tool▁sep｜>\s*(?P<args2>.*?))\s*<｜tool▁call▁end｜>",
        re.DOTALL,
    )

    def parse(self, text: str) -> ParsedTools:
        start = min((i for i in (text.find(m) for m in self.start_markers) if i >= 0), default=-1)
        if start < 0:
            return _plain(text)
        calls = []
        for m in self._CALL.finditer(text, start):
            name = (m.group("name") or m.group("name2") or "").strip()
            args = _arguments_text(m.group("args") if m.group("name") else m.group("args2"))
            if not name or args is None:
                return _plain(text)
            calls.append(ParsedCall(name, args))
        if not calls:
            return _plain(text)
        return ParsedTools(content=_before(text, start), calls=calls)


class HermesParser:
    name = "hermes"
    start_markers = ("<tool_call>",)
    needs_special_tokens = False
    _CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)

    def parse(self, text: str) -> ParsedTools:
        start = text.find("<tool_call>")
        if start < 0:
            return _plain(text)
        calls = []
        for m in self._CALL.finditer(text, start):
            try:
                obj = json.loads(m.group(1))
            except ValueError:
                return _plain(text)
            call = _call_from_object(obj, "arguments")
            if call is None:
                return _plain(text)
            calls.append(call)
        if not calls:
            return _plain(text)
        return ParsedTools(content=_before(text, start), calls=calls)


class Llama3JsonParser:
    name = "llama3_json"
    start_markers = ("<|python_tag|>", "{")  # "{" only counts at the very start of the answer
    needs_special_tokens = False

    def parse(self, text: str) -> ParsedTools:
        body = text.strip()
        if body.startswith("<|python_tag|>"):
            body = body[len("<|python_tag|>"):].strip()
        if not body.startswith("{"):
            return _plain(text)
        decoder = json.JSONDecoder()
        calls, pos = [], 0
        while pos < len(body):
            try:
                obj, end = decoder.raw_decode(body, pos)
            except ValueError:
                return _plain(text)
            call = _call_from_object(obj, "parameters") or _call_from_object(obj, "arguments")
            if call is None:
                return _plain(text)
            calls.append(call)
            pos = end
            while pos < len(body) and body[pos] in " \t\n;":
                pos += 1
        return ParsedTools(content=None, calls=calls) if calls else _plain(text)


def _call_from_object(obj: object, args_key: str) -> Optional[ParsedCall]:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or args_key not in obj:
        return None
    args = _arguments_text(obj[args_key])
    return None if args is None else ParsedCall(obj["name"], args)


def make_parser(name: str):
    parsers = {"deepseek_v3": DeepSeekV3Parser, "hermes": HermesParser, "llama3_json": Llama3JsonParser}
    if name not in parsers:
        raise ValueError(f"unknown tool-call parser {name!r}; choose from {', '.join(TOOL_CALL_PARSERS)}")
    return parsers[name]()


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
