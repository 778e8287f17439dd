"""The tensor-parallel group of one rank, passed explicitly (no module globals: two engines in a process
must not collide). With tp_size == 1 every collective is a no-op and torch.distributed is never touched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ParallelState:
    tp_rank: int = 0
    tp_size: int = 1
    group: Any = None  # torch.distributed ProcessGroup of the TP ranks; None when tp_size == 1
    pp_rank: int = 0
    pp_size: int = 1

    @property
    def is_first_rank(self) -> bool:
        return self.tp_rank == 0

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return x
        import torch.distributed as dist

        dist.all_reduce(x, group=self.group)
        return x

    def all_gather(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Concatenate every rank's `x` along `dim` (same shape on every rank)."""
        if self.tp_size == 1:
            return x
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(self.tp_size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=dim)

    def shard_range(self, size: int) -> tuple[int, int]:
        """[start, end) of this rank's equal share of `size` (which must divide evenly)."""
        if size % self.tp_size:
            raise ValueError(f"dimension {size} is not divisible by tensor-parallel size {self.tp_size}")
        part = size // self.tp_size
        return self.tp_rank * part, (self.tp_rank + 1) * part


