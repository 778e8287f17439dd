"""vLLM's command-line habits that vdeploy accepts: size suffixes on token counts (parsed by the settings registry,
vdeploy.engine_settings, which also names the options that do nothing on this device) and `--trust-remote-code`
(a note: vdeploy runs no repository code), so that a command line copied from a GPU server never silently means
less than it says."""

from __future__ import annotations

import typer

from vdeploy.engine_settings import parse_size as parse_token_count

TRUST_REMOTE_CODE_NOTE = ("--trust-remote-code accepted for vLLM compatibility; vdeploy never runs code from a model "
                          "repository (its architectures are built in), so the flag changes nothing")


def parse_size(text: str) -> int:
    """The registry's size parser (vdeploy.engine_settings.parse_size) as a click parameter parser."""
    try:
        return parse_token_count(text)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


def cpu_only_host() -> bool:
    """True when this host has no usable GPU (the same probe serve's planner uses; no torch import)."""
    from vdeploy.env.hardware import detect_hardware

    return detect_hardware().is_cpu_only


SPECULATIVE_HELP = ('Speculative decoding, as vLLM: \'{"method": "ngram", "num_speculative_tokens": 3}\' '
                    '(prompt lookup, any model; "prompt_lookup_min" / "prompt_lookup_max": the n-gram sizes searched, '
                    'default 1 and 3) or {"method": "mtp", ...} (the checkpoint\'s MTP layer: DeepSeek-V3/R1).')


def speculative_flags(text: str | None) -> dict:
    """--speculative-config as engine flags (speculative_method, num_speculative_tokens, prompt_lookup_min, ...): only
    the keys given, each one the engine supports (vdeploy.speculative_config defines them). Unknown keys and bad
    values are refused here, before anything loads (a profile may add a method or a count, never an n-gram range)."""
    from vdeploy.speculative_config import SpeculativeConfig, speculative_settings

    spec = parse_speculative_config(text)
    flags = speculative_settings(spec, "--speculative-config")
    SpeculativeConfig(**spec or {})  # the values, checked as the engine will check them
    return flags


def parse_speculative_config(text: str | None) -> dict | None:
    """vLLM's JSON form of --speculative-config; a clear usage error for anything else."""
    if not text:
        return None
    import json

    from vdeploy.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--speculative-config is not JSON ({e})",
                          hint='e.g. --speculative-config \'{"method": "ngram", "num_speculative_tokens": 3}\'') from None
    if not isinstance(value, dict):
        raise ConfigError("--speculative-config must be a JSON object")
    return value
