"""The one table of the dtypes vdeploy names: each dtype's canonical name, the spellings it also accepts, its size,
its torch attribute and its safetensors code. The byte counts (vdeploy.config), torch dtypes (vdeploy.worker.device,
vdeploy.models.loader), KV-cache sizes (vdeploy.cli.inspect) and the checkpoint codes (vdeploy.checkpoint.layout)
are views of it. No torch import here: the CLI and the planner use it at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DType:
    name: str  # canonical, as EngineConfig and config.json write it
    bytes: int
    torch_attr: str  # getattr(torch, torch_attr)
    safetensors: str  # the header's code
    aliases: tuple[str, ...] = ()
    is_float8: bool = False  # a storage format (KV cache, FP8 weights), never an activation dtype

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


TABLE: tuple[DType, ...] = (
    DType("bfloat16", 2, "bfloat16", "BF16", ("bf16",)),
    DType("float16", 2, "float16", "F16", ("fp16", "half")),
    DType("float32", 4, "float32", "F32", ("fp32", "float")),
    DType("fp8_e4m3", 1, "float8_e4m3fn", "F8_E4M3", ("fp8",), is_float8=True),
)

ACTIVATION = tuple(d for d in TABLE if not d.is_float8)  # what weights and activations may compute in


def lookup(name: str) -> DType | None:
    """The dtype spelled `name` (canonical or an alias, any case), or None."""
    key = name.lower()
    return next((d for d in TABLE if key in d.spellings), None)


def byte_sizes(dtypes: tuple[DType, ...] = TABLE) -> dict[str, int]:
    """Every spelling -> bytes per element."""
    return {spelling: d.bytes for d in dtypes for spelling in d.spellings}


def torch_dtypes(dtypes: tuple[DType, ...] = TABLE) -> dict[str, Any]:
    """Every spelling -> torch dtype (imports torch)."""
    import torch

    return {spelling: getattr(torch, d.torch_attr) for d in dtypes for spelling in d.spellings}


def safetensors_codes(dtypes: tuple[DType, ...] = ACTIVATION) -> dict[str, str]:
    """Canonical name -> safetensors header code."""
    return {d.name: d.safetensors for d in dtypes}
