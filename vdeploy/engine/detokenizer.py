"""Incremental detokenization with stop strings.

Decoding token by token breaks multi-byte UTF-8 characters (an emoji can span several byte-level tokens) and drops
the leading space that some tokenizers only render in context. So each new token is decoded inside a small window
of preceding tokens, and text is released only once the window decodes to something that does not end in an
incomplete character (U+FFFD). While stop strings are active, the last `len(longest stop) - 1` characters are held
back, so a stop string that arrives split over several tokens never leaks to a streaming client.
"""

from __future__ import annotations

from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.engine.tokenizer import Tokenizer

# Prompt tokens used as decoding context for the first generated tokens (leading-space handling).
_PROMPT_CONTEXT_TOKENS = 5
_INCOMPLETE_CHAR = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Tokenizer | None, prompt_token_ids: list[int], params: SamplingParams):
        self.tokenizer = tokenizer
        self.skip_special_tokens = params.skip_special_tokens
        self.stop = [s for s in params.stop if s]
        self.include_stop = params.include_stop_str_in_output
        self.min_tokens = params.min_tokens
        self._tokens = list(prompt_token_ids[-_PROMPT_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._tokens)
        self.output_text = ""
        self._emitted = 0  # characters of output_text already handed out
        self._stop_holdback = max((len(s) for s in self.stop), default=1) - 1 if not self.include_stop else 0
        self._stopped = False
        # of the tokens given to the update that matched a stop string, how many came after the one that completed
        # it (a speculative step emits several tokens at once): they are not part of the answer
        self.tokens_after_stop = 0

    def update(self, new_token_ids: list[int], num_output_tokens: int, ended_by_token: bool = False) -> str | None:
        """Add generated tokens; returns the stop string that ended the output, if any (text is truncated).
        ended_by_token: the last token ended the output (an end id, a stop_token_ids entry): its text is no part of
        the answer unless include_stop_str_in_output, as vLLM's (with skip_special_tokens off, an EOS's text)."""
        if self.tokenizer is None:
            return None
        first = num_output_tokens - len(new_token_ids)  # output tokens before these
        texted = new_token_ids[:-1] if ended_by_token and not self.include_stop else new_token_ids
        for i, token in enumerate(texted):
            self._tokens.append(token)
            delta = self._decode_next()
            if not delta:
                continue
            self.output_text += delta
            produced = first + i + 1
            if self.stop and produced >= self.min_tokens:
                matched = self._find_stop(len(delta))
                if matched is not None:
                    self._stopped = True
                    self.tokens_after_stop = len(new_token_ids) - i - 1
                    return matched
        return None

    def take_delta(self, finished: bool) -> str:
        """Text not handed out yet (all of it once finished; otherwise minus the stop-string holdback)."""
        if finished:
            self._flush_incomplete_tail()
        limit = len(self.output_text) if finished else max(len(self.output_text) - self._stop_holdback, 0)
        if limit <= self._emitted:
            return ""
        delta = self.output_text[self._emitted : limit]
        self._emitted = limit
        return delta

    @property
    def emitted_text(self) -> str:
        return self.output_text[: self._emitted]

    def _decode_next(self) -> str:
        decode = self.tokenizer.decode
        skip = self.skip_special_tokens
        prefix_text = decode(self._tokens[self._prefix_offset : self._read_offset], skip_special_tokens=skip)
        new_text = decode(self._tokens[self._prefix_offset :], skip_special_tokens=skip)
        if len(new_text) <= len(prefix_text) or new_text.endswith(_INCOMPLETE_CHAR):
            return ""  # an incomplete character or a skipped special token: wait for more
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._tokens)
        return new_text[len(prefix_text) :]

    def _flush_incomplete_tail(self) -> None:
        """At the end, bytes that never completed a character are shown as U+FFFD (as a full decode would)."""
        if self.tokenizer is None or self._stopped or self._read_offset == len(self._tokens):
            return
        skip = self.skip_special_tokens
        prefix_text = self.tokenizer.decode(self._tokens[self._prefix_offset : self._read_offset], skip_special_tokens=skip)
        new_text = self.tokenizer.decode(self._tokens[self._prefix_offset :], skip_special_tokens=skip)
        self.output_text += new_text[len(prefix_text) :]
        self._prefix_offset = self._read_offset = len(self._tokens)

    def _find_stop(self, new_chars: int) -> str | None:
        # Only look where a match could end inside the new characters.
        longest = max(len(s) for s in self.stop)
        search_from = max(len(self.output_text) - new_chars - longest + 1, 0)
        best: tuple[int, str] | None = None
        for stop in self.stop:
            idx = self.output_text.find(stop, search_from)
            if idx >= 0 and (best is None or idx < best[0]):
                best = (idx, stop)
        if best is None:
            return None
        idx, stop = best
        self.output_text = self.output_text[: idx + len(stop) if self.include_stop else idx]
        return stop
