"""`--config FILE.yaml`: engine settings from a YAML mapping, as vLLM reads its config files. Keys are the settings
of the registry (vdeploy.engine_settings) spelled as their options (`max-model-len`, `tensor-parallel-size`, `tp`)
or as their names (`max_model_len`); values as on the command line (`32k` for a token count). Precedence, set by
vdeploy.profiles.resolve_engine_config: options > VDEPLOY_* environment > this file > profile > defaults."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from vdeploy.engine_settings import Setting, by_spelling, parse_size, value_problem
from vdeploy.errors import ConfigError


def read_yaml(path: Path, what: str) -> Any:
    """The YAML document in path (what: "--config", "profile" — named in the error if it cannot be read)."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path}: invalid YAML ({e})") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Setting name -> value, every key and value checked; ConfigError naming the file and the key otherwise."""
    path = Path(path)
    data = read_yaml(path, "--config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings (max-model-len: 32k, ...)")
    known = by_spelling()
    values: dict[str, Any] = {}
    for key, value in data.items():
        s = known.get(str(key))
        if s is None:
            close = difflib.get_close_matches(str(key), [k for k in known if "_" not in k], n=1)
            hint = (f"did you mean '{close[0]}'?" if close else
                    "engine settings only (see `vdeploy serve --explain`); server options such as --port go on "
                    "the command line")
            raise ConfigError(f"--config {path}: unknown key '{key}'", hint=hint)
        if s.name in values:
            raise ConfigError(f"--config {path}: {s.option} is given twice ('{key}')")
        values[s.name] = _coerce(s, value, f"--config {path}: '{key}'")
    return values


def _coerce(s: Setting, value: Any, where: str) -> Any:
    if s.kind is tuple:  # lora-modules: a list of "name=path" (or {name, path}) entries, as vLLM's file takes
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list of name=path entries, not {value!r}")
        from vdeploy.lora.request import parse_lora_modules

        return parse_lora_modules((e["name"], e["path"]) if isinstance(e, dict) and {"name", "path"} <= set(e)
                                  else e for e in value)
    if s.kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if s.kind is int and s.size:
        try:
            return parse_size(value)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    ok = (s.kind is int and isinstance(value, int) and not isinstance(value, bool)
          or s.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool)
          or s.kind is str and isinstance(value, str))
    if not ok:
        raise ConfigError(f"{where} must be {s.kind.__name__}, not {value!r}")
    problem = value_problem(s, value)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return float(value) if s.kind is float else value
