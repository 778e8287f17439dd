"""Prompt-lookup (n-gram) drafts: if the last n tokens occurred earlier in the request's tokens, the tokens that
followed them there are the draft. Free to compute (host only, no draft model), and good exactly where outputs
repeat their context: code edits, quoting, extraction, summaries of the prompt."""

from __future__ import annotations


def propose_ngram(tokens: list[int], k: int, min_n: int = 1, max_n: int = 3, window: int = 4096) -> list[int]:
    """Up to k tokens that followed the most recent earlier occurrence of the longest suffix n-gram
    (max_n down to min_n) among the last `window` tokens; [] when none occurs."""
    if k <= 0 or len(tokens) < min_n + 1:
        return []
    start = max(0, len(tokens) - window)
    for n in range(min(max_n, len(tokens) - 1), min_n - 1, -1):
        suffix = tokens[-n:]
        first = suffix[0]
        # scan backwards for the latest earlier occurrence (not the suffix itself)
        for i in range(len(tokens) - n - 1, start - 1, -1):
            if tokens[i] == first and tokens[i:i + n] == suffix:
                follow = tokens[i + n:i + n + k]
                if follow:
                    return follow
                break
    return []
