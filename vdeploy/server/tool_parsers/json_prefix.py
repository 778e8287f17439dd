"""An incremental JSON reader for tool-call arguments: it reads a growing text one character at a time and knows, at
every point, whether what it has read is still the beginning of one valid JSON value (RFC 8259, as `json.loads`
reads it, without the NaN / Infinity extension). That is what lets argument text be streamed before the call is
complete: every character it has accepted can be sent, and a syntax error is found at the first character that
makes one, never later.

It does not build the value; it reports where values start and end and the keys of objects (`events`), which is
all the tool-call parsers need to find a call's name and the span of its arguments.
"""

from __future__ import annotations

import json
import re
from typing import Union

_WS = " \t\n\r"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_ESCAPES = '"\\/bfnrt'
_STRING_STOP = re.compile(r'["\\\x00-\x1f]')  # inside a string only these need a look: skip to them at once
# number states in which the number may end (the others need one more character: "-", "1.", "1e", "1e+")
_NUMBER_ENDS = ("zero", "int", "frac", "exp")

# ("key", depth, text) | ("start", depth, index, first char) | ("end", depth, index after the value)
Event = tuple[Union[str, int], ...]


class JsonScanner:
    """Reads one JSON value from `text[start:]`; `feed(text)` again whenever the text has grown.

    A value's depth is the number of containers around it: the top-level value is 0, a member of a top-level object
    is 1. After `feed`, `end` is the index of the first character not read yet: on `failed` that is the offending
    character, on `done` the one after the value.
    """

    def __init__(self, start: int):
        self.end = start
        self.done = False
        self.failed = False
        self.events: list[Event] = []
        self._stack: list[str] = []  # "{" or "[" for each open container
        self._state = "value"
        self._sub = ""  # the number's state, or the rest of a literal being matched
        self._token = 0  # where the string being read starts (its quote)
        self._is_key = False
        self._hex = 0  # \uXXXX digits still to come

    def feed(self, text: str) -> None:
        i, size = self.end, len(text)
        while i < size and not (self.done or self.failed):
            if self._state == "str":  # the bulk of any argument text: jump over the plain characters
                m = _STRING_STOP.search(text, i)
                if m is None:
                    i = size
                    break
                i = m.start()
            if self._step(text, i, text[i]):
                i += 1
        self.end = i

    # ---- one character ------------------------------------------------------------------------------------------
    def _step(self, text: str, i: int, ch: str) -> bool:
        """Read text[i]; False when it was not consumed (a number ended there and the character is read again, or
        it is an error)."""
        state = self._state
        if state == "str":
            if ch == '"':
                return self._string_end(text, i)
            if ch == "\\":
                self._state = "esc"
                return True
            return self._fail()  # a raw control character: json.loads refuses those in strings too
        if state == "esc":
            if ch == "u":
                self._state, self._hex = "hex", 4
            elif ch in _ESCAPES:
                self._state = "str"
            else:
                return self._fail()
            return True
        if state == "hex":
            if ch not in _HEX:
                return self._fail()
            self._hex -= 1
            if not self._hex:
                self._state = "str"
            return True
        if state == "num":
            return self._number(i, ch)
        if state == "lit":
            if ch != self._sub[0]:
                return self._fail()
            self._sub = self._sub[1:]
            if not self._sub:
                self._value_end(i + 1)
            return True
        if ch in _WS:
            return True
        if state in ("value", "arr_first"):
            if state == "arr_first" and ch == "]":
                return self._close(i)
            return self._value_start(i, ch)
        if state in ("obj_first", "obj_key"):
            if ch == '"':
                self._state, self._token, self._is_key = "str", i, True
                return True
            if state == "obj_first" and ch == "}":
                return self._close(i)
            return self._fail()
        if state == "colon":
            if ch != ":":
                return self._fail()
            self._state = "value"
            return True
        # "after": a member of the innermost container is complete
        container = self._stack[-1]
        if ch == ",":
            self._state = "obj_key" if container == "{" else "value"
            return True
        if ch == ("}" if container == "{" else "]"):
            return self._close(i)
        return self._fail()

    def _value_start(self, i: int, ch: str) -> bool:
        depth = len(self._stack)
        if ch == "{" or ch == "[":
            self._stack.append(ch)
            self._state = "obj_first" if ch == "{" else "arr_first"
        elif ch == '"':
            self._state, self._token, self._is_key = "str", i, False
        elif ch == "-" or ch in _DIGITS:
            self._state, self._sub = "num", ("-" if ch == "-" else "zero" if ch == "0" else "int")
        elif ch in _LITERALS:
            self._state, self._sub = "lit", _LITERALS[ch][1:]
        else:
            return self._fail()
        self.events.append(("start", depth, i, ch))
        return True

    def _number(self, i: int, ch: str) -> bool:
        sub = self._sub
        if ch in _DIGITS:
            if sub == "-":
                self._sub = "zero" if ch == "0" else "int"
            elif sub == "zero":
                return self._fail()  # no leading zeros
            elif sub in ("dot", "e", "esign"):
                self._sub = {"dot": "frac", "e": "exp", "esign": "exp"}[sub]
            return True
        if ch == "." and sub in ("zero", "int"):
            self._sub = "dot"
            return True
        if ch in "eE" and sub in ("zero", "int", "frac"):
            self._sub = "e"
            return True
        if ch in "+-" and sub == "e":
            self._sub = "esign"
            return True
        if sub not in _NUMBER_ENDS:
            return self._fail()
        self._value_end(i)  # the number ended before this character: read it again in the new state
        return False

    def _string_end(self, text: str, i: int) -> bool:
        if self._is_key:
            self.events.append(("key", len(self._stack), json.loads(text[self._token : i + 1])))
            self._state = "colon"
        else:
            self._value_end(i + 1)
        return True

    def _close(self, i: int) -> bool:
        self._stack.pop()
        self._value_end(i + 1)
        return True

    def _value_end(self, end: int) -> None:
        self.events.append(("end", len(self._stack), end))
        if self._stack:
            self._state = "after"
        else:
            self.done, self._state = True, "done"

    def _fail(self) -> bool:
        self.failed = True
        return False
