"""Per-request sampling parameters (OpenAI / vLLM semantics)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vdeploy.errors import ConfigError

# The bounds every request is checked against; the HTTP schema (vdeploy.server.protocol) publishes the same numbers.
TEMPERATURE_MAX = 2.0
PENALTY_RANGE = (-2.0, 2.0)  # presence_penalty, frequency_penalty
MAX_LOGPROBS = 20


@dataclass
class GuidedDecoding:
    """Constrain the output to a grammar (xgrammar, compiled on the engine host). Exactly one of the first five is
    set; `after_think` lets a reasoning model think freely: the grammar starts once this text has been generated."""

    json: str | None = None  # a JSON schema, serialized (sorted keys: also the compiled-grammar cache key)
    json_object: bool = False  # any JSON object
    regex: str | None = None
    choice: list[str] | None = None  # exactly one of these strings
    grammar: str | None = None  # EBNF (GBNF dialect, as llama.cpp / xgrammar write it)
    after_think: str | None = None  # e.g. "</think>" for DeepSeek-R1 and its distills

    def validate(self) -> None:
        kinds = [self.json is not None, self.json_object, self.regex is not None, self.choice is not None,
                 self.grammar is not None]
        if sum(kinds) != 1:
            raise ConfigError("guided decoding needs exactly one of json, json_object, regex, choice, grammar")
        if self.choice is not None and not self.choice:
            raise ConfigError("guided_choice must list at least one string")

    @property
    def key(self) -> tuple:
        """What the compiled grammar depends on (after_think does not change the grammar)."""
        choice = tuple(self.choice) if self.choice is not None else None
        return (self.json, self.json_object, self.regex, choice, self.grammar)


_INTEGERS = ("n", "top_k", "min_tokens", "seed", "max_tokens", "logprobs", "prompt_logprobs")
_OPTIONAL = frozenset({"seed", "max_tokens", "logprobs", "prompt_logprobs"})  # None means: not asked for
_NUMBERS = ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 or -1 = off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    max_tokens: int | None = 16  # None = up to max_model_len
    min_tokens: int = 0
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None  # number of top logprobs per sampled token (0 = only the sampled token's)
    prompt_logprobs: int | None = None  # top logprobs at each prompt position after the first (0 = only the token's)
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    guided: GuidedDecoding | None = None  # structured output / enforced tool calls

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        # vLLM's defaults are None for both: code written for it passes None
        self.stop = [] if self.stop is None else list(self.stop)
        self.stop_token_ids = [] if self.stop_token_ids is None else list(self.stop_token_ids)
        if self.top_k == -1:
            self.top_k = 0
        self.validate()

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(msg)

        self._check_types()
        if self.n < 1:
            bad(f"n must be >= 1, got {self.n}")
        if not 0.0 <= self.temperature <= TEMPERATURE_MAX:
            bad(f"temperature must be in [0, {TEMPERATURE_MAX:g}], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            bad(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            bad(f"top_k must be -1, 0 or positive, got {self.top_k}")
        if not 0.0 <= self.min_p <= 1.0:
            bad(f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            bad(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        low, high = PENALTY_RANGE
        if not low <= self.presence_penalty <= high:
            bad(f"presence_penalty must be in [{low:g}, {high:g}], got {self.presence_penalty}")
        if not low <= self.frequency_penalty <= high:
            bad(f"frequency_penalty must be in [{low:g}, {high:g}], got {self.frequency_penalty}")
        if self.max_tokens is not None and self.max_tokens < 1:
            bad(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.min_tokens < 0 or (self.max_tokens is not None and self.min_tokens > self.max_tokens):
            bad(f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_LOGPROBS:
            bad(f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}")
        if self.prompt_logprobs is not None and not 0 <= self.prompt_logprobs <= MAX_LOGPROBS:
            bad(f"prompt_logprobs must be in [0, {MAX_LOGPROBS}], got {self.prompt_logprobs}")
        if self.guided is not None:
            self.guided.validate()

    def _check_types(self) -> None:
        """A wrong type is refused here, naming the field (e.g. logprobs=True), not met as a TypeError inside an
        engine step, where it would fail every request of the batch."""
        for name in _INTEGERS:
            value = getattr(self, name)
            if not (value is None and name in _OPTIONAL) and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"{name} must be an integer{' or None' if name in _OPTIONAL else ''}, got {value!r}")
        for name in _NUMBERS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if not all(isinstance(s, str) for s in self.stop):
            raise ConfigError(f"stop must be a string or a list of strings, got {self.stop!r}")
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in self.stop_token_ids):
            raise ConfigError(f"stop_token_ids must be a list of token ids, got {self.stop_token_ids!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature < 1e-5

    @property
    def uses_penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
