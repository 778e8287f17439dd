"""The formats that write a call as one JSON object, read incrementally:

  hermes       Qwen2.5 / R1-Distill-Qwen:  <tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>  (a tag per call)
  llama3_json  Llama-3.1 / R1-Distill-Llama:  [<|python_tag|>]{"name": …, "parameters": {…}}; {…}  (the whole answer)

The object is read with the incremental JSON reader. A call is committed (its name sent) once the object has given
both a non-empty string "name" and the start of an arguments object (`{`), in either order; from then the arguments
stream as they are read, up to their closing `}`. Arguments given as a string holding the JSON object (some models
do) are sent whole once that string is complete and decodes to an object. The first "name" and the first arguments
key count; other keys are read over.
"""

from __future__ import annotations

import abc
import json
from typing import Optional

from vdeploy.server.tool_parsers.base import CallStream, ToolCallParser, first_non_space
from vdeploy.server.tool_parsers.json_prefix import JsonScanner

HERMES_OPEN = "<tool_call>"
PYTHON_TAG = "<|python_tag|>"


class _ObjectCall:
    """One call object from its `{`: its name and the span of its arguments, as far as read so far."""

    def __init__(self, start: int, args_keys: tuple[str, ...]):
        self.scanner = JsonScanner(start)
        self.args_keys = args_keys
        self.name: Optional[str] = None
        self.args_start: Optional[int] = None  # the arguments object's `{`
        self.args_end: Optional[int] = None  # just after its `}`
        self.args_text: Optional[str] = None  # arguments given as a JSON string: the object's text it holds
        self._key: Optional[str] = None  # the member being read
        self._role: Optional[str] = None  # what that member's value is to the call: "name", "args", "args_str"
        self._value_at = 0
        self._seen: set[str] = set()

    @property
    def ready(self) -> bool:
        return self.name is not None and (self.args_start is not None or self.args_text is not None)

    def args_limit(self) -> int:
        return self.args_end if self.args_end is not None else self.scanner.end

    def read(self, text: str) -> None:
        self.scanner.feed(text)
        for event in self.scanner.events:
            if event[1] != 1:  # only the call object's own members matter
                continue
            if event[0] == "key":
                self._key = event[2]
            elif event[0] == "start":
                self._start(event[2], event[3])
            else:
                self._end(text, event[2])
        self.scanner.events.clear()

    def _start(self, at: int, first: str) -> None:
        self._value_at, self._role = at, None
        if self._key == "name" and "name" not in self._seen:
            self._seen.add("name")
            self._role = "name" if first == '"' else None
        elif self._key in self.args_keys and "args" not in self._seen:
            self._seen.add("args")
            if first == "{":
                self._role, self.args_start = "args", at
            elif first == '"':
                self._role = "args_str"

    def _end(self, text: str, end: int) -> None:
        value = text[self._value_at : end]
        if self._role == "name":
            name = json.loads(value)
            self.name = name if name.strip() else None
        elif self._role == "args":
            self.args_end = end
        elif self._role == "args_str":
            inner = json.loads(value)
            try:
                is_object = isinstance(json.loads(inner), dict)
            except ValueError:
                is_object = False
            self.args_text = inner.strip() if is_object else None
        self._role = None


class _ObjectCalls(CallStream, abc.ABC):
    """A reader whose calls are JSON objects; a format adds how calls are found and what follows one."""

    args_keys: tuple[str, ...] = ()

    def __init__(self, state: str):
        super().__init__(state)
        self._call: Optional[_ObjectCall] = None
        self._committed = False  # the current object's call has been committed

    def _open(self) -> bool:
        start = first_non_space(self.text, self.pos)
        if start < 0:
            return False
        if self.text[start] != "{":
            return self._no_call()
        self._call, self._committed = _ObjectCall(start, self.args_keys), False
        self.pos, self.state = start, "object"
        return True

    def _object(self) -> bool:
        call = self._call
        call.read(self.text)
        if not self._committed and call.ready:
            self._committed = True
            self._commit(call.name, args_from=call.args_start or 0)
            if call.args_text is not None:
                self._send_args(call.args_text)
        if self._committed and call.args_start is not None:
            self._send_args_upto(call.args_limit())
        scanner = call.scanner
        if not (scanner.done or scanner.failed):
            return False
        # the object is complete, or broken at scanner.end: a committed call keeps the arguments it has
        self.pos = scanner.end
        return self._call_done() if self._committed else self._no_call()

    @abc.abstractmethod
    def _call_done(self) -> bool:
        """A committed call's object ended at pos: what may follow it in this format."""

    @abc.abstractmethod
    def _no_call(self) -> bool:
        """The object at hand is no call: what its text becomes in this format."""


class HermesStream(_ObjectCalls):
    args_keys = ("arguments",)

    def __init__(self) -> None:
        super().__init__("content")
        self._call_at = 0  # just after the current <tool_call>: where reading resumes if it holds no call

    def _content(self) -> bool:
        hit = self._find((HERMES_OPEN,))
        if hit is None:
            return False
        self.pos = self._call_at = hit[0] + len(HERMES_OPEN)
        self.state = "open"
        return True

    def _call_done(self) -> bool:
        self.state = "content"  # </tool_call> and anything up to the next <tool_call> are no part of a call
        return True

    def _no_call(self) -> bool:
        self.pos, self.state = self._call_at, "content"
        return True


class Llama3JsonStream(_ObjectCalls):
    """A call is the whole answer: it starts with the python tag or `{` (after whitespace), or it is all content."""

    args_keys = ("parameters", "arguments")

    def __init__(self) -> None:
        super().__init__("lead")

    def _lead(self) -> bool:
        start = first_non_space(self.text, self.pos)
        if start < 0:
            return False
        rest = self.text[start:]
        if rest.startswith(PYTHON_TAG):
            self.pos, self.state = start + len(PYTHON_TAG), "open"
        elif PYTHON_TAG.startswith(rest):
            return False
        elif rest[0] == "{":
            self.pos, self.state = start, "open"
        else:
            self.state = "plain"
        return True

    def _plain(self) -> bool:
        self._release(len(self.text))
        return False

    def _between(self) -> bool:
        """After a call: `;` or whitespace, then another call object; anything else ends the calls."""
        start = first_non_space(self.text, self.pos, ";")
        if start < 0:
            return False
        self.pos, self.state = start, ("open" if self.text[start] == "{" else "drop")
        return True

    def _drop(self) -> bool:
        return False

    def _call_done(self) -> bool:
        self.state = "between"
        return True

    def _no_call(self) -> bool:
        self.state = "drop" if self.calls else "plain"
        return True


class HermesParser(ToolCallParser):
    name = "hermes"

    def stream(self) -> HermesStream:
        return HermesStream()


class Llama3JsonParser(ToolCallParser):
    name = "llama3_json"

    def stream(self) -> Llama3JsonStream:
        return Llama3JsonStream()
