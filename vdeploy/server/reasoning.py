"""Reasoning parsers: split a model's output into the reasoning (`reasoning_content`) and the answer (`content`).

DeepSeek-R1 and its distills think first and then answer: `<think>…</think>answer`. R1's chat template already
opens the block (the generation prompt ends with `<think>\\n`), so the output usually starts inside the reasoning
and contains only the closing tag. The rule is therefore: everything before `</think>` is reasoning (a leading
`<think>` the model writes itself is dropped), everything after it is the answer, and an output that never closes
the block (cut by max_tokens) is all reasoning. Newlines around the reasoning and before the answer are layout, not
text, and are dropped.

Streaming and non-streaming share one incremental splitter, so the streamed deltas always concatenate to exactly
the non-streamed fields, also when a tag arrives split across deltas (`</th` + `ink>`): text that may still turn out
to be (part of) a tag, or trailing newlines that may turn out to precede one, is held back until it is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol

REASONING_PARSERS = ("deepseek_r1", "none")


@dataclass
class ReasoningDelta:
    reasoning: Optional[str] = None
    content: Optional[str] = None

    @property
    def is_empty(self) -> bool:
        return not self.reasoning and not self.content


class StreamingSplitter(Protocol):
    def feed(self, delta_text: str) -> ReasoningDelta: ...

    def finish(self) -> ReasoningDelta: ...


class PassThroughSplitter:
    """No reasoning parser: all text is content."""

    def feed(self, delta_text: str) -> ReasoningDelta:
        return ReasoningDelta(content=delta_text or None)

    def finish(self) -> ReasoningDelta:
        return ReasoningDelta()


def _partial_tag_suffix(text: str, start: int, tag: str) -> int:
    """Length of the longest suffix of text[start:] that is a proper prefix of `tag`."""
    longest = min(len(tag) - 1, len(text) - start)
    for size in range(longest, 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkTagSplitter:
    """Incremental `<think>…</think>` splitter (see the module docstring for the rule)."""

    def __init__(self, open_tag: str = "<think>", close_tag: str = "</think>"):
        self.open_tag = open_tag
        self.close_tag = close_tag
        self._text = ""
        self._close_at: Optional[int] = None  # index of the closing tag once seen
        self._scan_from = 0  # the closing tag cannot start before this index (already searched)
        self._reasoning_sent_to: Optional[int] = None  # absolute index up to which reasoning was emitted
        self._content_sent_to: Optional[int] = None

    def _reasoning_start(self, final: bool) -> Optional[int]:
        """Index where the reasoning text starts, or None while the opening could still be a partial `<think>`."""
        text = self._text
        lead = len(text) - len(text.lstrip())
        head = text[lead : lead + len(self.open_tag)]
        if head == self.open_tag:
            return lead + len(self.open_tag)
        if not final and len(head) < len(self.open_tag) and self.open_tag.startswith(head):
            return None  # empty so far, or "<thi": wait
        return 0

    def _find_close(self, start: int) -> None:
        if self._close_at is not None:
            return
        found = self._text.find(self.close_tag, max(start, self._scan_from))
        if found >= 0:
            self._close_at = found
        else:
            self._scan_from = max(start, len(self._text) - len(self.close_tag) + 1)

    def _emit(self, final: bool) -> ReasoningDelta:
        text = self._text
        start = self._reasoning_start(final)
        if start is None:
            return ReasoningDelta()
        self._find_close(start)
        out = ReasoningDelta()

        # reasoning: [lo, hi) with surrounding newlines dropped
        if self._close_at is not None:
            hi = self._close_at
        else:
            hi = len(text) if final else len(text) - _partial_tag_suffix(text, start, self.close_tag)
        lo = start
        while lo < hi and text[lo] == "\n":
            lo += 1
        while hi > lo and text[hi - 1] == "\n":
            hi -= 1
        sent = self._reasoning_sent_to if self._reasoning_sent_to is not None else lo
        if hi > sent:
            out.reasoning = text[sent:hi]
            self._reasoning_sent_to = hi

        # content: everything after the closing tag, leading newlines dropped
        if self._close_at is not None:
            lo = self._close_at + len(self.close_tag)
            while lo < len(text) and text[lo] == "\n":
                lo += 1
            sent = self._content_sent_to if self._content_sent_to is not None else lo
            if len(text) > sent:
                out.content = text[sent:]
                self._content_sent_to = len(text)
        return out

    def feed(self, delta_text: str) -> ReasoningDelta:
        if not delta_text:
            return ReasoningDelta()
        self._text += delta_text
        return self._emit(final=False)

    def finish(self) -> ReasoningDelta:
        return self._emit(final=True)


class ReasoningParser:
    """Factory for per-choice splitters; `split` is the non-streaming form of the same rule."""

    def __init__(self, name: str):
        if name not in REASONING_PARSERS:
            raise ValueError(f"unknown reasoning parser {name!r}; choose from {', '.join(REASONING_PARSERS)}")
        self.name = name

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    def new_stream(self) -> StreamingSplitter:
        return ThinkTagSplitter() if self.enabled else PassThroughSplitter()

    def split(self, text: str) -> ReasoningDelta:
        splitter = self.new_stream()
        first, last = splitter.feed(text), splitter.finish()
        reasoning = (first.reasoning or "") + (last.reasoning or "")
        content = (first.content or "") + (last.content or "")
        return ReasoningDelta(reasoning=reasoning or None, content=content or None)


def default_reasoning_parser(model_name_or_path: str, architecture: str | None = None) -> str:
    """deepseek_r1 for DeepSeek-R1 and its distills (they all think in <think> blocks), none otherwise."""
    name = model_name_or_path.lower().replace("_", "-")
    if "deepseek-r1" in name or "r1-distill" in name or "deepseek-reasoner" in name:
        return "deepseek_r1"
    if architecture == "DeepseekV3ForCausalLM" and "-r1" in name:
        return "deepseek_r1"
    return "none"


def never_closes_thinking(tokenizer) -> bool:
    """True when nothing suggests the model writes `</think>`: no such token in its vocabulary and no mention in its
    chat template. With deepseek_r1 such a model's every answer would be reasoning_content (an unclosed block)."""
    if tokenizer is None:
        return False  # nothing to judge by
    template = getattr(tokenizer, "chat_template", None) or ""
    return tokenizer.token_to_id("</think>") is None and "</think>" not in template


def reasoning_parser_warning(parser: str, tokenizer) -> Optional[str]:
    if parser == "deepseek_r1" and never_closes_thinking(tokenizer):
        return ("--reasoning-parser deepseek_r1, but this model has no </think> token and its chat template never "
                "mentions one: it probably never closes a think block, so every answer would arrive as "
                "reasoning_content with an empty content; use --reasoning-parser none unless it really thinks")
    return None
