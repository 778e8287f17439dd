"""Engine TokenLogprobs -> OpenAI's two logprobs shapes (chat: a list of token objects; completions: parallel
lists). Tokens are shown as the text they decode to on their own, special tokens included."""

from __future__ import annotations

from typing import Any, Sequence

from vdeploy.engine.outputs import TokenLogprobs
from vdeploy.server.protocol import ChatChoiceLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob

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

    def __call__(self, token_id: int) -> str:
        text = self._memo.get(token_id)
        if text is None:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False)
            self._memo[token_id] = text
        return text


def chat_logprobs(entries: Sequence[TokenLogprobs], top_k: int, token_text: TokenText) -> ChatChoiceLogprobs:
    content = []
    for entry in entries:
        text = token_text(entry.token_id)
        top = [
            TopLogprob(token=token_text(tid), logprob=finite(lp), bytes=list(token_text(tid).encode("utf-8")))
            for tid, lp in entry.top[:top_k]
        ]
        content.append(
            TokenLogprob(token=text, logprob=finite(entry.logprob), bytes=list(text.encode("utf-8")), top_logprobs=top)
        )
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
        if top_k > 0:
            alternatives = {token_text(tid): finite(lp) for tid, lp in entry.top[:top_k]}
            alternatives.setdefault(text, finite(entry.logprob))  # OpenAI always lists the sampled token
            out.top_logprobs.append(alternatives)
        else:
            out.top_logprobs.append(None)
    return out
