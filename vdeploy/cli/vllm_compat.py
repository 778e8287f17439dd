"""vLLM's command-line habits that vdeploy accepts: size suffixes on token counts, `--trust-remote-code` (a note:
vdeploy runs no repository code), and a warning for every option that does nothing on this device, so that a
command line copied from a GPU server never silently means less than it says."""

from __future__ import annotations

import re
from typing import Any

import typer

# vLLM's human_readable_int: lower-case suffixes are decimal, upper-case binary ("32k" = 32,000, "32K" = 32,768).
_SUFFIX = {"k": 10**3, "m": 10**6, "g": 10**9, "K": 2**10, "M": 2**20, "G": 2**30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)\s*$")

TRUST_REMOTE_CODE_NOTE = ("--trust-remote-code accepted for vLLM compatibility; vdeploy never runs code from a model "
                          "repository (its architectures are built in), so the flag changes nothing")

# option -> why it does nothing on a CPU-only host
_CPU_NO_EFFECT = {
    # vdeploy.worker.memory_profile: on CPU the KV cache gets a fixed byte budget, not a fraction of a device
    "gpu_memory_utilization": ("--gpu-memory-utilization",
                               "no GPU here: the CPU KV cache has a fixed byte budget (cache.cpu_kv_cache_bytes)"),
    "enforce_eager": ("--enforce-eager", "no GPU here: CUDA graphs are never captured on CPU"),
}


def parse_size(text: str) -> int:
    """'32k' -> 32000, '32K' -> 32768, '16384' -> 16384, '1.5k' -> 1500 (as vLLM parses --max-model-len)."""
    match = _SIZE.match(str(text))
    if not match:
        raise typer.BadParameter(f"{text!r} is not a token count (e.g. 4096, 32k = 32,000, 32K = 32,768)")
    number, suffix = match.groups()
    value = float(number) * _SUFFIX.get(suffix, 1)
    if value != int(value) or value < 1:
        raise typer.BadParameter(f"{text!r} is not a whole, positive number of tokens")
    return int(value)


def size_option(*names: str, help: str) -> Any:
    """A typer option for a token count that takes vLLM's size suffixes."""
    return typer.Option(*names, parser=parse_size, metavar="N", help=f"{help} Suffixes: 32k = 32,000, 32K = 32,768.")


def no_effect_warnings(flags: dict[str, Any], *, cpu_only: bool) -> list[str]:
    """One line per flag that was set but has no effect on this device."""
    if not cpu_only:
        return []
    return [f"{option} has no effect: {why}" for key, (option, why) in _CPU_NO_EFFECT.items()
            if flags.get(key) not in (None, False)]


def cpu_only_host() -> bool:
    """True when this host has no usable GPU (the same probe serve's planner uses; no torch import)."""
    from vdeploy.env.hardware import detect_hardware

    return detect_hardware().is_cpu_only


SPECULATIVE_HELP = ('Speculative decoding, as vLLM: \'{"method": "ngram", "num_speculative_tokens": 3}\' '
                    '(prompt lookup, any model) or {"method": "mtp", ...} (the checkpoint\'s MTP layer: '
                    'DeepSeek-V3/R1).')


def speculative_flags(text: str | None) -> dict:
    """--speculative-config as engine flags (speculative_method, num_speculative_tokens); unknown keys refused."""
    spec = parse_speculative_config(text) or {}
    flags = {"speculative_method": spec.pop("method", None), "num_speculative_tokens": spec.pop(
        "num_speculative_tokens", None)}
    if spec:
        from vdeploy.errors import ConfigError

        raise ConfigError(f"--speculative-config: unknown key(s) {', '.join(sorted(spec))}",
                          hint="method and num_speculative_tokens")
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
