"""Guided decoding on the engine host: compiled grammars (xgrammar), one matcher per request, token bitmasks.

The flow of one constrained request:
  add:      compile its grammar (cached by the grammar's key: a schema is compiled once per engine) and give it a
            GrammarMatcher; a reasoning request starts "thinking" with no matcher in use.
  launch:   after `Scheduler.schedule()`, every sampling row of a live matcher gets the packed bitmask of its allowed
            next tokens (`ScheduledRequest.token_bitmask`); the sampler applies it on the device.
  update:   each sampled token advances the matcher, in `update_from_output` order; a request whose grammar has
            terminated ends with finish_reason "stop".
A mask needs the previous token's value, so while any guided request lives the engine does not schedule ahead
(`Scheduler.needs_known_tokens`): when `fill` runs, every matcher has seen every token before the row it masks.

xgrammar and torch are imported lazily, only when the first guided request arrives.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from vdeploy.engine.outputs import SchedulerOutput
from vdeploy.engine.request import Request
from vdeploy.engine.sampling_params import GuidedDecoding
from vdeploy.errors import ConfigError

logger = logging.getLogger("vdeploy.engine")

MAX_CACHED_GRAMMARS = 256  # compiled grammars kept per engine (a JSON schema's is tens of KB to a few MB)


def tokenizer_info(tokenizer: Any, vocab_size: int, stop_token_ids: tuple[int, ...]) -> Any:
    """xgrammar's view of a vdeploy Tokenizer: every id's raw token string plus how to decode it (byte-level BPE,
    byte fallback, raw), detected from tokenizer.json as xgrammar's own Hugging Face path does."""
    import xgrammar as xgr

    backend = tokenizer._tok  # tokenizers.Tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    encoded = [""] * max(vocab_size, max(vocab.values(), default=-1) + 1)
    for token, token_id in vocab.items():
        encoded[token_id] = token
    metadata = xgr.TokenizerInfo._detect_metadata_from_hf(backend.to_str())
    # ids past the model's vocabulary cannot be sampled; ids past the tokenizer's are padding the grammar never allows
    return xgr.TokenizerInfo(
        encoded[:vocab_size], metadata["vocab_type"], vocab_size=vocab_size,
        stop_token_ids=[t for t in stop_token_ids if 0 <= t < vocab_size],
        add_prefix_space=metadata["add_prefix_space"],
    )


def bitmask_words(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


class InvalidGrammarError(ConfigError):
    """The request's regex, grammar or JSON schema is well-formed but cannot be compiled (an unsupported feature)."""


@dataclass
class GuidedState:
    """One request's grammar progress."""

    matcher: Any  # xgrammar.GrammarMatcher
    think_end_ids: list[int] = field(default_factory=list)  # the grammar starts after these tokens; [] = at once
    thinking: bool = False  # reasoning, unconstrained, until think_end_ids appear in the output
    rejected: bool = False  # the sampled token was not in the grammar (it cannot be, unless masks were bypassed)

    @property
    def active(self) -> bool:
        return not self.thinking


class GuidedDecoder:
    """Owned by EngineCore (not thread-safe, like the engine core itself)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: tuple[int, ...]):
        if tokenizer is None:
            raise ConfigError("guided decoding needs the model's tokenizer (tokenizer.json)")
        try:
            import xgrammar as xgr
        except ImportError:
            raise ConfigError("guided decoding needs xgrammar", hint="pip install xgrammar") from None
        self._xgr = xgr
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.info = tokenizer_info(tokenizer, vocab_size, stop_token_ids)
        self.compiler = xgr.GrammarCompiler(self.info, cache_enabled=False)  # our own cache, bounded, by key
        self._compiled: OrderedDict[tuple, Any] = OrderedDict()
        self.states: dict[str, GuidedState] = {}
        self._bitmask = None  # [rows, words] int32 host buffer, grown on demand
        self._batch = None  # BatchGrammarMatcher: fills many rows on a thread pool
        self.num_cache_hits = 0
        self.num_compiles = 0

    # ---- grammars -----------------------------------------------------------------------------------------------
    def compile(self, spec: GuidedDecoding) -> Any:
        key = spec.key
        compiled = self._compiled.get(key)
        if compiled is not None:
            self._compiled.move_to_end(key)
            self.num_cache_hits += 1
            return compiled
        try:
            compiled = self._compile(spec)
        except Exception as e:  # xgrammar raises RuntimeError / ValueError / its own errors on a bad grammar
            raise InvalidGrammarError(
                f"invalid guided decoding grammar: {str(e).splitlines()[0] if str(e) else e!r}") from None
        self.num_compiles += 1
        self._compiled[key] = compiled
        if len(self._compiled) > MAX_CACHED_GRAMMARS:
            self._compiled.popitem(last=False)
        return compiled

    def _compile(self, spec: GuidedDecoding) -> Any:
        c = self.compiler
        # no free whitespace between JSON tokens: small or unsure models otherwise loop on spaces and newlines
        if spec.json is not None:
            return c.compile_json_schema(spec.json, any_whitespace=False)
        if spec.json_object:
            return c.compile_json_schema('{"type": "object"}', any_whitespace=False)
        if spec.regex is not None:
            return c.compile_regex(spec.regex)
        if spec.choice is not None:
            alternatives = " | ".join(json.dumps(s, ensure_ascii=False) for s in spec.choice)
            return c.compile_grammar(f"root ::= {alternatives}")
        return c.compile_grammar(spec.grammar)

    # ---- requests -----------------------------------------------------------------------------------------------
    def add(self, request: Request) -> None:
        spec = request.sampling_params.guided
        compiled = self.compile(spec)
        think_end = self.tokenizer.encode(spec.after_think, add_special_tokens=False) if spec.after_think else []
        state = GuidedState(self._xgr.GrammarMatcher(compiled), think_end, thinking=bool(think_end))
        self.states[request.request_id] = state

    def remove(self, request_id: str) -> None:
        self.states.pop(request_id, None)

    @property
    def num_live(self) -> int:
        return len(self.states)

    # ---- one step -----------------------------------------------------------------------------------------------
    def fill(self, sched_out: SchedulerOutput) -> None:
        """Give every sampling row of an active matcher its bitmask (host work: the device is idle or busy with
        nothing that needs these rows)."""
        rows = [s for s in sched_out.requests if s.sample and (st := self.states.get(s.req_id)) and st.active]
        if not rows:
            return
        xgr = self._xgr
        if self._bitmask is None or self._bitmask.shape[0] < len(rows):
            self._bitmask = xgr.allocate_token_bitmask(max(len(rows), 64), self.vocab_size)
        bitmask = self._bitmask[: len(rows)]
        matchers = [self.states[s.req_id].matcher for s in rows]
        if len(matchers) == 1:
            matchers[0].fill_next_token_bitmask(bitmask, 0)
        else:
            if self._batch is None:
                self._batch = xgr.BatchGrammarMatcher()
            self._batch.batch_fill_next_token_bitmask(matchers, bitmask)
        host = bitmask.numpy()
        for i, s in enumerate(rows):
            s.token_bitmask = host[i].tobytes()

    def advance(self, updated: list[Request]) -> list[Request]:
        """Feed each updated request's new token to its matcher. Returns the requests whose grammar has ended
        (terminated, or a token it could not accept): the caller finishes them with "stop"."""
        ended = []
        for req in updated:
            state = self.states.get(req.request_id)
            if state is None or not req.output_token_ids:
                continue
            token = req.output_token_ids[-1]
            if state.thinking:
                n = len(state.think_end_ids)
                if req.output_token_ids[-n:] == state.think_end_ids:
                    state.thinking = False  # the answer starts with the next token
                continue
            if not state.matcher.accept_token(token):
                # only reachable when a token bypassed the mask (e.g. min_tokens banned the only allowed EOS)
                logger.debug("request %s: token %d rejected by its grammar", req.request_id, token)
                state.rejected = True
                ended.append(req)
            elif state.matcher.is_terminated():
                ended.append(req)
        return ended

    def forget_finished(self, requests: list[Request]) -> None:
        for req in requests:
            if req.is_finished:
                self.states.pop(req.request_id, None)
