"""The tensor-parallel group and pipeline stage of one rank, passed explicitly (no module globals: two engines in a
process must not collide). With tp_size == 1 every collective is a no-op and with pp_size == 1 no point-to-point
transfer happens, so a single rank never touches torch.distributed.

Ranks are laid out [pp][tp]: global rank = pp_rank * tp_size + tp_rank, so a tensor-parallel group is a contiguous
block of ranks (one node's GPUs) and only the stage boundary crosses nodes."""

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
    # DP attention (DeepSeek MLA): attention, embedding and LM head replicated, each tensor rank serving its own
    # requests; only the MLP / experts use the tensor-parallel group (vdeploy.layers.dp)
    dp_attention: bool = False

    def attention_state(self) -> "ParallelState":
        """The parallel state of the layers each rank runs for its own requests alone under DP attention."""
        return ParallelState(pp_rank=self.pp_rank, pp_size=self.pp_size) if self.dp_attention else self

    @property
    def is_first_rank(self) -> bool:
        """Tensor-parallel rank 0 of its stage."""
        return self.tp_rank == 0

    @property
    def rank(self) -> int:
        """Global rank in the [pp][tp] layout."""
        return self.pp_rank * self.tp_size + self.tp_rank

    @property
    def is_first_stage(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    @property
    def is_driver(self) -> bool:
        """The rank that samples and answers each step: tensor rank 0 of the last pipeline stage."""
        return self.is_last_stage and self.tp_rank == 0

    def send_to_next_stage(self, x: torch.Tensor) -> None:
        """Blocking send to the same tensor rank of the next stage (the default group: NCCL or gloo)."""
        import torch.distributed as dist

        dist.send(x.contiguous(), dst=self.rank + self.tp_size)

    def recv_from_prev_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Fill `x` (preallocated with the expected shape and dtype) from the previous stage's same tensor rank."""
        import torch.distributed as dist

        dist.recv(x, src=self.rank - self.tp_size)
        return x

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        if self.tp_size == 1:
            return x
        import torch.distributed as dist

        dist.all_reduce(x, group=self.group)
        return x

    def broadcast_from_first(self, x: torch.Tensor) -> torch.Tensor:
        """Overwrite `x` on every tensor rank with tensor rank 0's `x` (same shape and dtype everywhere)."""
        if self.tp_size == 1:
            return x
        import torch.distributed as dist

        dist.broadcast(x, src=self.pp_rank * self.tp_size, group=self.group)
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


