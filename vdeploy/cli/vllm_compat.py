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
