"""The LoRA flags `serve`, `generate` and `bench` share (vLLM's spellings). Only typer here."""

from __future__ import annotations

from typing import Any, Optional

import typer


def lora_modules_option() -> Any:
    return typer.Option("--lora-modules", help="A PEFT LoRA adapter to load at start, as name=path (repeat the flag "
                        "for more); requests choose it by name. Implies --enable-lora.", show_default=False)


def enable_lora_option() -> Any:
    return typer.Option("--enable-lora", help="Reserve LoRA adapter slots (adapters may then also be loaded at "
                        "runtime).")


def max_loras_option() -> Any:
    return typer.Option("--max-loras", min=1, help="LoRA adapters resident at once (default 1).")


def max_lora_rank_option() -> Any:
    return typer.Option("--max-lora-rank", min=1, help="Highest LoRA rank served (default 16); slots are this wide.")


def lora_settings(enable_lora: Optional[bool], lora_modules: Optional[list[str]], max_loras: Optional[int],
                  max_lora_rank: Optional[int]) -> dict[str, Any]:
    """The engine settings (vdeploy.profiles.SETTINGS names) the flags give; None where a flag was not given."""
    from vdeploy.lora.request import parse_lora_modules

    return {"enable_lora": enable_lora or None,
            "lora_modules": parse_lora_modules(lora_modules) if lora_modules else None,
            "max_loras": max_loras, "max_lora_rank": max_lora_rank}
