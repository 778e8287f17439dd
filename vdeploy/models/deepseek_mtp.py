"""DeepSeek-V3/R1's multi-token-prediction (MTP) module, used as the draft model of speculative decoding.

The checkpoint stores it as layer `num_hidden_layers` (R1's layer 61): `enorm`, `hnorm`, `eh_proj`, one full decoder
layer (MLA attention + MoE, the usual `self_attn.*` / `mlp.*` / `*_layernorm` names), `shared_head.norm`, and copies
of the embedding (`embed_tokens`) and output head (`shared_head.head`). The DeepSeek-V3 paper shares the embedding
and the head with the main model, so the main model's are used and the copies are not loaded (as HF transformers'
MtpModel does; in R1 they are the same tensors, and loading them would cost 2 x vocab x hidden of memory).

At position i the module combines the main model's final hidden state h_i and the embedding of token i+1:
    x = eh_proj([enorm(emb(t_{i+1})) ; hnorm(h_i)]),  h'_i = block(x) (+ its residual),
    logits(t_{i+2}) = head(shared_head.norm(h'_i)).
Its attention keeps its own paged KV cache layer (index num_hidden_layers) in the same blocks as the main model's
layers. For k > 1 drafts the module runs again on its own normalised output shared_head.norm(h'_i) and the
draft it just produced.
"""

from __future__ import annotations

import torch
from torch import nn

from vdeploy.config import ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.layers.forward_context import ForwardContext
from vdeploy.layers.layernorm import RMSNorm
from vdeploy.layers.linear import ReplicatedLinear
from vdeploy.layers.side_stream import SideStream

# the tensors of the MTP layer that are not a decoder layer's (after "model.layers.{N}.")
MTP_OWN_PREFIXES = ("enorm.", "hnorm.", "eh_proj.", "shared_head.norm.")
# copies of the main model's embedding and head: never loaded (shared)
MTP_SHARED_COPIES = ("embed_tokens.", "shared_head.head.")


class SharedHead(nn.Module):
    def __init__(self, cfg: ModelConfig, params_dtype: torch.dtype):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)


class DeepseekMTP(nn.Module):
    def __init__(self, cfg: ModelConfig, parallel: ParallelState, rotary, params_dtype: torch.dtype,
                 side_stream: SideStream | None = None):
        super().__init__()
        from vdeploy.models.deepseek import DeepseekDecoderLayer

        self.layer_idx = cfg.num_layers  # its KV cache layer and its checkpoint layer number
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)
        # unquantized in the released FP8 checkpoints, and small: the full weight on every rank
        self.eh_proj = ReplicatedLinear(2 * cfg.hidden_size, cfg.hidden_size, parallel=parallel,
                                        params_dtype=params_dtype)
        # the main model's rotary table and side stream (its shared experts beside the routed ones, as the model's)
        self.mtp_block = DeepseekDecoderLayer(cfg, self.layer_idx, parallel, rotary, params_dtype, side_stream)
        self.shared_head = SharedHead(cfg, params_dtype)

    def forward(self, input_embeds: torch.Tensor, positions: torch.Tensor, prev_hidden: torch.Tensor,
                ctx: ForwardContext) -> torch.Tensor:
        """input_embeds [T, D] (embedding of the token after each position), positions [T], prev_hidden [T, D]
        (the main model's, or this module's own output for a further draft) -> its normalised hidden [T, D]."""
        x = torch.cat([self.enorm(input_embeds), self.hnorm(prev_hidden)], dim=-1)  # [T, 2D]
        hidden, residual = self.mtp_block(positions, self.eh_proj(x), None, ctx)
        # normalised for the head, and in that form the input of a further draft (as the main model's hidden
        # state is: after its final norm), as HF transformers' MtpLayer and SGLang chain it
        return self.shared_head.norm(hidden, residual)[0]  # [T, D]


def mtp_param_name(suffix: str) -> str | None:
    """The parameter (under `mtp.`) of a checkpoint tensor `model.layers.{N}.<suffix>`; None for the shared
    copies."""
    if suffix.startswith(MTP_SHARED_COPIES):
        return None
    if suffix.startswith(MTP_OWN_PREFIXES):
        return suffix
    return "mtp_block." + suffix


def mtp_checkpoint_suffix(param_suffix: str) -> str:
    """The inverse of mtp_param_name: 'mtp_block.mlp.gate.weight' -> 'mlp.gate.weight'."""
    return param_suffix.removeprefix("mtp_block.")
