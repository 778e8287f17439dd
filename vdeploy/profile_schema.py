"""The profile schema: YAML files (profiles/, installed as `vdeploy.profiles_data`) parsed into frozen dataclasses,
with every unknown or misspelt key an error naming the file and the key. Public API: vdeploy.profiles."""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from vdeploy.config import ARCHITECTURE_FAMILIES
from vdeploy.engine_settings import (BY_NAME, DTYPE_CHOICES, KV_CACHE_DTYPE_CHOICES, parse_size, profile_settings,
                                     value_problem)
from vdeploy.errors import ConfigError

DTYPES = DTYPE_CHOICES
KV_CACHE_DTYPES = KV_CACHE_DTYPE_CHOICES
QUANTIZATIONS = ("none", "fp8")
USER_PROFILES_ENV = "VDEPLOY_PROFILES_DIR"  # a directory of extra profiles; same name shadows a built-in


@dataclass(frozen=True)
class ModelMatch:
    architectures: tuple[str, ...] = ()  # empty: any architecture vdeploy serves
    min_params_b: float | None = None  # billions of parameters (total, MoE experts included)
    max_params_b: float | None = None
    quantization: tuple[str, ...] = ()  # "fp8", "none"; empty: any


@dataclass(frozen=True)
class HardwareRequirements:
    gpu_count: int = 1  # GPUs per node the profile uses; 0 means a CPU profile
    min_gpu_memory_gb: float = 0.0  # decimal GB as vendors quote them (an "80 GB" H100 reports 85.5e9 bytes)
    min_compute_capability: float | None = None  # 8.0 = Ampere (bf16), 8.9 = Ada, 9.0 = Hopper (FP8 tensor cores)
    nodes: int = 1


# A profile's `engine:` section: the registry's profile settings (vdeploy.engine_settings), every field None =
# leave the built-in default (vdeploy.config) alone.
EngineSettings = make_dataclass(
    "EngineSettings", [(s.name, s.kind | None, field(default=None)) for s in profile_settings()], frozen=True)
EngineSettings.__module__ = __name__


@dataclass(frozen=True)
class SamplingDefaults:
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    match: ModelMatch = field(default_factory=ModelMatch)
    hardware: HardwareRequirements = field(default_factory=HardwareRequirements)
    engine: EngineSettings = field(default_factory=EngineSettings)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    source: str = ""  # file it was loaded from

    @property
    def is_cpu(self) -> bool:
        return self.hardware.gpu_count == 0


SECTIONS = {"match": ModelMatch, "hardware": HardwareRequirements, "engine": EngineSettings,
            "sampling": SamplingDefaults}


# ----------------------------------------------------------------------------------------------- parsing & checks


def _unknown_key(source: str, where: str, key: str, known: Iterable[str]) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
    return ConfigError(f"{source}: unknown key '{where}{key}'", hint=hint)


def _coerce(value: Any, hint: Any, source: str, key: str) -> Any:
    """Check a YAML value against a field's type: int, float, bool, str, tuple[str, ...], each maybe Optional."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if value is None:
        if type(None) in typing.get_args(hint):
            return None
        raise ConfigError(f"{source}: '{key}' must not be empty")
    base = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
    if typing.get_origin(base) is tuple:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{source}: '{key}' must be a list of strings")
        return tuple(items)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, not {value!r}")
        return value
    if base is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    name = key.rsplit(".", 1)[-1]
    if base is int and isinstance(value, str) and name in BY_NAME and BY_NAME[name].size:
        try:  # a token count written as its option takes it (32k, 32K), as --config and VDEPLOY_* do
            return parse_size(value)
        except ValueError:
            raise ConfigError(f"{source}: '{key}' must be a token count (4096, 32k, 32K), not {value!r}") from None
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: '{key}' must be {getattr(base, '__name__', base)}, not {value!r}")


def _parse_section(cls: type, data: Any, source: str, section: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{section}' must be a mapping")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls)]
    for key in data:
        if key not in known:
            raise _unknown_key(source, f"{section}.", str(key), known)
    return cls(**{k: _coerce(v, hints[k], source, f"{section}.{k}") for k, v in data.items()})


def profile_from_dict(data: Any, source: str) -> Profile:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a profile must be a YAML mapping")
    known = ["name", "description", *SECTIONS]
    for key in data:
        if key not in known:
            raise _unknown_key(source, "", str(key), known)
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ConfigError(f"{source}: '{key}' is required (a string)")
    sections = {name: _parse_section(cls, data.get(name), source, name) for name, cls in SECTIONS.items()}
    profile = Profile(name=data["name"], description=data["description"].strip(), source=source, **sections)
    validate_profile(profile)
    return profile


def validate_profile(p: Profile) -> None:
    """Rules that span keys; every message names the file."""
    src, m, hw, e = p.source, p.match, p.hardware, p.engine

    def bad(msg: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{src}: {msg}", hint=hint)

    for arch in m.architectures:
        if arch not in ARCHITECTURE_FAMILIES:
            raise bad(f"match.architectures: unknown architecture '{arch}'",
                      "one of " + ", ".join(ARCHITECTURE_FAMILIES))
    for q in m.quantization:
        if q not in QUANTIZATIONS:
            raise bad(f"match.quantization: unknown value '{q}'", "one of " + ", ".join(QUANTIZATIONS))
    if m.min_params_b is not None and m.max_params_b is not None and m.min_params_b > m.max_params_b:
        raise bad("match.min_params_b is larger than match.max_params_b")
    if hw.gpu_count < 0 or hw.nodes < 1:
        raise bad("hardware.gpu_count must be >= 0 and hardware.nodes >= 1")
    tp, pp = e.tensor_parallel_size or 1, e.pipeline_parallel_size or 1
    if hw.gpu_count == 0:
        if tp * pp != 1 or hw.nodes != 1:
            raise bad("a CPU profile (hardware.gpu_count: 0) runs one process on one node: TP = PP = nodes = 1")
    elif tp * pp != hw.gpu_count * hw.nodes:
        raise bad(f"engine uses TP {tp} x PP {pp} = {tp * pp} GPUs but hardware says {hw.gpu_count} GPUs x "
                  f"{hw.nodes} nodes", "tensor_parallel_size x pipeline_parallel_size must equal gpu_count x nodes")
    for setting in profile_settings():  # bounds, choices and rules of the one registry
        problem = value_problem(setting, getattr(e, setting.name))
        if problem:
            raise bad(f"engine.{problem}")
    s = p.sampling
    if s.temperature is not None and s.temperature < 0 or s.top_p is not None and not 0 < s.top_p <= 1:
        raise bad("sampling: temperature must be >= 0 and top_p in (0, 1]")
    if s.max_tokens is not None and e.max_model_len is not None and s.max_tokens >= e.max_model_len:
        raise bad("sampling.max_tokens must leave room for the prompt within engine.max_model_len")


def load_profile_file(path: str | Path) -> Profile:
    from vdeploy.config_file import read_yaml

    path = Path(path)
    profile = profile_from_dict(read_yaml(path, "profile"), str(path))
    if profile.name != path.stem:
        raise ConfigError(f"{path}: name '{profile.name}' differs from the file name", hint=f"name: {path.stem}")
    return profile


def builtin_profile_files() -> list[Path]:
    """The shipped YAML files, found through the package so a non-editable install works too."""
    root = resources.files("vdeploy.profiles_data")
    return sorted(Path(str(f)) for f in root.iterdir() if f.name.endswith(".yaml"))


def load_profiles(extra_dirs: Iterable[str | Path] = (), env: Mapping[str, str] | None = None) -> list[Profile]:
    """Built-in profiles, then those in $VDEPLOY_PROFILES_DIR and `extra_dirs` (a same-named profile replaces)."""
    env = os.environ if env is None else env
    files = builtin_profile_files()
    dirs = [*([env[USER_PROFILES_ENV]] if env.get(USER_PROFILES_ENV) else []), *extra_dirs]
    for d in dirs:
        directory = Path(d).expanduser()
        if not directory.is_dir():
            raise ConfigError(f"profile directory {directory} does not exist", hint=f"check ${USER_PROFILES_ENV}")
        files += sorted(directory.glob("*.yaml"))
    by_name: dict[str, Profile] = {}
    for f in files:
        profile = load_profile_file(f)
        by_name[profile.name] = profile
    return sorted(by_name.values(), key=lambda p: p.name)


def get_profile(name: str, profiles: list[Profile] | None = None) -> Profile:
    """A profile by name, or by path to a YAML file."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return load_profile_file(name)
    profiles = load_profiles() if profiles is None else profiles
    for p in profiles:
        if p.name == name:
            return p
    close = difflib.get_close_matches(name, [p.name for p in profiles], n=1)
    raise ConfigError(f"no profile named '{name}'",
                      hint=f"did you mean '{close[0]}'?" if close else "vdeploy profiles list shows them")
