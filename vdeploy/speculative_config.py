"""Speculative decoding settings (EngineConfig.speculative) and the keys of vLLM's `speculative_config` mapping that
set them: `LLM(speculative_config={...})` and `--speculative-config '{...}'` both read it through
`speculative_settings`, so the keys the engine supports are defined once, by the dataclass's fields.

Every value is checked when the dataclass is built (also by `dataclasses.replace`, which EngineConfig.with_overrides
uses): vLLM refuses a speculation length below 1 and an empty or inverted n-gram range, and so does vdeploy, naming
the setting, instead of running with speculation silently off or never drafting. Plain data: no torch import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from vdeploy.errors import ConfigError

SPECULATIVE_METHODS = ("ngram", "mtp")  # prompt lookup (any model) | DeepSeek-V3/R1's multi-token-prediction layer
_EXAMPLE = '{"method": "ngram", "num_speculative_tokens": 3}'


@dataclass(frozen=True)
class SpeculativeConfig:
    method: str | None = None  # None (off) | "ngram" (prompt lookup) | "mtp" (DeepSeek's MTP module)
    num_speculative_tokens: int = 3  # drafts per step and request
    prompt_lookup_min: int = 1  # n-gram sizes searched, longest first
    prompt_lookup_max: int = 3

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in SPECULATIVE_METHODS:
            raise ConfigError(f"speculative method {self.method!r} is not supported",
                              hint=f"use {' or '.join(SPECULATIVE_METHODS)}, e.g. {_EXAMPLE}")
        for name in ("num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max"):
            value = getattr(self, name)
            # bool is an int in Python, but `true` drafting one token is a typo, not a setting
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"speculative {name} must be an integer of at least 1, got {value!r}",
                                  hint=f"e.g. {_EXAMPLE}; leave speculative_config out to turn speculation off")
        if self.prompt_lookup_min > self.prompt_lookup_max:
            raise ConfigError(
                f"speculative prompt_lookup_min ({self.prompt_lookup_min}) is more than prompt_lookup_max "
                f"({self.prompt_lookup_max}): no n-gram size is left to search",
                hint="the n-gram sizes searched run from prompt_lookup_min to prompt_lookup_max (1 and 3 unless "
                     "given); set both")

    @property
    def enabled(self) -> bool:
        return self.method is not None

    @property
    def uses_mtp(self) -> bool:
        """The checkpoint's multi-token-prediction module is built, cached and run as the draft model."""
        return self.enabled and self.method == "mtp"


# speculative_config key -> engine setting name (LLM keyword, registry name): `method` is `speculative_method` there
SPECULATIVE_CONFIG_KEYS: dict[str, str] = {
    f.name: "speculative_method" if f.name == "method" else f.name for f in fields(SpeculativeConfig)}


def speculative_settings(spec: Mapping[str, Any] | None, source: str = "speculative_config") -> dict[str, Any]:
    """vLLM's speculative_config mapping as engine settings, only the keys given; a key the engine does not support
    is refused naming `source` (the values are checked when the SpeculativeConfig is built)."""
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{source} must be a mapping, got {type(spec).__name__}", hint=f"e.g. {_EXAMPLE}")
    unknown = sorted(str(key) for key in spec if key not in SPECULATIVE_CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}",
                          hint="supported: " + ", ".join(SPECULATIVE_CONFIG_KEYS))
    return {SPECULATIVE_CONFIG_KEYS[key]: value for key, value in spec.items()}
