"""What every tool-call format shares: one incremental reader per answer (`CallStream`) that splits the text into
content and calls as it grows, and a whole answer read by the same reader in one piece.

A reader moves through its format's states (`_<state>` methods, each returning True while it can go on with the text
it has); it decides content with `_release`, starts a call with `_commit` and adds argument text with `_send_args`.
Because the whole answer is the same reader fed everything at once, a stream's deltas add up to the whole answer
by construction; the readers only make decisions that do not depend on where the text was cut into deltas.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Optional

# (call index, the name on the call's first event else None, argument text to append)
CallEvent = tuple[int, Optional[str], str]
MAX_HEAD = 256  # characters a call's name (and what frames it) may take before it is not a call after all


@dataclass
class ParsedCall:
    name: str
    arguments: str  # the arguments' JSON text as the model wrote it (OpenAI's `function.arguments`)


@dataclass
class ParsedTools:
    content: Optional[str]
    calls: list[ParsedCall] = field(default_factory=list)


def partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `marker` (it may become the marker)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:size]):
            return size
    return 0


def first_non_space(text: str, pos: int, extra: str = "") -> int:
    """Index of the first character at or after pos that is neither whitespace nor in `extra`; -1 if none yet."""
    for i in range(pos, len(text)):
        if not (text[i].isspace() or text[i] in extra):
            return i
    return -1


class CallStream:
    """The calls and the content in one answer, read incrementally. `feed(delta)` and `finish()` return
    (content to send now, call events to send now)."""

    def __init__(self, state: str):
        self.text = ""
        self.pos = 0  # where the format's reading goes on
        self.state = state
        self.calls: list[ParsedCall] = []
        self._free = 0  # text before this is content, unless a call was committed
        self._sent = 0  # content characters returned so far
        self._content_end: Optional[int] = None  # the content's end, fixed by the first committed call
        self._events: list[CallEvent] = []
        self._args_sent = 0  # text index up to which the current call's arguments have gone out

    def feed(self, delta: str) -> tuple[str, list[CallEvent]]:
        self.text += delta
        self._read()
        return self._drain()

    def finish(self) -> tuple[str, list[CallEvent]]:
        """End of the answer: with no call committed, everything held back (a partial marker, a call that never
        became one) is content after all; a call in progress keeps the arguments it has (cut off by max_tokens:
        vLLM's rule for a named call too), and what it still held back is dropped with the rest of the call text."""
        self._read()
        if not self.calls:
            self._free = len(self.text)
        return self._drain()

    # ---- for the formats ----------------------------------------------------------------------------------------
    def _read(self) -> None:
        while getattr(self, "_" + self.state)():
            pass

    def _release(self, upto: int) -> None:
        """The text before `upto` is content (while no call has been committed: after one, only calls count)."""
        if self._content_end is None:
            self._free = max(self._free, upto)

    def _find(self, markers: tuple[str, ...]) -> Optional[tuple[int, str]]:
        """The first of `markers` from pos, the text before it released as content; without one, all but a tail that
        may be the beginning of a marker is released and skipped."""
        hits = [(i, m) for m in markers if (i := self.text.find(m, self.pos)) >= 0]
        if hits:
            at, marker = min(hits)
            self._release(at)
            return at, marker
        end = len(self.text) - max(partial_suffix(self.text, m) for m in markers)
        self.pos = max(self.pos, end)
        self._release(self.pos)
        return None

    def _commit(self, name: str, args_from: int = 0) -> None:
        if self._content_end is None:
            self._content_end = self._free
        self.calls.append(ParsedCall(name, ""))
        self._events.append((len(self.calls) - 1, name, ""))
        self._args_sent = args_from

    def _send_args(self, fragment: str) -> None:
        if fragment:
            self.calls[-1].arguments += fragment
            self._events.append((len(self.calls) - 1, None, fragment))

    def _send_args_upto(self, end: int) -> None:
        """The current call's argument text up to `end`, less trailing whitespace (sent with what follows it): a call
        cut off there keeps arguments that end on what the model last wrote."""
        piece = self.text[self._args_sent : end].rstrip()
        self._send_args(piece)
        self._args_sent += len(piece)

    def _drain(self) -> tuple[str, list[CallEvent]]:
        limit = self._free if self._content_end is None else self._content_end
        content = self.text[self._sent : limit] if limit > self._sent else ""
        self._sent = max(self._sent, limit)
        events, self._events = self._events, []
        return content, events


class ToolCallParser(abc.ABC):
    """A format's name and properties; `stream()` reads one answer incrementally, `parse(text)` a whole one."""

    name = ""
    needs_special_tokens = False  # the markers are special tokens: the detokenizer must keep them

    @abc.abstractmethod
    def stream(self) -> CallStream:
        """A reader for one answer."""

    def parse(self, text: str) -> ParsedTools:
        reader = self.stream()
        content, _ = reader.feed(text)
        rest, _ = reader.finish()
        return ParsedTools(content=(content + rest) or None, calls=reader.calls)
