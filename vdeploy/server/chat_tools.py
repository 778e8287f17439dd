"""Tool calls out of a chat answer, whole or streamed, in OpenAI's shape.

By tool_choice (see guided_request.py):
  named     the answer is the arguments object (grammar-enforced): one call; streamed as it is generated. Cut off by
            max_tokens it is still the call, with the partial arguments and finish_reason "length" (as vLLM):
            those arguments have already gone out as deltas, so the whole answer must say the same.
  required  the answer is a JSON array of {"name", "parameters"} (grammar-enforced); reported when complete.
  auto      the model's native format, read by a tool-call parser; streamed content stops at the first marker of
            a call, the rest is held back and parsed at the end. The content before a call is the text as written,
            untrimmed, whole or streamed: the deltas join to exactly the whole answer's content.
  none      content only.
Otherwise anything that does not parse stays plain content: a malformed call is the model's answer, never a server
error. parallel_tool_calls=false keeps the first call only (OpenAI's and vLLM's rule), whatever the model wrote.
`finish_reason` becomes "tool_calls" only when the list of calls is non-empty.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Optional

from vdeploy.server.guided_request import ToolPlan
from vdeploy.server.tool_parsers import ParsedCall, ParsedTools

ToolCalls = list[dict[str, Any]]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def call_dict(call: ParsedCall, call_id: Optional[str] = None) -> dict[str, Any]:
    return {"id": call_id or new_call_id(), "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def finish_reason(reason: Optional[str], calls: Optional[ToolCalls]) -> Optional[str]:
    return "tool_calls" if calls and reason == "stop" else reason


class ToolCallExtractor:
    """One per choice. `final(text)` for whole answers; `feed(delta)` / `finish()` for streams."""

    def __init__(self, plan: ToolPlan, parser: Any = None, strip_text: tuple[str, ...] = ()):
        self.plan = plan
        self.parser = parser
        self.strip_text = tuple(s for s in strip_text if s)  # e.g. the EOS token text when special tokens are kept
        self._text = ""  # all content seen
        self._sent = 0  # content characters already streamed as content
        self._held = False  # auto: a call has started, the rest is held back
        self._named_id: Optional[str] = None  # named: the streamed call's id once its first delta went out
        self.calls: Optional[ToolCalls] = None  # set by finish()

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
        if mode == "auto" and self.parser is not None:
            return self._auto_content(), []
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
        if mode == "none" or (mode == "auto" and self.parser is None):
            return None, []
        parsed = self._parse(text)
        if not parsed.calls:  # not a call after all: the held-back text is content
            rest = self._text[self._sent :]
            self._sent = len(self._text)
            return self._clean(rest) or None, []
        self.calls = [call_dict(c) for c in parsed.calls]
        return None, [{"index": i, **c} for i, c in enumerate(self.calls)]

    def _named_delta(self, delta: str) -> ToolCalls:
        if not delta:
            return []
        if self._named_id is None:
            self._named_id = new_call_id()
            return [{"index": 0, "id": self._named_id, "type": "function",
                     "function": {"name": self.plan.named, "arguments": delta}}]
        return [{"index": 0, "function": {"arguments": delta}}]

    def _auto_content(self) -> Optional[str]:
        if self._held:
            return None
        text = self._text
        markers = self.parser.start_markers
        if self.parser.name == "llama3_json":  # a call is the whole answer: decide on its first characters
            head = text.lstrip()
            if not head:
                return None
            if head.startswith("{") or head.startswith("<|python_tag|>") or "<|python_tag|>".startswith(head):
                self._held = True
                return None
            markers = ("<|python_tag|>",)
        found = [i for i in (text.find(m, self._sent) for m in markers) if i >= 0]
        if found:
            end, self._held = min(found), True
        else:  # hold back a tail that may be the start of a marker
            end = len(text) - max((_partial_suffix(text, m) for m in markers), default=0)
        out = text[self._sent : max(end, self._sent)]
        self._sent = max(end, self._sent)
        return self._clean(out) or None


def _partial_suffix(text: str, marker: str) -> int:
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


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
