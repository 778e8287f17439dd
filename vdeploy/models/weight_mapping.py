"""How checkpoint tensor names map onto a model's parameters.

The loader asks the model two questions: `map_checkpoint_name(name) -> (param_name, shard_id) | None` (None: a
tensor the model deliberately ignores) and `checkpoint_name_of(param_name, shard_id) -> str` (to name what is
missing). `StackedParamsMapping` answers both for models whose fused parameters (qkv_proj, gate_up_proj) are loaded
from several checkpoint tensors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StackedParam:
    param_name: str  # name segment in the model, e.g. "qkv_proj"
    checkpoint_name: str  # name segment in the checkpoint, e.g. "q_proj"
    shard_id: Any  # what the fused parameter's weight_loader expects, e.g. "q" or 0


@dataclass(frozen=True)
class StackedParamsMapping:
    stacked: tuple[StackedParam, ...] = ()
    ignored_patterns: tuple[str, ...] = ()  # regexes of checkpoint names to skip (e.g. rotary inv_freq buffers)
    _ignored: tuple[re.Pattern, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_ignored", tuple(re.compile(p) for p in self.ignored_patterns))

    def to_param(self, checkpoint_name: str) -> tuple[str, Any] | None:
        if any(p.search(checkpoint_name) for p in self._ignored):
            return None
        for entry in self.stacked:
            segment = f".{entry.checkpoint_name}."
            if segment in checkpoint_name:
                return checkpoint_name.replace(segment, f".{entry.param_name}.", 1), entry.shard_id
        return checkpoint_name, None

    def to_checkpoint(self, param_name: str, shard_id: Any) -> str:
        if shard_id is None:
            return param_name
        for entry in self.stacked:
            segment = f".{entry.param_name}."
            if entry.shard_id == shard_id and segment in param_name:
                return param_name.replace(segment, f".{entry.checkpoint_name}.", 1)
        return f"{param_name} (shard {shard_id!r})"
