"""Tool calls out of a chat answer, whole or streamed, in OpenAI's shape.

By tool_choice (see guided_request.py):
  named     the answer is the arguments object (grammar-enforced): one call; streamed as it is generated. Cut off by
            max_tokens it is still the call, with the partial arguments and finish_reason "length" (as vLLM):
            those arguments have already gone out as deltas, so the whole answer must say the same.
  required  the answer is a JSON array of {"name", "parameters"} (grammar-enforced); reported when complete.
  auto      the model's native format, read by a tool-call parser (tool_parsers/) as it is generated: content
            streams up to a call, a call's first delta carries its index, id, type and name (arguments ""), the
            next ones pieces of its arguments text as the model writes them. The whole answer is the same reader
            fed the whole text, so the deltas add up to exactly it; tool_parsers/__init__.py says when a call counts
            as one and what an unfinished or malformed one becomes.
  none      content only.
Otherwise anything that does not parse stays plain content: a malformed call is the model's answer, never a server
error. parallel_tool_calls=false keeps the first call only (OpenAI's and vLLM's rule), whatever the model wrote: the
later ones are neither streamed nor returned. `finish_reason` becomes "tool_calls" only when the list of calls is
non-empty.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from vdeploy.server.guided_request import ToolPlan
from vdeploy.server.tool_parsers import CallEvent, ParsedCall, ParsedTools
from vdeploy.server.tool_parsers.base import partial_suffix

ToolCalls = list[dict[str, Any]]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def call_dict(call: ParsedCall, call_id: Optional[str] = None) -> dict[str, Any]:
    return {"id": call_id or new_call_id(), "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def delta_groups(deltas: ToolCalls) -> list[ToolCalls]:
    """The tool-call deltas of one step split into chunks that name each call at most once: a call's first delta
    (its name, arguments "") and its first argument piece go out in two chunks, as OpenAI sends them; clients that
    merge a chunk's entries by index would otherwise see one call twice in a chunk."""
    groups: list[ToolCalls] = []
    for d in deltas:
        if not groups or any(g["index"] == d["index"] for g in groups[-1]):
            groups.append([])
        groups[-1].append(d)
    return groups


def finish_reason(reason: Optional[str], calls: Optional[ToolCalls]) -> Optional[str]:
    return "tool_calls" if calls and reason == "stop" else reason


class ToolCallExtractor:
    """One per choice. `final(text)` for whole answers; `feed(delta)` / `finish()` for streams."""

    def __init__(self, plan: ToolPlan, parser: Any = None, strip_text: tuple[str, ...] = ()):
        self.plan = plan
        self.parser = parser
        self.strip_text = tuple(s for s in strip_text if s)  # e.g. the EOS token text when special tokens are kept
        self._text = ""  # all content seen
        self._named_id: Optional[str] = None  # named: the streamed call's id once its first delta went out
        self.calls: Optional[ToolCalls] = None  # set by finish()
        # auto: the parser's reader for this answer, the ids given to its calls, a tail that may be a strip text
        self._reader = parser.stream() if plan.mode == "auto" and parser is not None else None
        self._ids: list[str] = []
        self._unclean = ""

    @property
    def active(self) -> bool:
        return self.plan.mode != "none"

    def _clean(self, text: str) -> str:
        for s in self.strip_text:
            text = text.replace(s, "")
        return text

    # ---- whole answers ------------------------------------------------------------------------------------------
    def final(self, text: Optional[str]) -> tuple[Optional[str], Optional[ToolCalls]]:
        parsed = self._parse(self._clean(text or ""))
        calls = [call_dict(c) for c in parsed.calls] or None
        return parsed.content, calls

    def _parse(self, text: str) -> ParsedTools:
        parsed = self._parse_all(text)
        parsed.calls = parsed.calls[: self.plan.max_calls]
        return parsed

    def _parse_all(self, text: str) -> ParsedTools:
        mode = self.plan.mode
        if mode == "named":
            return _named(text, self.plan.named)
        if mode == "required":
            return _required(text)
        if mode == "auto" and self.parser is not None:
            return self.parser.parse(text)
        return ParsedTools(content=text or None)

    # ---- streams ------------------------------------------------------------------------------------------------
    def feed(self, delta: Optional[str]) -> tuple[Optional[str], ToolCalls]:
        """(content to stream now, tool-call deltas to stream now)."""
        if not delta:
            return None, []
        self._text += delta
        mode = self.plan.mode
        if mode == "named":
            return None, self._named_delta(self._clean(delta))
        if mode == "required":
            return None, []  # the array is reported whole at the end
        if self._reader is not None:
            content, events = self._reader.feed(self._clean_stream(delta))
            return content or None, self._call_deltas(events)
        return delta, []

    def finish(self) -> tuple[Optional[str], ToolCalls]:
        text = self._clean(self._text)
        mode = self.plan.mode
        if mode == "named":
            parsed = _named(text, self.plan.named)
            self.calls = [call_dict(parsed.calls[0], self._named_id)] if parsed.calls else None
            if self.calls and self._named_id is None:  # no delta went out for it: send it whole
                return None, [{"index": 0, **self.calls[0]}]
            return None, []
        if mode == "required":  # the array, parsed whole; not JSON after all: the text is content
            parsed = self._parse(text)
            self.calls = [call_dict(c) for c in parsed.calls] or None
            if not self.calls:
                return parsed.content, []
            return None, [{"index": i, **c} for i, c in enumerate(self.calls)]
        if self._reader is None:  # none, or auto without a parser
            return None, []
        content, events = self._reader.feed(self._unclean)  # a held tail that did not become a strip text after all
        self._unclean = ""
        more, final_events = self._reader.finish()
        deltas = self._call_deltas(events + final_events)
        calls = self._reader.calls[: self.plan.max_calls]
        self.calls = [call_dict(c, self._ids[i]) for i, c in enumerate(calls)] or None
        return (content + more) or None, deltas

    def _clean_stream(self, delta: str) -> str:
        """The delta without the strip texts, one split across deltas included: a tail that may begin one waits."""
        if not self.strip_text:
            return delta
        text = self._clean(self._unclean + delta)
        hold = max(partial_suffix(text, s) for s in self.strip_text)
        self._unclean = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def _call_deltas(self, events: list[CallEvent]) -> ToolCalls:
        """OpenAI's tool-call deltas for the reader's events: a call's first one has its id, type and name with
        arguments "", the next ones its argument pieces (one per call per feed); calls past max_calls are dropped."""
        deltas: ToolCalls = []
        limit = self.plan.max_calls
        for index, name, arguments in events:
            if limit is not None and index >= limit:
                continue
            if name is not None:
                self._ids.append(new_call_id())
                deltas.append({"index": index, "id": self._ids[index], "type": "function",
                               "function": {"name": name, "arguments": ""}})
            elif deltas and deltas[-1]["index"] == index and "id" not in deltas[-1]:
                deltas[-1]["function"]["arguments"] += arguments
            else:
                deltas.append({"index": index, "function": {"arguments": arguments}})
        return deltas

    def _named_delta(self, delta: str) -> ToolCalls:
        if not delta:
            return []
        if self._named_id is None:
            self._named_id = new_call_id()
            return [{"index": 0, "id": self._named_id, "type": "function",
                     "function": {"name": self.plan.named, "arguments": delta}}]
        return [{"index": 0, "function": {"arguments": delta}}]


def _named(text: str, name: Optional[str]) -> ParsedTools:
    """The answer is the function's arguments, parsed or not (cut off by max_tokens): the text as generated, so the
    streamed argument deltas concatenate to exactly this. No text (e.g. cut off while reasoning): no call."""
    if not text or not name:
        return ParsedTools(content=text or None)
    return ParsedTools(content=None, calls=[ParsedCall(name, text)])


def _required(text: str) -> ParsedTools:
    try:
        items = json.loads(text)
    except ValueError:
        return ParsedTools(content=text or None)
    calls = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return ParsedTools(content=text or None)
        args = item.get("parameters", item.get("arguments", {}))
        if not isinstance(args, dict):
            return ParsedTools(content=text or None)
        calls.append(ParsedCall(item["name"], json.dumps(args, ensure_ascii=False)))
    return ParsedTools(content=None, calls=calls) if calls else ParsedTools(content=text or None)


# ---- the prompt side --------------------------------------------------------------------------------------------
_CALL_FORMATS = {
    "deepseek_v3": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>FUNCTION_NAME\n```json\n"
                   "{ARGUMENTS}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "hermes": '<tool_call>\n{"name": "FUNCTION_NAME", "arguments": {ARGUMENTS}}\n</tool_call>',
    "llama3_json": '{"name": "FUNCTION_NAME", "parameters": {ARGUMENTS}}',
}


def tools_system_prompt(tools: list[dict[str, Any]], parser_name: str) -> str:
    """For a chat template that does not render `tools` itself (DeepSeek-V3/R1's stock template): the tools and the
    call format the parser reads, as a system message."""
    listing = json.dumps([t.get("function", t) for t in tools], ensure_ascii=False)
    return (f"You can call these functions:\n{listing}\nTo call a function, answer with exactly:\n"
            f"{_CALL_FORMATS[parser_name]}")


def adapt_messages(messages: list[dict[str, Any]], tools: Optional[list[dict[str, Any]]], chat_template: str,
                   parser_name: Optional[str]) -> list[dict[str, Any]]:
    """Fit OpenAI-shaped messages to what the chat template expects: tool-call arguments as an object where the
    template writes them with `tojson` (Qwen2.5, Llama-3.1), as the JSON text otherwise (DeepSeek concatenates them);
    the tool list as a system message where a tool-calling template has no place for it."""
    wants_object = "arguments|tojson" in chat_template.replace(" ", "")
    out = []
    for m in messages:
        if m.get("tool_calls") and wants_object:
            calls = []
            for call in m["tool_calls"]:
                fn = dict(call.get("function") or {})
                if isinstance(fn.get("arguments"), str):
                    try:
                        fn["arguments"] = json.loads(fn["arguments"])
                    except ValueError:
                        pass  # not JSON: the template gets the text as it came
                calls.append({**call, "function": fn})
            m = {**m, "tool_calls": calls}
        out.append(m)
    # only for a template that knows tool calls (it shows their markers) but not the tool list: a template with no
    # tool support at all says nothing about the format, and a long listing could crowd out a short context
    knows_calls = any(marker in chat_template for marker in ("tool▁call", "<tool_call>", "<|python_tag|>"))
    if tools and parser_name and knows_calls and "tools" not in chat_template:
        prompt = tools_system_prompt(tools, parser_name)
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out
