"""Llama and Qwen2 decoders (the DeepSeek-R1 distills): one implementation, Qwen2 differs only by the QKV bias
(ModelConfig.attention_bias). Tensor parallel through the layers in vdeploy.layers; attention through the paged
KV cache described by the ForwardContext.

forward(input_ids [T], positions [T], ctx) -> hidden [T, D]; compute_logits(hidden [N, D]) -> float32 [N, V].
With pipeline stages (vdeploy.models.pipeline_stage) a rank builds only its stage: forward takes the previous
stage's StageActivations and returns StageActivations on every stage but the last.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vdeploy.config import ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError
from vdeploy.layers.activation import SiluAndMul
from vdeploy.layers.attention import Attention
from vdeploy.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from vdeploy.layers.forward_context import ForwardContext
from vdeploy.layers.layernorm import RMSNorm
from vdeploy.layers.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from vdeploy.layers.rotary import RotaryEmbedding
from vdeploy.models.pipeline_stage import PipelineStage, StageActivations, ignored_checkpoint_patterns
from vdeploy.models.weight_mapping import StackedParam, StackedParamsMapping


# checkpoint projections fused into one of our layers: (our layer, checkpoint name, shard id); LoRA adapters
# (vdeploy.lora) target the same checkpoint names
STACKED_PARAMS = (
    StackedParam("qkv_proj", "q_proj", "q"),
    StackedParam("qkv_proj", "k_proj", "k"),
    StackedParam("qkv_proj", "v_proj", "v"),
    StackedParam("gate_up_proj", "gate_proj", 0),
    StackedParam("gate_up_proj", "up_proj", 1),
)


class LlamaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, parallel: ParallelState, params_dtype: torch.dtype):
        super().__init__()
        bias = bool(cfg.raw.get("mlp_bias", False))
        common = dict(parallel=parallel, quant_config=cfg.quant, params_dtype=params_dtype)
        self.gate_up_proj = MergedColumnParallelLinear(
            cfg.hidden_size, [cfg.intermediate_size, cfg.intermediate_size], bias=bias, **common
        )
        self.down_proj = RowParallelLinear(cfg.intermediate_size, cfg.hidden_size, bias=bias, **common)
        self.act = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [T, D] -> [T, 2I/tp] -> [T, I/tp] -> [T, D]
        return self.down_proj(self.act(self.gate_up_proj(x)))


class LlamaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, parallel: ParallelState, rotary: RotaryEmbedding,
                 params_dtype: torch.dtype):
        super().__init__()
        common = dict(parallel=parallel, quant_config=cfg.quant, params_dtype=params_dtype)
        self.qkv_proj = QKVParallelLinear(
            cfg.hidden_size, cfg.head_dim, cfg.num_heads, cfg.num_kv_heads, bias=cfg.attention_bias, **common
        )
        # Llama's attention_bias also covers o_proj; Qwen2 has biases on q/k/v only
        o_bias = cfg.attention_bias and cfg.family == "llama"
        self.o_proj = RowParallelLinear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=o_bias, **common)
        self.q_size, self.kv_size = self.qkv_proj.q_size, self.qkv_proj.kv_size
        # the attention layer applies the rotary embedding (fused with its KV-cache store)
        self.attn = Attention(self.qkv_proj.num_heads, cfg.head_dim, cfg.head_dim**-0.5,
                              self.qkv_proj.num_kv_heads, layer_idx, rotary=rotary)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        qkv = self.qkv_proj(hidden)  # [T, (H + 2 Hk) D / tp]
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        return self.o_proj(self.attn(q, k, v, ctx, positions))  # [T, D]


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, parallel: ParallelState, rotary: RotaryEmbedding,
                 params_dtype: torch.dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)
        self.self_attn = LlamaAttention(cfg, layer_idx, parallel, rotary, params_dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)
        self.mlp = LlamaMLP(cfg, parallel, params_dtype)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor | None,
                ctx: ForwardContext) -> tuple[torch.Tensor, torch.Tensor]:
        # the residual stream is carried separately so each norm fuses the residual add
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, ctx)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class LlamaModel(nn.Module):
    def __init__(self, cfg: ModelConfig, parallel: ParallelState, params_dtype: torch.dtype):
        super().__init__()
        self.stage = PipelineStage.of(cfg.num_layers, parallel)  # every layer when there is one stage
        self.embed_tokens = self.stage.first_stage_module(lambda: VocabParallelEmbedding(
            cfg.vocab_size, cfg.hidden_size, parallel=parallel, params_dtype=params_dtype))
        # one rotary cache shared by every layer (it is large for 128k contexts)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta,
                                          cfg.rope_scaling)
        self.layers = self.stage.build_layers(
            lambda i: LlamaDecoderLayer(cfg, i, parallel, self.rotary_emb, params_dtype))
        self.norm = self.stage.last_stage_module(lambda: RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext,
                intermediate: StageActivations | None = None) -> torch.Tensor | StageActivations:
        return self.stage.run_decoder(self.embed_tokens, self.layers, self.norm, input_ids, positions, ctx,
                                      intermediate)


class LlamaForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig, parallel: ParallelState | None = None,
                 params_dtype: torch.dtype | None = None):
        super().__init__()
        self.config = config
        self.parallel = parallel or ParallelState()
        params_dtype = params_dtype or torch.get_default_dtype()
        self.model = LlamaModel(config, self.parallel, params_dtype)
        self.lm_head, self.head_loads_embedding = self.model.stage.lm_head(
            config.tie_word_embeddings, self.model.embed_tokens, lambda: ParallelLMHead(
                config.vocab_size, config.hidden_size, parallel=self.parallel, params_dtype=params_dtype))
        self.weight_mapping = StackedParamsMapping(
            stacked=STACKED_PARAMS, ignored_patterns=ignored_checkpoint_patterns(config.tie_word_embeddings))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext,
                intermediate: StageActivations | None = None) -> torch.Tensor | StageActivations:
        return self.model(input_ids, positions, ctx, intermediate)  # [T, D] (last stage)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.compute_logits(hidden)  # [N, V] float32, full vocabulary on every rank

    def map_checkpoint_name(self, name: str) -> tuple[str, Any] | None:
        head = self.model.stage.head_target(self.head_loads_embedding, name)
        if head is not None:
            return head, None
        if not self.model.stage.owns_checkpoint_tensor(name):
            return None  # another pipeline stage's weight
        return self.weight_mapping.to_param(name)

    def checkpoint_name_of(self, param_name: str, shard_id: Any) -> str:
        return self.weight_mapping.to_checkpoint(param_name, shard_id)


class Qwen2ForCausalLM(LlamaForCausalLM):
    """Qwen2 = Llama with biases on q/k/v (set by ModelConfig.attention_bias for the qwen2 family)."""

    def __init__(self, config: ModelConfig, parallel: ParallelState | None = None,
                 params_dtype: torch.dtype | None = None):
        sliding = qwen2_sliding_layers(config)
        if sliding:
            raise ConfigError(f"Qwen2 sliding-window attention is not supported (layers {sliding} slide)",
                              hint="the DeepSeek-R1 distills use full attention (use_sliding_window: false)")
        super().__init__(config, parallel, params_dtype)


def qwen2_sliding_layers(config: ModelConfig) -> list[int]:
    """The layers transformers' Qwen2 runs with a sliding window that can exclude a key within our context (at most
    max_position_embeddings): those named "sliding_attention" in layer_types, or else those at or past
    max_window_layers (its default 28), when use_sliding_window is on. A window spanning the context slides nothing."""
    raw = config.raw
    window = raw.get("sliding_window", 4096)  # transformers' default when the key is absent
    if not raw.get("use_sliding_window") or window is None or window >= config.max_position_embeddings:
        return []
    first = 28 if raw.get("max_window_layers") is None else raw["max_window_layers"]
    types = raw.get("layer_types") or ["sliding_attention" if i >= first else "full" for i in range(config.num_layers)]
    return [i for i, kind in enumerate(types[:config.num_layers]) if kind == "sliding_attention"]
