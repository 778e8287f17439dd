"""DeepSeek-V2 / V3 (R1) decoders, implemented natively (the repository's modeling_deepseek.py is never run).

Attention is MLA over a latent paged cache (vdeploy.layers.mla); the first `first_k_dense_replace` layers have a
dense MLP, the rest a mixture of experts (vdeploy.layers.moe): router → routed experts (split across TP ranks along
the intermediate dim) + shared experts, summed and all-reduced once. Block-FP8 checkpoints (R1) load through the
FP8 linear method. The multi-token-prediction layer (index num_hidden_layers, R1's layer 61) is built and loaded
only for MTP speculative decoding (`mtp=True`, vdeploy.models.deepseek_mtp); otherwise its tensors are skipped.

forward(input_ids [T], positions [T], ctx) -> hidden [T, D]; compute_logits(hidden [N, D]) -> float32 [N, V].
With pipeline stages (vdeploy.models.pipeline_stage) a rank builds only its stage: forward takes the previous
stage's StageActivations and returns StageActivations on every stage but the last.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from vdeploy.config import ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.layers import ops
from vdeploy.layers.activation import SiluAndMul
from vdeploy.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from vdeploy.layers.forward_context import ForwardContext
from vdeploy.layers.layernorm import RMSNorm
from vdeploy.layers.linear import MergedColumnParallelLinear, RowParallelLinear
from vdeploy.layers.mla import MLAttention, merges_qkv_a, mla_rotary
from vdeploy.layers.rotary import RotaryEmbedding
from vdeploy.layers.side_stream import SideStream
from vdeploy.layers.moe import RoutedExperts, RoutingSpec
from vdeploy.layers.weight_loading import default_weight_loader, set_weight_attrs
from vdeploy.models.pipeline_stage import PipelineStage, StageActivations, ignored_checkpoint_patterns
from vdeploy.models.weight_mapping import StackedParam, StackedParamsMapping

_EXPERT = re.compile(r"^(?P<prefix>.*\.mlp\.experts)\.(?P<expert>\d+)\.(?P<proj>gate_proj|up_proj|down_proj)"
                     r"\.(?P<kind>weight|weight_scale_inv)$")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


class DeepseekMLP(nn.Module):
    """Dense MLP (first layers) and shared experts; `reduce_results=False` leaves the all-reduce to the MoE."""

    def __init__(self, cfg: ModelConfig, intermediate: int, parallel: ParallelState, params_dtype: torch.dtype,
                 reduce_results: bool = True):
        super().__init__()
        common = dict(parallel=parallel, quant_config=cfg.quant, params_dtype=params_dtype)
        self.gate_up_proj = MergedColumnParallelLinear(cfg.hidden_size, [intermediate, intermediate], **common)
        self.down_proj = RowParallelLinear(intermediate, cfg.hidden_size, reduce_results=reduce_results, **common)
        self.act = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_up_proj(x)))  # [T, D]


class DeepseekMoE(nn.Module):
    def __init__(self, cfg: ModelConfig, parallel: ParallelState, params_dtype: torch.dtype,
                 side_stream: SideStream | None = None):
        super().__init__()
        self.cfg, self.parallel, self.params_dtype = cfg, parallel, params_dtype
        self.side_stream = side_stream  # the model's: shared experts beside the routed ones (None: inline)
        # the router stays unquantized (BF16 in R1) and accumulates in float32, like the reference implementation
        self.gate = nn.Module()
        self.gate.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size, dtype=params_dtype),
                                        requires_grad=False)
        set_weight_attrs(self.gate.weight, weight_loader=default_weight_loader)
        if cfg.topk_method == "noaux_tc":
            self.gate.e_score_correction_bias = nn.Parameter(
                torch.empty(cfg.n_routed_experts, dtype=torch.float32), requires_grad=False)
            set_weight_attrs(self.gate.e_score_correction_bias, weight_loader=default_weight_loader, dummy_fill=0.0)
        self.routing = RoutingSpec.of(cfg)
        fp8 = cfg.quant is not None and cfg.quant.method == "fp8"
        self.experts = RoutedExperts(cfg, parallel, params_dtype, fp8)
        self.shared_experts = None
        if cfg.n_shared_experts:
            self.shared_experts = DeepseekMLP(cfg, cfg.moe_intermediate_size * cfg.n_shared_experts, parallel,
                                              params_dtype, reduce_results=False)

    def after_uniform_dummy_fill(self) -> None:
        """`--dummy-weights uniform` runs vLLM's dummy workload. Its router logits are ~1e-5, and vLLM's grouped_topk
        takes the softmax in bf16, where every probability rounds to 1/E: torch.topk's tie-break then sends every
        token to the same k experts (a V2-Lite decode step streams 6 of 64 experts a layer; vLLM 0.26's profile,
        benchmarks/results/2026-12-06g-h100/). The reference and vdeploy take it in float32, which still
        tells the experts apart, so here zero logits make the same tie. Sigmoid routers (V3/R1) need nothing: the
        correction bias decides their choice in both engines."""
        if not self.routing.sigmoid:
            with torch.no_grad():
                self.gate.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [T, D] -> [T, D]
        shared = None  # [T, D] partial sum, or (small batches on a GPU) the join of its side-stream launch
        if self.shared_experts is not None:
            shared = (self.side_stream.start(self.shared_experts, x) if self.side_stream is not None
                      else self.shared_experts(x))
        router_logits = ops.router_logits(x, self.gate.weight)  # [T, E] float32 (ops.router_weight)
        bias = getattr(self.gate, "e_score_correction_bias", None)
        topk_weights, topk_ids = ops.select_experts(router_logits, bias, self.routing)
        # routed + shared in one pass: the fused MoE adds `shared` while summing each token's k experts
        out = self.experts(x, topk_weights, topk_ids, shared_output=shared)  # this rank's partial sum [T, D]
        return self.parallel.all_reduce(out)  # one all-reduce per MoE layer


class DeepseekDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, parallel: ParallelState, rotary: RotaryEmbedding,
                 params_dtype: torch.dtype, side_stream: SideStream | None = None):
        super().__init__()
        self.parallel = parallel
        # DP attention: replicated attention over this rank's own requests (parallel.attention_state())
        self.self_attn = MLAttention(cfg, layer_idx, parallel.attention_state(), rotary, params_dtype)
        if cfg.is_moe_layer(layer_idx):
            self.mlp: nn.Module = DeepseekMoE(cfg, parallel, params_dtype, side_stream)
        else:
            self.mlp = DeepseekMLP(cfg, cfg.intermediate_size, parallel, params_dtype)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype)

    def forward(self, positions, hidden, residual, ctx: ForwardContext):
        if residual is None:
            residual = hidden
            hidden = self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        if hidden.shape[0]:  # DP attention: a rank without requests this step still joins the MLP's gathers
            hidden = self.self_attn(positions, hidden, ctx)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        if ctx.dp is not None:  # DP attention: the experts (split over the ranks) see every rank's tokens
            return ctx.dp.own(self.mlp(ctx.dp.gather(hidden, self.parallel))), residual
        return self.mlp(hidden), residual


class DeepseekModel(nn.Module):
    def __init__(self, cfg: ModelConfig, parallel: ParallelState, params_dtype: torch.dtype):
        super().__init__()
        self.stage = PipelineStage.of(cfg.num_layers, parallel)  # every layer when there is one stage
        self.embed_tokens = self.stage.first_stage_module(lambda: VocabParallelEmbedding(
            cfg.vocab_size, cfg.hidden_size, parallel=parallel.attention_state(), params_dtype=params_dtype))
        self.rotary_emb = mla_rotary(cfg)  # shared by every layer
        self.side_stream = SideStream()  # one per model too: shared experts beside the routed ones at small batches
        self.layers = self.stage.build_layers(
            lambda i: DeepseekDecoderLayer(cfg, i, parallel, self.rotary_emb, params_dtype, self.side_stream))
        self.norm = self.stage.last_stage_module(lambda: RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, params_dtype))

    def forward(self, input_ids, positions, ctx: ForwardContext,
                intermediate: StageActivations | None = None) -> torch.Tensor | StageActivations:
        return self.stage.run_decoder(self.embed_tokens, self.layers, self.norm, input_ids, positions, ctx,
                                      intermediate)


class DeepseekV3ForCausalLM(nn.Module):
    def __init__(self, config: ModelConfig, parallel: ParallelState | None = None,
                 params_dtype: torch.dtype | None = None, mtp: bool = False):
        super().__init__()
        from vdeploy.checkpoint.quant_schemes import refuse_unsupported_model

        refuse_unsupported_model(config.family, config.quant)
        self.config = config
        self.parallel = parallel or ParallelState()
        self.params_dtype = params_dtype or torch.get_default_dtype()
        self.model = DeepseekModel(config, self.parallel, self.params_dtype)
        # DP attention: each rank computes its own requests' logits (a replicated head, no gather); HF's
        # DeepseekV2/V3 honour tie_word_embeddings too
        self.lm_head, self.head_loads_embedding = self.model.stage.lm_head(
            config.tie_word_embeddings, self.model.embed_tokens, lambda: ParallelLMHead(
                config.vocab_size, config.hidden_size, parallel=self.parallel.attention_state(),
                params_dtype=self.params_dtype))
        self.weight_mapping = StackedParamsMapping(
            stacked=(StackedParam("gate_up_proj", "gate_proj", 0), StackedParam("gate_up_proj", "up_proj", 1))
            + ((StackedParam("fused_qkv_a_proj", "q_a_proj", 0),  # MLAttention merges them (mla.merges_qkv_a)
                StackedParam("fused_qkv_a_proj", "kv_a_proj_with_mqa", 1)) if merges_qkv_a(config) else ()),
            ignored_patterns=ignored_checkpoint_patterns(config.tie_word_embeddings),
        )
        self.mtp = self._build_mtp() if mtp else None

    def _build_mtp(self) -> nn.Module:
        from vdeploy.errors import ConfigError
        from vdeploy.models.deepseek_mtp import DeepseekMTP

        if self.config.num_nextn_predict_layers < 1:
            raise ConfigError("speculative method 'mtp' needs a multi-token-prediction layer, and this checkpoint "
                              "has none (num_nextn_predict_layers is 0)", hint='use {"method": "ngram", ...}')
        if self.parallel.pp_size > 1:
            raise ConfigError("MTP speculative decoding runs with one pipeline stage",
                              hint="use tensor parallelism, or n-gram drafts")
        return DeepseekMTP(self.config, self.parallel, self.model.rotary_emb, self.params_dtype,
                           self.model.side_stream)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, ctx: ForwardContext,
                intermediate: StageActivations | None = None) -> torch.Tensor | StageActivations:
        return self.model(input_ids, positions, ctx, intermediate)  # [T, D] (last stage)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.compute_logits(hidden)

    def mtp_forward(self, input_ids: torch.Tensor, positions: torch.Tensor, prev_hidden: torch.Tensor,
                    ctx: ForwardContext) -> torch.Tensor:
        """The MTP module on tokens [T] (each the token after its position) and hidden states [T, D] -> its
        normalised hidden states [T, D]; the embedding is the main model's."""
        return self.mtp(self.model.embed_tokens(input_ids), positions, prev_hidden, ctx)

    def mtp_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 [N, V] draft logits from mtp_forward's hidden states [N, D], through the main model's head."""
        return self.lm_head.compute_logits(hidden)

    def process_weights_after_loading(self) -> None:
        """Once, after every weight is in place: routers in the form router_logits reads (ops.router_weight), dense
        experts where FP8 can't run, W_UK/W_UV."""
        for module in self.modules():
            if isinstance(module, DeepseekMoE):
                weight = ops.router_weight(module.gate.weight, self.params_dtype)
                module.gate.weight = nn.Parameter(weight, requires_grad=False)
            elif isinstance(module, RoutedExperts):
                module.process_weights_after_loading(self.params_dtype)
            elif isinstance(module, MLAttention):
                module.prepare_absorbed_weights()

    def map_checkpoint_name(self, name: str) -> tuple[str, Any] | None:
        head = self.model.stage.head_target(self.head_loads_embedding, name)
        if head is not None:
            return head, None
        layer = _LAYER.match(name)
        if layer and int(layer.group(1)) >= self.config.num_layers:
            # multi-token-prediction module (R1's layer 61): loaded only as the MTP draft model
            if self.mtp is None or int(layer.group(1)) != self.mtp.layer_idx:
                return None
            from vdeploy.models.deepseek_mtp import mtp_param_name

            param = mtp_param_name(name[layer.end():])
            if param is None:
                return None  # the copy of the embedding or head: the main model's are used
            name = "mtp." + param
        elif not self.model.stage.owns_checkpoint_tensor(name):
            return None  # another pipeline stage's weight
        expert = _EXPERT.match(name)
        if expert:
            is_scale = expert["kind"] == "weight_scale_inv"
            param = "w2" if expert["proj"] == "down_proj" else "w13"
            return f"{expert['prefix']}.{param}{'_scale' if is_scale else ''}", (
                int(expert["expert"]), expert["proj"], is_scale)
        return self.weight_mapping.to_param(name)

    def checkpoint_name_of(self, param_name: str, shard_id: Any) -> str:
        if isinstance(shard_id, tuple):
            expert, proj, is_scale = shard_id
            prefix = param_name.rsplit(".", 1)[0]
            name = f"{prefix}.{expert}.{proj}.{'weight_scale_inv' if is_scale else 'weight'}"
        else:
            name = self.weight_mapping.to_checkpoint(param_name, shard_id)
        if name.startswith("mtp."):
            from vdeploy.models.deepseek_mtp import mtp_checkpoint_suffix

            name = f"model.layers.{self.mtp.layer_idx}." + mtp_checkpoint_suffix(name.removeprefix("mtp."))
        return name


class DeepseekV2ForCausalLM(DeepseekV3ForCausalLM):
    """DeepSeek-V2 (V2-Lite): softmax routing (greedy or group-limited), q_proj without LoRA when q_lora_rank is
    null — all read from the config by the shared layers."""
