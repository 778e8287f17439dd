"""Vocabulary-parallel token embedding and LM head.

Each rank holds a contiguous block of ceil(V / tp) vocabulary rows (the last block is zero-padded). The embedding
looks up the ids its rank owns, zeroes the others and all-reduces; the LM head computes logits for its rows and
all-gathers them, so every rank ends up with float32 logits over the full vocabulary. With tied embeddings the model
uses its embedding module as the head (one parameter, loaded once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.layers.weight_loading import LoadedWeight, WeightShapeError, as_lazy, copy_checked, set_weight_attrs


class VocabParallelEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, *, parallel: ParallelState,
                 params_dtype: torch.dtype | None = None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.parallel = parallel
        self.rows_per_rank = -(-num_embeddings // parallel.tp_size)
        self.vocab_start = parallel.tp_rank * self.rows_per_rank
        self.vocab_end = min(self.vocab_start + self.rows_per_rank, num_embeddings)  # may be < start+rows (padding)
        dtype = params_dtype or torch.get_default_dtype()
        self.weight = nn.Parameter(torch.empty(self.rows_per_rank, embedding_dim, dtype=dtype), requires_grad=False)
        set_weight_attrs(self.weight, output_dim=0, input_dim=None, weight_loader=self.weight_loader)

    def weight_loader(self, param: torch.Tensor, loaded_weight: LoadedWeight, shard_id=None) -> None:
        if shard_id is not None:
            raise WeightShapeError(f"embedding has no shards, got shard id {shard_id!r}")
        src = as_lazy(loaded_weight)
        if tuple(src.shape) != (self.num_embeddings, self.embedding_dim):
            raise WeightShapeError(
                f"expected shape {[self.num_embeddings, self.embedding_dim]}, checkpoint has {list(src.shape)}"
            )
        owned = max(self.vocab_end - self.vocab_start, 0)
        copy_checked(param.data[:owned], src.narrow(0, self.vocab_start, owned))
        with torch.no_grad():
            param.data[owned:].zero_()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # input_ids: [T] -> [T, D]
        if self.parallel.tp_size == 1:
            return F.embedding(input_ids, self.weight)
        owned = (input_ids >= self.vocab_start) & (input_ids < self.vocab_end)
        local_ids = torch.where(owned, input_ids - self.vocab_start, torch.zeros_like(input_ids))
        out = F.embedding(local_ids, self.weight) * owned.unsqueeze(-1).to(self.weight.dtype)
        return self.parallel.all_reduce(out)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: [N, D] -> float32 logits [N, V], full vocabulary on every rank
        local = F.linear(hidden, self.weight).float()  # [N, V/tp (padded)]
        full = self.parallel.all_gather(local, dim=-1)  # [N, rows_per_rank * tp]
        return full[:, : self.num_embeddings]

    def extra_repr(self) -> str:
        return f"vocab={self.vocab_start}:{self.vocab_end}/{self.num_embeddings}, dim={self.embedding_dim}"


class ParallelLMHead(VocabParallelEmbedding):
    """An untied output projection; same sharding as the embedding, used only through compute_logits."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.compute_logits(hidden)
