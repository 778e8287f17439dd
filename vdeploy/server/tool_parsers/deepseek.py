"""DeepSeek-V3 / R1's native tool-call format, read incrementally:

  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\\n```json\\n{ARGS}\\n```<｜tool▁call▁end｜>
  …more calls…<｜tool▁calls▁end｜>          (V3.1 writes <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{ARGS}<｜tool▁call▁end｜>)

A call is committed (its name sent) when its arguments open with `{` after a complete name and fence; the argument
text then streams as far as it is valid JSON, and the call ends where the arguments object closes (what follows, the
fence and end markers, frames it). The markers are special tokens, kept in the text for this parser.
"""

from __future__ import annotations

from typing import Optional

from vdeploy.server.tool_parsers.base import MAX_HEAD, CallStream, ToolCallParser, first_non_space, partial_suffix
from vdeploy.server.tool_parsers.json_prefix import JsonScanner

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
SEP = "<｜tool▁sep｜>"


class DeepSeekV3Stream(CallStream):
    def __init__(self) -> None:
        super().__init__("content")
        self._call_at = 0  # just after the current call's begin marker: where reading resumes if it is no call
        self._name = ""
        self._scanner: Optional[JsonScanner] = None

    def _content(self) -> bool:
        hit = self._find((CALLS_BEGIN, CALL_BEGIN))
        if hit is None:
            return False
        at, marker = hit
        self.pos = at + len(marker)
        if marker == CALL_BEGIN:
            self._call_at, self.state = self.pos, "head"
        else:
            self.state = "section"
        return True

    def _section(self) -> bool:
        """Inside <｜tool▁calls▁begin｜>, up to a call's begin marker: held back (content only if no call comes)."""
        at = self.text.find(CALL_BEGIN, self.pos)
        if at < 0:
            self.pos = max(self.pos, len(self.text) - partial_suffix(self.text, CALL_BEGIN))
            return False
        self.pos = self._call_at = at + len(CALL_BEGIN)
        self.state = "head"
        return True

    def _head(self) -> bool:
        """`function` (R1) or the name (V3.1), up to <｜tool▁sep｜>."""
        at = self.text.find(SEP, self.pos)
        end = at if at >= 0 else len(self.text) - partial_suffix(self.text, SEP)
        head = self.text[self.pos : end]
        if "<" in head or "\n" in head.strip() or len(head) > MAX_HEAD:
            return self._no_call()
        if at < 0:
            return False
        if not head.strip():
            return self._no_call()
        self.pos = at + len(SEP)
        if head.strip() == "function":
            self.state = "r1_name"
        else:
            self._name, self.state = head.strip(), "v31_args"
        return True

    def _r1_name(self) -> bool:
        """R1's NAME, ended by a newline. A `{` first is V3.1's format for a function named `function`."""
        start = first_non_space(self.text, self.pos)
        if start < 0:
            return False
        if self.text[start] == "{":
            self._name = "function"
            return self._open_args(start)
        newline = self.text.find("\n", start)
        name = self.text[start : newline if newline >= 0 else len(self.text)]
        if "<" in name or len(name) > MAX_HEAD:
            return self._no_call()
        if newline < 0:
            return False
        self._name, self.pos, self.state = name.strip(), newline + 1, "fence"
        return True

    def _fence(self) -> bool:
        """```json (or a bare ```) and then the arguments' `{`."""
        rest = self.text[self.pos :].lstrip()
        if len(rest) < 3:
            return False if "```".startswith(rest) else self._no_call()
        if not rest.startswith("```"):
            return self._no_call()
        tag = rest[3:]
        if tag and "json".startswith(tag) and len(tag) < 4:
            return False  # "```js": wait for the rest of the language tag
        if tag.startswith("json"):
            tag = tag[4:]
        body = tag.lstrip()
        if not body:
            return False
        if body[0] != "{":
            return self._no_call()
        return self._open_args(len(self.text) - len(body))

    def _v31_args(self) -> bool:
        start = first_non_space(self.text, self.pos)
        if start < 0:
            return False
        return self._open_args(start) if self.text[start] == "{" else self._no_call()

    def _open_args(self, at: int) -> bool:
        self._commit(self._name, args_from=at)
        self._scanner, self.pos, self.state = JsonScanner(at), at, "args"
        return True

    def _args(self) -> bool:
        scanner = self._scanner
        scanner.feed(self.text)
        self._send_args_upto(scanner.end)
        if not (scanner.done or scanner.failed):
            return False
        # complete, or broken at scanner.end: the call keeps the arguments it has; look for the next call from there
        self.pos, self.state = scanner.end, "content"
        return True

    def _no_call(self) -> bool:
        """Not a call after all: read on from just after its begin marker (as content while no call is committed)."""
        self.pos, self.state = self._call_at, "content"
        return True


class DeepSeekV3Parser(ToolCallParser):
    name = "deepseek_v3"
    needs_special_tokens = True

    def stream(self) -> DeepSeekV3Stream:
        return DeepSeekV3Stream()
