"""The LoRA flags `serve`, `generate` and `bench` share (vLLM's spellings), worded by the settings registry
(vdeploy.engine_settings). Only typer and the standard library here."""

from __future__ import annotations

from typing import Any, Optional

import typer

from vdeploy.cli.engine_options import engine_option
from vdeploy.engine_settings import setting


def lora_modules_option(more: str = "") -> Any:
    """--lora-modules, repeatable (a list, which the registry's scalar options do not take); `more`: what the
    command adds to the registry's wording."""
    s = setting("lora_modules")
    return typer.Option(*s.flags, help=f"{s.help} {more}".strip(), show_default=False)


def enable_lora_option() -> Any:
    return engine_option("enable_lora")


def max_loras_option() -> Any:
    return engine_option("max_loras")


def max_lora_rank_option() -> Any:
    return engine_option("max_lora_rank")


def lora_settings(enable_lora: Optional[bool], lora_modules: Optional[list[str]], max_loras: Optional[int],
                  max_lora_rank: Optional[int]) -> dict[str, Any]:
    """The engine settings (vdeploy.profiles.SETTINGS names) the flags give; None where a flag was not given."""
    from vdeploy.lora.request import parse_lora_modules

    return {"enable_lora": enable_lora or None,
            "lora_modules": parse_lora_modules(lora_modules) if lora_modules else None,
            "max_loras": max_loras, "max_lora_rank": max_lora_rank}
