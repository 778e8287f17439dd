"""Checked reads of config.json values, shared by ModelConfig.from_dict (vdeploy.config) and the RoPE settings
(vdeploy.model_configs.rope_settings): a malformed value is one ConfigError naming the file and the key, never a
crash deep in a planner or a model. Plain data: no torch import."""

from __future__ import annotations

import json
from typing import Any

from vdeploy.errors import ConfigError

FIX_HINT = "use the config.json published with the model (re-download it)"


def invalid(source: str, key: str, expected: str, value: Any) -> ConfigError:  # value as JSON: null, "four"
    return ConfigError(f"{source}: {key} must be {expected}, got {json.dumps(value, default=str)}", hint=FIX_HINT)


def count(cfg: dict[str, Any], source: str, key: str, default: int | None = None, minimum: int = 1) -> int:
    """cfg[key] as an integer >= minimum (JSON's 4096.0 counts); `default` when absent or null (None: required)."""
    value = cfg.get(key)
    if value is None and default is not None:
        return default
    if key not in cfg:
        raise ConfigError(f"{source}: {key} is missing", hint=FIX_HINT)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not is_count(value, minimum):
        raise invalid(source, key, "a positive integer" if minimum == 1 else "a non-negative integer", value)
    return value


def positive_number(value: Any, default: float, source: str, key: str) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise invalid(source, key, "a positive number", value)
    return float(value)


def mapping(cfg: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = cfg.get(key)
    if value is not None and not isinstance(value, dict):
        raise invalid(source, key, "a JSON object", value)
    return value or {}


def is_count(value: Any, minimum: int = 0) -> bool:  # JSON's true / false are not counts (Python's 1 / 0 are)
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
