"""Deployment profiles, the public API: load and look up profiles (schema in vdeploy.profile_schema), choose one for
a model and machine (vdeploy.profile_selection), and resolve the engine configuration with the precedence

    built-in defaults (vdeploy.config) < profile < --config FILE.yaml < VDEPLOY_* environment < command-line flags.

See docs/profiles.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from vdeploy.config import EngineConfig
from vdeploy.engine_settings import SETTINGS as ALL_SETTINGS
from vdeploy.engine_settings import Setting, env_var, parse_size, profile_settings, value_problem
from vdeploy.errors import ConfigError
from vdeploy.profile_schema import (
    EngineSettings,
    HardwareRequirements,
    ModelMatch,
    Profile,
    SamplingDefaults,
    get_profile,
    load_profile_file,
    load_profiles,
)
from vdeploy.profile_selection import Selection, select_profile


# Setting name (profile `engine:` key, flag dict key, VDEPLOY_<NAME> variable) -> (EngineConfig path, type), derived
# from the one registry (vdeploy.engine_settings). Profiles set the first; environment and flags may set them all.
PROFILE_SETTINGS: dict[str, tuple[str, type]] = {s.name: (s.path, s.kind) for s in profile_settings()}
SETTINGS: dict[str, tuple[str, type]] = {s.name: (s.path, s.kind) for s in ALL_SETTINGS}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse_env(s: Setting, text: str) -> Any:
    """The value of VDEPLOY_<NAME> for setting `s`, read as its option reads it (a token count takes 32k / 32K) and
    checked against the registry's rules here, so that a bad value is an error naming the variable."""
    name, kind, value = env_var(s.name), s.kind, text.strip()
    try:
        if kind is tuple:
            from vdeploy.lora.request import parse_lora_modules

            return parse_lora_modules(item.strip() for item in value.split(",") if item.strip())
        if kind is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError
        parsed = parse_size(value) if s.size else kind(value)
    except ValueError:
        expected = "true/false" if kind is bool else "token count (4096, 32k, 32K)" if s.size else kind.__name__
        raise ConfigError(f"${name}={text!r} is not a valid {expected}",
                          hint=f"unset {name} or fix its value") from None
    problem = value_problem(s, parsed)
    if problem:
        raise ConfigError(f"${name}={text!r}: {problem}", hint=f"unset {name} or fix its value")
    return parsed


def environment_values(env: Mapping[str, str], names: Collection[str] | None = None) -> dict[str, Any]:
    """Setting name -> value of every VDEPLOY_<NAME> variable set (an empty one counts as unset), each checked;
    `names`: only those settings (the variables of others are not read)."""
    return {s.name: _parse_env(s, env[env_var(s.name)]) for s in ALL_SETTINGS
            if (names is None or s.name in names) and env.get(env_var(s.name), "").strip()}


def given_settings(flags: Mapping[str, Any], env: Mapping[str, str], file_values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a person gave, in the documented order (an option over VDEPLOY_<NAME> over the --config file),
    without the profile's or the defaults: what checks before the resolver see (serve's preflight, the model's
    load format)."""
    given = {**file_values, **environment_values(env, names=None)}
    given.update({k: v for k, v in flags.items() if v is not None})
    return given


def _profile_values(profile: Profile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    values = {k: getattr(profile.engine, k) for k in PROFILE_SETTINGS}
    if not profile.is_cpu and profile.hardware.nodes > 1:
        values["nnodes"] = profile.hardware.nodes
    if profile.is_cpu:
        values["device"] = "cpu"
    return {k: v for k, v in values.items() if v is not None}


def resolve_engine_config(
    model_path: str,
    profile: Profile | None,
    env: Mapping[str, str],
    flags: dict[str, Any],
    file_values: Mapping[str, Any] | None = None,
    file_source: str = "",
) -> tuple[EngineConfig, dict[str, str]]:
    """EngineConfig for `model_path` with every setting taken from the strongest source that gives it.

    `flags` maps setting names (see SETTINGS) to command-line values; None means the flag was not given.
    `file_values` are a --config file's settings (vdeploy.config_file), read from `file_source`.
    Returns the config and, for every setting, where its value came from: "default", "profile:<name>",
    "file:<path>", "env:VDEPLOY_<NAME>" or "flag".
    """
    unknown = sorted(set(flags) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown engine setting(s): {', '.join(unknown)}")
    chosen: dict[str, Any] = {}
    provenance = {name: "default" for name in SETTINGS}
    for name, value in _profile_values(profile).items():
        chosen[name] = value
        provenance[name] = f"profile:{profile.name}"  # type: ignore[union-attr]
    for name, value in (file_values or {}).items():  # --config FILE.yaml (vdeploy.config_file)
        chosen[name] = value
        provenance[name] = f"file:{file_source}"
    for name, value in environment_values(env).items():
        chosen[name] = value
        provenance[name] = f"env:{env_var(name)}"
    for name, value in flags.items():
        if value is not None:
            chosen[name] = value
            provenance[name] = "flag"
    config = EngineConfig(model=str(model_path)).with_overrides(**{SETTINGS[k][0]: v for k, v in chosen.items()})
    validate_engine_config(config)
    return config, provenance


def validate_engine_config(cfg: EngineConfig) -> None:
    """The registry's rules (vdeploy.engine_settings.value_problem), checked again after environment, file and flags
    had their say."""
    for s in ALL_SETTINGS:
        value: Any = cfg
        for part in s.path.split("."):
            value = getattr(value, part)
        problem = value_problem(s, value)
        if problem:
            raise ConfigError(problem)


__all__ = [
    "PROFILE_SETTINGS", "SETTINGS", "EngineSettings", "HardwareRequirements", "ModelMatch", "Profile",
    "SamplingDefaults", "Selection", "env_var", "get_profile", "load_profile_file", "load_profiles",
    "resolve_engine_config", "select_profile", "validate_engine_config",
]
