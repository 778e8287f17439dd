"""Beam search over the engine, as Hugging Face's `generate(num_beams=k)` defines it (length penalty, early stopping,
EOS hypotheses), so that the same weights give the same sequences.

Each step submits every live beam (prompt + its tokens) as a one-token request asking for its top log-probs; the
prefix cache shares the blocks the beams have in common (reference counts), and only each beam's last, partial
block is recomputed instead of copied. The candidates are the best `beams_to_keep` of (beam score + token
log-prob) over all beams; those ending in EOS (or at the length limit) that rank among the first `beam_width` become
finished hypotheses scored by sum(log-probs) / generated_length ** length_penalty. The length limit is the one
generate() stops at: max_tokens, or where prompt + output reach max_model_len.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import numpy as np

from vdeploy.engine.offline_batch import BatchRequest, run_batch
from vdeploy.engine.sampling_params import SamplingParams
from vdeploy.errors import ConfigError

_NEG = np.float32(-1.0e9)  # HF's "impossible" score


@dataclass(frozen=True)
class BeamSearchParams:
    beam_width: int
    max_tokens: int
    length_penalty: float = 1.0
    early_stopping: bool | str = False  # True | False | "never", as in transformers
    ignore_eos: bool = False

    def candidates(self, num_eos: int) -> int:
        """Candidates kept per step (transformers' beams_to_keep): enough that `beam_width` survive EOS."""
        return max(2, 1 + (0 if self.ignore_eos else num_eos)) * self.beam_width

    def validate(self, num_eos: int, max_logprobs: int = 20) -> None:
        if self.beam_width < 1 or self.max_tokens < 1:
            raise ConfigError("beam search needs beam_width >= 1 and max_tokens >= 1")
        if self.candidates(num_eos) > max_logprobs:
            raise ConfigError(f"beam_width {self.beam_width} needs {self.candidates(num_eos)} log-probs per beam, "
                              f"more than {max_logprobs}", hint="use a smaller beam_width")


@dataclass
class BeamSearchSequence:
    token_ids: list[int]  # generated tokens only
    score: float  # sum of log-probs / length ** length_penalty


@dataclass
class _PromptState:
    prompt: list[int]
    max_tokens: int  # tokens this prompt's beams may generate (max_tokens, less where max_model_len ends them)
    running: list[list[int]]  # generated tokens of each live beam
    running_scores: np.ndarray  # [live] float32, accumulated log-probs
    finished: list[tuple[float, list[int]]] = field(default_factory=list)  # (normalised score, tokens), best first
    improvable: bool = True
    done: bool = False


def beam_search_steps(prompts: list[list[int]], params: BeamSearchParams, eos_token_ids: tuple[int, ...],
                      max_model_len: int | None = None):
    """The search as a generator, free of any engine: it yields (sequences, k) — every live beam as prompt + tokens,
    and how many top log-probs it needs of each — and is sent back their top-k (token, log-prob) lists; it returns
    the best-first finished sequences per prompt (up to beam_width of them). With max_model_len, a prompt's beams
    end as generate() ends a request there (prompt + output = max_model_len; one token for a prompt of that length)."""
    params.validate(len(eos_token_ids))
    eos = () if params.ignore_eos else tuple(eos_token_ids)
    keep = params.candidates(len(eos_token_ids))
    states = [_PromptState(list(p), _max_tokens(len(p), params.max_tokens, max_model_len), [[]],
                           np.zeros(1, dtype=np.float32)) for p in prompts]
    for step in range(max((s.max_tokens for s in states), default=0)):
        live = [s for s in states if not s.done]
        if not live:
            break
        tops = yield [(s.prompt + beam) for s in live for beam in s.running], keep
        offset = 0
        for s in live:
            n = len(s.running)
            _advance(s, tops[offset:offset + n], params, eos, keep, last=step == s.max_tokens - 1)
            offset += n
    return [[BeamSearchSequence(tokens, float(score)) for score, tokens in s.finished] or
            [BeamSearchSequence(s.running[0], float(s.running_scores[0]))] for s in states]


def _max_tokens(prompt_len: int, max_tokens: int, max_model_len: int | None) -> int:
    """What generate() gives the prompt: max_tokens, cut where prompt + output reach max_model_len (the scheduler's
    stop rule), and at least the one token every request samples."""
    if max_model_len is None:
        return max_tokens
    return max(1, min(max_tokens, max_model_len - prompt_len))


def beam_search(core, prompts: list[list[int]], params: BeamSearchParams,
                eos_token_ids: tuple[int, ...]) -> list[list[BeamSearchSequence]]:
    """Beam search driven by an EngineCore (offline `LLM.beam_search`). The first step scores the prompts themselves,
    all checked before any is queued: a prompt that cannot run is refused with generate()'s error. Each step's
    requests are fed to the engine as its waiting queue drains, and a failure in a step aborts all of them."""
    tag = uuid.uuid4().hex[:8]
    search = beam_search_steps(prompts, params, eos_token_ids, core.max_model_len)
    try:
        sequences, k = next(search)
        for step in itertools.count():
            sequences, k = search.send(_next_token_logprobs(core, sequences, k, f"beam-{tag}-{step}"))
    except StopIteration as done:
        return done.value


async def beam_search_async(score, prompts: list[list[int]], params: BeamSearchParams,
                            eos_token_ids: tuple[int, ...]) -> list[list[BeamSearchSequence]]:
    """Beam search driven by `await score(sequences, k)` -> top-k (token, log-prob) per sequence (the server)."""
    search = beam_search_steps(prompts, params, eos_token_ids)
    try:
        sequences, k = next(search)
        while True:
            sequences, k = search.send(await score(sequences, k))
    except StopIteration as done:
        return done.value


def next_token_params(k: int) -> SamplingParams:
    """What one beam step asks the engine for each live beam: its next token's top-k log-probs."""
    return SamplingParams(temperature=0.0, max_tokens=1, logprobs=k, ignore_eos=True)


def _next_token_logprobs(core, sequences: list[list[int]], k: int, tag: str) -> list[list[tuple[int, float]]]:
    """Top-k (token, log-prob) of the next token after each sequence, through the engine."""
    params = next_token_params(k)
    outputs = run_batch(core, [BatchRequest(f"{tag}-{i}", seq, params) for i, seq in enumerate(sequences)])
    return [out.outputs[0].logprobs[0].top for out in outputs]


def _advance(s: _PromptState, tops: list[list[tuple[int, float]]], params: BeamSearchParams,
             eos: tuple[int, ...], keep: int, last: bool) -> None:
    width, lp = params.beam_width, params.length_penalty
    # candidates: (accumulated score, beam, token), best first; float32 as transformers accumulates
    cand = [(np.float32(s.running_scores[b] + np.float32(logprob)), b, token)
            for b, top in enumerate(tops) for token, logprob in top]
    cand.sort(key=lambda c: -c[0])  # stable: ties keep beam-major, token-rank order
    cand = cand[:keep]
    hits = [last or token in eos for _, _, token in cand]
    gen_len = len(s.running[0]) + 1
    # finished hypotheses: hitting candidates among the first `width`, while improvement is still possible
    if s.improvable and not (params.early_stopping is True and len(s.finished) >= width):
        for rank, ((score, b, token), hit) in enumerate(zip(cand, hits)):
            if hit and rank < width:
                s.finished.append((float(np.float32(score / np.float32(gen_len ** lp))), s.running[b] + [token]))
        s.finished.sort(key=lambda f: -f[0])
        del s.finished[width:]
    # the next running beams: the best candidates that do not stop
    running = [(score, b, token) for (score, b, token), hit in zip(cand, hits) if not hit][:width]
    if not running or last:
        s.done = True
        return
    s.running = [s.running[b] + [token] for _, b, token in running]
    s.running_scores = np.array([score for score, _, _ in running], dtype=np.float32)
    # transformers' early-stop heuristic: can the best running beam still beat the worst finished one?
    if len(s.finished) >= width:
        best_len = s.max_tokens if params.early_stopping == "never" and lp > 0 else gen_len
        best_possible = np.float32(s.running_scores[0] / np.float32(best_len ** lp))
        s.improvable = s.improvable and bool(best_possible > np.float32(s.finished[-1][0]))
    if not s.improvable or (params.early_stopping is True and len(s.finished) >= width):
        s.done = True
