"""`LoRARequest`: which adapter a generate call uses, spelled as vLLM spells it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoRARequest:
    lora_name: str  # what requests (and the server's `model` field) call it
    lora_int_id: int  # vLLM's numeric id; kept for compatibility, vdeploy goes by the name
    lora_path: str  # the PEFT adapter directory; loaded on first use
