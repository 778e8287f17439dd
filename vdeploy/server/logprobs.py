"""Engine TokenLogprobs -> OpenAI's two logprobs shapes (chat: a list of token objects; completions: parallel
lists). Tokens are shown as the text they decode to on their own, special tokens included."""

from __future__ import annotations

from typing import Any, Sequence

from vdeploy.engine.outputs import TokenLogprobs
from vdeploy.server.protocol import CompletionLogprobs, PromptLogprob, PromptLogprobs
from vdeploy.server.protocol_chat import ChatChoiceLogprobs, TokenLogprob, TopLogprob

# JSON has no -inf: a token the model rules out entirely (e.g. under an extreme repetition_penalty) is reported at
# this floor, as vLLM does, instead of breaking the response's serialisation
LOGPROB_FLOOR = -9999.0


def finite(logprob: float) -> float:
    return logprob if logprob >= LOGPROB_FLOOR else LOGPROB_FLOOR  # also maps NaN (never >=) to the floor


class TokenText:
    """Decodes single token ids, memoised per request (the same ids recur in the top-k alternatives)."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._memo: dict[int, str] = {}
        self._bytes_memo: dict[int, list[int]] = {}

    def __call__(self, token_id: int) -> str:
        text = self._memo.get(token_id)
        if text is None:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False)
            self._memo[token_id] = text
        return text

    def bytes(self, token_id: int) -> list[int]:
        """The token's own bytes (a part of a character has no text of its own: its text is U+FFFD)."""
        raw = self._bytes_memo.get(token_id)
        if raw is None:
            raw = self._bytes_memo[token_id] = list(self._tokenizer.token_bytes(token_id))
        return raw


def chat_logprobs(entries: Sequence[TokenLogprobs], top_k: int, token_text: TokenText) -> ChatChoiceLogprobs:
    content = []
    for entry in entries:
        text = token_text(entry.token_id)
        top = [
            TopLogprob(token=token_text(tid), logprob=finite(lp), bytes=token_text.bytes(tid))
            for tid, lp in entry.top[:top_k]
        ]
        content.append(TokenLogprob(token=text, logprob=finite(entry.logprob), bytes=token_text.bytes(entry.token_id),
                                    top_logprobs=top))
    return ChatChoiceLogprobs(content=content)


def completion_logprobs(
    entries: Sequence[TokenLogprobs], top_k: int, token_text: TokenText, text_offset_start: int
) -> CompletionLogprobs:
    out = CompletionLogprobs()
    offset = text_offset_start
    for entry in entries:
        text = token_text(entry.token_id)
        out.tokens.append(text)
        out.token_logprobs.append(finite(entry.logprob))
        out.text_offset.append(offset)
        offset += len(text)
        out.top_logprobs.append(_alternatives(entry, text, top_k, token_text))
    return out


def _alternatives(entry: TokenLogprobs, text: str, top_k: int, token_text: TokenText) -> dict[str, float] | None:
    if top_k <= 0:
        return None
    alternatives = {token_text(tid): finite(lp) for tid, lp in entry.top[:top_k]}
    alternatives.setdefault(text, finite(entry.logprob))  # OpenAI always lists the scored token
    return alternatives


def echoed_prompt_logprobs(prompt_ids: Sequence[int], entries: Sequence[TokenLogprobs | None], top_k: int,
                           token_text: TokenText) -> CompletionLogprobs:
    """`echo` with `logprobs`: the prompt's part of a completion's logprobs (the legacy API's way to score a text,
    as lm-eval's loglikelihood tasks do); the first token has none, nothing precedes it."""
    out = CompletionLogprobs()
    offset = 0
    for token_id, entry in zip(prompt_ids, entries):
        text = token_text(token_id)
        out.tokens.append(text)
        out.text_offset.append(offset)
        offset += len(text)
        out.token_logprobs.append(None if entry is None else finite(entry.logprob))
        out.top_logprobs.append(None if entry is None else _alternatives(entry, text, top_k, token_text))
    return out


def join_logprobs(first: CompletionLogprobs, second: CompletionLogprobs | None) -> CompletionLogprobs:
    if second is not None:
        for name in ("text_offset", "token_logprobs", "tokens", "top_logprobs"):
            getattr(first, name).extend(getattr(second, name))
    return first


def vllm_prompt_logprobs(entries: Sequence[TokenLogprobs | None], token_text: TokenText) -> PromptLogprobs:
    """vLLM's `prompt_logprobs`: per prompt token (None for the first) {token id: {logprob, rank, decoded_token}}
    for the prompt's token and the top-N there."""
    out: PromptLogprobs = []
    for entry in entries:
        if entry is None:
            out.append(None)
            continue
        position = {str(tid): PromptLogprob(logprob=finite(lp), rank=rank, decoded_token=token_text(tid))
                    for rank, (tid, lp) in enumerate(entry.top, start=1)}
        position.setdefault(str(entry.token_id), PromptLogprob(logprob=finite(entry.logprob), rank=entry.rank,
                                                               decoded_token=token_text(entry.token_id)))
        out.append(position)
    return out
