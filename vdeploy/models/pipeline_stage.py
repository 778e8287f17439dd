"""Which part of a decoder one pipeline stage owns and how it runs that part, shared by every model family.

A stage owns a contiguous, balanced range of decoder layers; the first stage also owns the token embedding, the
last the final norm and the LM head. Modules a stage does not own are replaced by a parameterless
`StagePlaceholder`, so parameter names (`model.layers.17.…`) stay the same on every stage and the checkpoint tensors
of other stages are simply skipped (`PipelineStage.owns_checkpoint_tensor`): a rank reads only its stage's weights.

Between stages flows `StageActivations`: the hidden state and the residual stream, both [T, D].
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

import torch
from torch import nn

from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError

_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
_FIRST_STAGE_PREFIXES = ("model.embed_tokens.",)
_LAST_STAGE_PREFIXES = ("model.norm.", "lm_head.")


def pp_layer_range(num_layers: int, pp_rank: int, pp_size: int) -> tuple[int, int]:
    """[start, end) of the decoder layers of stage `pp_rank`: balanced, the first `num_layers % pp_size` stages take
    one layer more (61 layers over 2 stages: 0-30 and 31-60)."""
    if pp_size < 1 or not 0 <= pp_rank < pp_size:
        raise ValueError(f"pipeline rank {pp_rank} out of range for {pp_size} stages")
    if num_layers < pp_size:
        raise ConfigError(f"{num_layers} decoder layers cannot be split into {pp_size} pipeline stages",
                          hint="lower --pp to at most the number of layers")
    base, extra = divmod(num_layers, pp_size)
    start = pp_rank * base + min(pp_rank, extra)
    return start, start + base + (1 if pp_rank < extra else 0)


@dataclass(frozen=True)
class StageActivations:
    """What stage s hands to stage s+1."""

    hidden: torch.Tensor  # [T, D]
    residual: torch.Tensor  # [T, D]


class StagePlaceholder(nn.Module):
    """Stands in for a module another pipeline stage owns: no parameters, never called."""

    def forward(self, *args, **kwargs):
        raise RuntimeError("this module belongs to another pipeline stage")


@dataclass(frozen=True)
class PipelineStage:
    num_layers: int
    pp_rank: int = 0
    pp_size: int = 1

    @classmethod
    def of(cls, num_layers: int, parallel: ParallelState) -> PipelineStage:
        return cls(num_layers, parallel.pp_rank, parallel.pp_size)

    @property
    def layer_range(self) -> tuple[int, int]:
        return pp_layer_range(self.num_layers, self.pp_rank, self.pp_size)

    @property
    def is_first(self) -> bool:
        return self.pp_rank == 0

    @property
    def is_last(self) -> bool:
        return self.pp_rank == self.pp_size - 1

    def owns_layer(self, layer_idx: int) -> bool:
        start, end = self.layer_range
        return start <= layer_idx < end

    def build_layers(self, make_layer: Callable[[int], nn.Module]) -> nn.ModuleList:
        """One entry per decoder layer of the whole model: the real layer where this stage owns it."""
        return nn.ModuleList(make_layer(i) if self.owns_layer(i) else StagePlaceholder()
                             for i in range(self.num_layers))

    def first_stage_module(self, make: Callable[[], nn.Module]) -> nn.Module:
        return make() if self.is_first else StagePlaceholder()

    def last_stage_module(self, make: Callable[[], nn.Module]) -> nn.Module:
        return make() if self.is_last else StagePlaceholder()

    def lm_head(self, tied: bool, embed_tokens: nn.Module, make: Callable[[], nn.Module]) -> tuple[nn.Module, bool]:
        """(this stage's LM head, whether it loads model.embed_tokens.weight itself). tie_word_embeddings: on the
        first stage the embedding module is the head (one parameter, loaded once; HF then saves no lm_head.weight),
        a last stage without the embedding builds a head that loads the embedding's weight; otherwise the last
        stage's own head."""
        if tied and self.is_first:
            return embed_tokens, False
        return self.last_stage_module(make), tied

    def head_target(self, loads_embedding: bool, checkpoint_name: str) -> str | None:
        """"lm_head.weight" where this stage's head loads the tied embedding from `checkpoint_name`, else None."""
        if loads_embedding and self.is_last and checkpoint_name == "model.embed_tokens.weight":
            return "lm_head.weight"
        return None

    def own_layers(self, layers: nn.ModuleList) -> Iterator[nn.Module]:
        start, end = self.layer_range
        return islice(layers, start, end)

    def run_decoder(self, embed_tokens: nn.Module, layers: nn.ModuleList, norm: nn.Module, input_ids: torch.Tensor,
                    positions: torch.Tensor, ctx, intermediate: StageActivations | None,
                    ) -> torch.Tensor | StageActivations:
        """A pre-norm decoder's forward over this stage, for every model family: embed the tokens (first stage) or
        continue from the previous stage's activations, run the owned layers (each `layer(positions, hidden,
        residual, ctx) -> (hidden, residual)`), then the final norm (last stage) or hand the activations on."""
        if intermediate is None:
            hidden, residual = embed_tokens(input_ids), None  # [T, D]
        else:
            hidden, residual = intermediate.hidden, intermediate.residual
        for layer in self.own_layers(layers):
            hidden, residual = layer(positions, hidden, residual, ctx)
        if not self.is_last:
            return StageActivations(hidden, residual)
        hidden, _ = norm(hidden, residual)  # the norm also adds the residual
        return hidden  # [T, D]

    def owns_checkpoint_tensor(self, name: str) -> bool:
        """Whether this stage loads the checkpoint tensor `name`. Layers beyond the model's (DeepSeek's
        multi-token-prediction layer) go to the last stage, whose model decides what to do with them."""
        if self.pp_size == 1:
            return True
        layer = _LAYER.match(name)
        if layer:
            index = int(layer.group(1))
            return self.owns_layer(index) or (index >= self.num_layers and self.is_last)
        if name.startswith(_FIRST_STAGE_PREFIXES):
            return self.is_first
        if name.startswith(_LAST_STAGE_PREFIXES):
            return self.is_last
        return True


def forward_stage(model: nn.Module, parallel: ParallelState, input_ids: torch.Tensor, positions: torch.Tensor,
                  ctx, hidden_size: int, dtype: torch.dtype) -> torch.Tensor | None:
    """Run this rank's stage of one step: receive the previous stage's activations (every stage but the first),
    run the owned layers, send to the next stage (every stage but the last). Returns the final hidden [T, D] on the
    last stage, None elsewhere. Every stage stages the same SchedulerOutput, so T is known without a handshake."""
    intermediate = None
    if not parallel.is_first_stage:
        # hidden ‖ residual in one buffer: one transfer per step instead of two
        buffer = torch.empty(2, input_ids.shape[0], hidden_size, dtype=dtype, device=input_ids.device)  # [2, T, D]
        parallel.recv_from_prev_stage(buffer)
        intermediate = StageActivations(buffer[0], buffer[1])
    out = model(input_ids, positions, ctx, intermediate)
    if parallel.is_last_stage:
        return out
    parallel.send_to_next_stage(torch.stack([out.hidden, out.residual]))  # [2, T, D]
    return None


def ignored_checkpoint_patterns(tied: bool) -> tuple[str, ...]:
    """Checkpoint tensors no parameter takes: rotary tables, and under tied embeddings a stored head copy."""
    return (r"rotary_emb\.inv_freq$",) + ((r"^lm_head\.weight$",) if tied else ())
