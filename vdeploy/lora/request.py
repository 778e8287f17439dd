"""`LoRARequest`: which adapter a generate call uses, spelled as vLLM spells it; `--lora-modules` values."""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.errors import ConfigError


@dataclass(frozen=True)
class LoRARequest:
    lora_name: str  # what requests (and the server's `model` field) call it
    lora_int_id: int  # vLLM's numeric id; kept for compatibility, vdeploy goes by the name
    lora_path: str  # the PEFT adapter directory; loaded on first use


def parse_lora_modules(modules) -> tuple[tuple[str, str], ...]:
    """(name, path) pairs from "name=path" strings, vLLM's JSON form '{"name": ..., "path": ...}', or pairs
    (--lora-modules, LLM(lora_modules=...))."""
    import json

    pairs = []
    for item in modules:
        if isinstance(item, str) and item.lstrip().startswith("{"):
            try:
                entry = json.loads(item)
                item = (entry["name"], entry["path"])
            except (ValueError, KeyError, TypeError):
                raise ConfigError(f"--lora-modules: {item!r} is not {{\"name\": ..., \"path\": ...}}") from None
        if isinstance(item, str):
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--lora-modules expects name=path, got {item!r}")
            item = (name, path)
        name, path = item
        pairs.append((str(name), str(path)))
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--lora-modules names an adapter twice: {', '.join(names)}")
    return tuple(pairs)
