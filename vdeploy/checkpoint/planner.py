"""How many parameters a model has and whether it fits a set of GPUs: weights per GPU under tensor (and pipeline)
parallelism, KV-cache bytes per token, the tokens of KV cache left, and a verdict with advice.

Everything comes from the config (through vdeploy.checkpoint.layout), so `env check --model`, `serve` and the profile
matcher can plan before a single weight is downloaded. `inspect-shards` passes the bytes it measured in the headers.

Conventions:
- Parameters: `ParamEstimate.total` and `.active` cover the main model only; the multi-token-prediction module
  (DeepSeek-V3/R1 layer 61, ~14B) is reported separately as `by_component["mtp"]` because serving does not load it.
- Memory: bytes; GiB = 2**30. Weight bytes likewise exclude the MTP module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vdeploy.checkpoint.layout import (
    COMPONENTS,
    TensorSpec,
    decoder_layer_tensors,
    embedding_tensors,
    final_tensors,
    fp8_block,
    layer_kind,
    mtp_tensors,
    scale_shape,
    storage_dtype,
)
from vdeploy.checkpoint.safetensors_header import DTYPE_SIZES
from vdeploy.checkpoint.tp_rules import SplitDim, fp8_split_dims, tp_advice, tp_problem
from vdeploy.config import ModelConfig
from vdeploy.errors import ConfigError

GIB = 1 << 30
# Below this many tokens of KV cache a deployment is not useful (a chat turn with reasoning needs more).
MIN_USEFUL_CONTEXT = 2048
KV_BLOCK = 16  # max_model_len suggestions are rounded down to whole KV blocks
# Memory outside weights, KV and activations: CUDA context, cuBLAS/NCCL workspaces, CUDA graph pools.
RUNTIME_OVERHEAD_BYTES = 1 * GIB
PLAN_TP_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class ParamEstimate:
    total: int  # main model parameters (MTP excluded)
    active: int  # parameters used per token: all but the routed experts not chosen (MoE); == total for dense models
    by_component: dict[str, int] = field(default_factory=dict)  # COMPONENTS -> parameters, "mtp" included


@dataclass(frozen=True)
class MemoryPlan:
    tp: int
    pp: int
    weight_bytes_per_gpu: int
    kv_bytes_per_token_per_gpu: int
    kv_tokens_per_gpu: int  # tokens of KV cache that fit next to the weights (0 when they do not)
    verdict: str  # "fits" | "fits_limited" | "does_not_fit"
    max_model_len: int  # the context it supports: the requested one, a smaller one (fits_limited), or 0
    advice: str
    gpu_memory_bytes: int = 0
    usable_bytes_per_gpu: int = 0  # gpu_memory_bytes × utilization
    reserve_bytes_per_gpu: int = 0  # activations + runtime overhead
    replicated_bytes_per_gpu: int = 0  # the part of the weights every rank holds in full

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp


def estimate_params(cfg: ModelConfig) -> ParamEstimate:
    by_component = dict.fromkeys(COMPONENTS, 0)
    for spec, count in _counted_tensors(cfg, include_mtp=True):
        by_component[spec.component] += spec.numel * spec.params_per_value * count
    total = sum(n for c, n in by_component.items() if c != "mtp")
    active = total
    if cfg.is_moe and cfg.n_routed_experts:
        routed = by_component["routed_experts"]
        active = total - routed + routed * cfg.num_experts_per_tok // cfg.n_routed_experts
    return ParamEstimate(total=total, active=active, by_component=by_component)


def _counted_tensors(cfg: ModelConfig, *, include_mtp: bool) -> list[tuple[TensorSpec, int]]:
    """The layout as (tensor, how many decoder layers have it): each layer kind is generated once."""
    counted = [(s, 1) for s in embedding_tensors(cfg) + final_tensors(cfg)]
    for first, count in _layer_kinds(cfg).values():
        counted.extend((s, count) for s in decoder_layer_tensors(cfg, first))
    if include_mtp:
        counted.extend((s, 1) for s in mtp_tensors(cfg))
    return counted


def _layer_kinds(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """kind -> (first layer of that kind, number of layers of that kind)."""
    kinds: dict[str, tuple[int, int]] = {}
    for i in range(cfg.num_layers):
        kind = layer_kind(cfg, i)
        first, count = kinds.get(kind, (i, 0))
        kinds[kind] = (first, count + 1)
    return kinds


@dataclass(frozen=True)
class _WeightSummary:
    """Per-layer weight bytes by TP rule, so that a table of plans walks the (R1: ~47k-tensor) layout once."""

    layers: list[dict[str, int]]  # index = layer; TP rule -> bytes as loaded on the target device
    split_dims: list[SplitDim]  # the FP8 weights' split dimensions (vdeploy.checkpoint.tp_rules)
    first_stage: dict[str, int]  # embeddings (pipeline stage 0)
    last_stage: dict[str, int]  # final norm + lm_head (last pipeline stage)
    stored_total: int  # the same tensors' bytes as stored in the checkpoint (what measured header bytes count)


def keeps_8bit_weights(kind: str, device: str, fp8_tensor_cores: bool, int8_tensor_cores: bool = True) -> bool:
    """Whether a linear's 8-bit weights stay 8-bit once loaded on `device` ("cuda" | "cpu"), else are dequantized
    once to the model dtype. kind: "block-fp8" (DeepSeek: vdeploy.layers.fp8, .moe), "w8a8-fp8" / "w8a8-int8"
    (compressed-tensors: vdeploy.layers.w8a8). Block FP8 is multiplied in FP8 only by the Triton GEMM on FP8 tensor
    cores; W8A8 also runs 8-bit on the CPU, where the torch twin multiplies the stored weight."""
    if kind == "block-fp8":
        return device == "cuda" and fp8_tensor_cores
    if device == "cpu":
        return True
    return fp8_tensor_cores if kind == "w8a8-fp8" else int8_tensor_cores


def _loaded_bytes(spec: TensorSpec, block: tuple[int, int] | None, model_dtype_size: int, device: str,
                  fp8_tensor_cores: bool) -> tuple[int, int]:
    """(bytes held once loaded on `device`, bytes stored) of one checkpoint tensor."""
    if spec.quantized and block is not None:  # block FP8: the weight plus its float32 scale per block
        stored = spec.numel + math.prod(scale_shape(spec.shape, block)) * 4
        kept = keeps_8bit_weights("block-fp8", device, fp8_tensor_cores)
        return (stored if kept else spec.numel * model_dtype_size), stored
    stored = spec.numel * DTYPE_SIZES[spec.dtype]
    if spec.scheme_tensor and spec.dtype in ("F8_E4M3", "I8"):  # a W8A8 weight (its scale stays as stored)
        kind = "w8a8-fp8" if spec.dtype == "F8_E4M3" else "w8a8-int8"
        if not keeps_8bit_weights(kind, device, fp8_tensor_cores):
            return spec.numel * model_dtype_size, stored
    return stored, stored  # AWQ/GPTQ packed int32, unquantized tensors: loaded as stored


def _summarize(cfg: ModelConfig, fp8_tensor_cores: bool, device: str = "cuda") -> _WeightSummary:
    block = fp8_block(cfg)
    model_dtype_size = DTYPE_SIZES[storage_dtype(cfg)]  # what dequantized weights become (the loader's dtype)
    stored_total = 0

    def by_rule(specs: list[TensorSpec], layers: int = 1) -> dict[str, int]:
        nonlocal stored_total
        out: dict[str, int] = {}
        for spec in specs:
            loaded, stored = _loaded_bytes(spec, block, model_dtype_size, device, fp8_tensor_cores)
            out[spec.tp] = out.get(spec.tp, 0) + loaded
            stored_total += stored * layers
        return out

    per_kind = {kind: by_rule(decoder_layer_tensors(cfg, first), count)
                for kind, (first, count) in _layer_kinds(cfg).items()}
    layers = [per_kind[layer_kind(cfg, i)] for i in range(cfg.num_layers)]
    return _WeightSummary(layers, fp8_split_dims(cfg), by_rule(embedding_tensors(cfg)), by_rule(final_tensors(cfg)),
                          stored_total)


def _per_rank(by_rule: dict[str, int], tp: int, kv_heads: int) -> tuple[int, int]:
    """(bytes one rank holds, of which replicated) for one group of tensors."""
    kv_heads_per_rank = max(1, math.ceil(kv_heads / tp))
    total = replicated = 0
    for rule, nbytes in by_rule.items():
        if rule in ("split", "vocab"):
            total += math.ceil(nbytes / tp)
        elif rule == "kv":
            total += nbytes * kv_heads_per_rank // max(kv_heads, 1)
            if kv_heads < tp:
                replicated += nbytes * kv_heads_per_rank // max(kv_heads, 1)
        else:
            total += nbytes
            replicated += nbytes
    return total, replicated


def _stage_layers(num_layers: int, pp: int) -> list[range]:
    base, extra = divmod(num_layers, pp)
    stages, start = [], 0
    for s in range(pp):
        size = base + (1 if s < extra else 0)
        stages.append(range(start, start + size))
        start += size
    return stages


def kv_bytes_per_token_per_layer(cfg: ModelConfig, tp: int, kv_cache_dtype_bytes: int = 2) -> int:
    """MLA caches the latent plus the rope key once per token, on every rank (not split); GQA caches K and V for the
    rank's KV heads, at least one head per rank."""
    if cfg.is_mla:
        return (cfg.kv_lora_rank + cfg.qk_rope_head_dim) * kv_cache_dtype_bytes
    return 2 * max(1, math.ceil(cfg.num_kv_heads / tp)) * cfg.head_dim * kv_cache_dtype_bytes


def activation_reserve_bytes(cfg: ModelConfig, tp: int, *, max_num_batched_tokens: int = 8192,
                             max_num_seqs: int = 256) -> int:
    """Peak activations of one prefill chunk (bf16 hidden states, attention and MLP intermediates for the rank's
    share), float32 logits for a full decode batch, plus runtime overhead."""
    h = cfg.hidden_size
    mlp = max(cfg.intermediate_size,
              cfg.moe_intermediate_size * (cfg.num_experts_per_tok + cfg.n_shared_experts))
    per_token = (6 * h + 3 * math.ceil(mlp / tp)) * 2
    # this rank's float32 logit shard, plus the full [seqs, V] matrix every rank holds after the all-gather
    logits = max_num_seqs * (math.ceil(cfg.vocab_size / tp) + cfg.vocab_size) * 4
    return per_token * max_num_batched_tokens + logits + RUNTIME_OVERHEAD_BYTES


def _check_parallel(cfg: ModelConfig, tp: int, pp: int) -> None:
    if tp < 1 or pp < 1:
        raise ConfigError(f"tensor/pipeline parallel sizes must be ≥ 1 (got tp={tp}, pp={pp})")
    if pp > cfg.num_layers:
        raise ConfigError(f"pipeline parallel size {pp} exceeds the {cfg.num_layers} layers")



@dataclass(frozen=True)
class _Fit:
    weights: int
    replicated: int
    kv_per_token: int
    reserve: int
    usable: int

    @property
    def kv_tokens(self) -> int:
        free = self.usable - self.weights - self.reserve
        return max(0, free // self.kv_per_token) if self.kv_per_token else 0


def _evaluate(cfg: ModelConfig, summary: _WeightSummary, scale: float, tp: int, pp: int, usable: int,
              kv_dtype_bytes: int) -> _Fit:
    worst_weights = worst_replicated = 0
    stages = _stage_layers(cfg.num_layers, pp)
    for s, layer_range in enumerate(stages):
        groups = [summary.layers[i] for i in layer_range]
        if s == 0:
            groups.append(summary.first_stage)
        if s == len(stages) - 1:
            groups.append(summary.last_stage)
        weights = replicated = 0
        for g in groups:
            w, r = _per_rank(g, tp, cfg.num_kv_heads)
            weights, replicated = weights + w, replicated + r
        if weights > worst_weights:
            worst_weights, worst_replicated = weights, replicated
    max_layers = max(len(r) for r in stages)
    return _Fit(weights=int(worst_weights * scale), replicated=int(worst_replicated * scale),
                kv_per_token=kv_bytes_per_token_per_layer(cfg, tp, kv_dtype_bytes) * max_layers,
                reserve=activation_reserve_bytes(cfg, tp), usable=usable)


def plan_memory(cfg: ModelConfig, *, tp: int, pp: int = 1, gpu_memory_bytes: int, gpu_memory_utilization: float = 0.9,
                weight_bytes: int | None = None, kv_cache_dtype_bytes: int = 2, max_model_len: int | None = None,
                fp8_tensor_cores: bool = True, device: str = "cuda") -> MemoryPlan:
    """Plan one TP×PP layout on GPUs of `gpu_memory_bytes` each (device "cpu": ranks of RAM).

    weight_bytes: the measured bytes of the weights to load (MTP excluded), e.g. from the shard headers; the
    config-derived split between ranks is scaled to it. fp8_tensor_cores=False: block-FP8 weights are dequantized to
    the model dtype at load time, doubling their memory; so are W8A8 FP8 weights on such a GPU, not on the CPU
    (keeps_8bit_weights).
    """
    summary = _summarize(cfg, fp8_tensor_cores, device)
    return _plan(cfg, summary, tp=tp, pp=pp, gpu_memory_bytes=gpu_memory_bytes,
                 utilization=gpu_memory_utilization, weight_bytes=weight_bytes, kv_dtype_bytes=kv_cache_dtype_bytes,
                 max_model_len=max_model_len, fp8_tensor_cores=fp8_tensor_cores)


def plan_table(cfg: ModelConfig, gpu_memory_bytes: int, *, gpu_memory_utilization: float = 0.9,
               weight_bytes: int | None = None, kv_cache_dtype_bytes: int = 2, max_model_len: int | None = None,
               fp8_tensor_cores: bool = True, tp_sizes: tuple[int, ...] = PLAN_TP_SIZES,
               device: str = "cuda") -> list[MemoryPlan]:
    """Plans for TP 1, 2, 4, 8 (those dividing the head count), plus TP 8 × PP 2 (two 8-GPU nodes) when TP 8 on one
    node does not fit."""
    summary = _summarize(cfg, fp8_tensor_cores, device)

    def plan(tp: int, pp: int) -> MemoryPlan:
        return _plan(cfg, summary, tp=tp, pp=pp, gpu_memory_bytes=gpu_memory_bytes,
                     utilization=gpu_memory_utilization, weight_bytes=weight_bytes,
                     kv_dtype_bytes=kv_cache_dtype_bytes, max_model_len=max_model_len,
                     fp8_tensor_cores=fp8_tensor_cores)

    plans = [plan(tp, 1) for tp in tp_sizes if cfg.num_heads % tp == 0]
    if plans and plans[-1].verdict == "does_not_fit" and tp_problem(cfg, plans[-1].tp, summary.split_dims) is None \
            and cfg.num_layers >= 2:
        plans.append(plan(plans[-1].tp, 2))  # a second node, one pipeline stage each
    return plans


def _plan(cfg: ModelConfig, summary: _WeightSummary, *, tp: int, pp: int, gpu_memory_bytes: int, utilization: float,
          weight_bytes: int | None, kv_dtype_bytes: int, max_model_len: int | None,
          fp8_tensor_cores: bool) -> MemoryPlan:
    _check_parallel(cfg, tp, pp)
    scale = 1.0
    if weight_bytes is not None and summary.stored_total:
        # measured bytes are stored bytes; dequantized 8-bit weights keep the config's ratio on top of them
        scale = weight_bytes / summary.stored_total
    usable = int(gpu_memory_bytes * utilization)
    fit = _evaluate(cfg, summary, scale, tp, pp, usable, kv_dtype_bytes)
    problem = tp_problem(cfg, tp, summary.split_dims)
    if problem is not None:
        # a layout the loader refuses (the same rule): report it as not fitting rather than fail the whole check
        advice = f"{problem}; {tp_advice(cfg, tp, summary.split_dims)}"
        return MemoryPlan(tp=tp, pp=pp, weight_bytes_per_gpu=fit.weights,
                          kv_bytes_per_token_per_gpu=fit.kv_per_token, kv_tokens_per_gpu=0, verdict="does_not_fit",
                          max_model_len=0, advice=advice, gpu_memory_bytes=gpu_memory_bytes,
                          usable_bytes_per_gpu=usable, reserve_bytes_per_gpu=fit.reserve,
                          replicated_bytes_per_gpu=fit.replicated)
    wanted = max_model_len or cfg.max_position_embeddings
    tokens = fit.kv_tokens
    if tokens >= wanted:
        verdict, supported = "fits", wanted
    elif tokens >= MIN_USEFUL_CONTEXT:
        verdict, supported = "fits_limited", tokens // KV_BLOCK * KV_BLOCK
    else:
        verdict, supported = "does_not_fit", 0
    advice = _advice(cfg, summary, scale, fit, verdict, supported, wanted, tp=tp, pp=pp, usable=usable,
                     kv_dtype_bytes=kv_dtype_bytes, utilization=utilization, fp8_tensor_cores=fp8_tensor_cores)
    return MemoryPlan(tp=tp, pp=pp, weight_bytes_per_gpu=fit.weights, kv_bytes_per_token_per_gpu=fit.kv_per_token,
                      kv_tokens_per_gpu=tokens, verdict=verdict, max_model_len=supported, advice=advice,
                      gpu_memory_bytes=gpu_memory_bytes, usable_bytes_per_gpu=usable,
                      reserve_bytes_per_gpu=fit.reserve, replicated_bytes_per_gpu=fit.replicated)


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


def _advice(cfg: ModelConfig, summary: _WeightSummary, scale: float, fit: _Fit, verdict: str, supported: int,
            wanted: int, *, tp: int, pp: int, usable: int, kv_dtype_bytes: int, utilization: float,
            fp8_tensor_cores: bool) -> str:
    layout = f"TP {tp}" + (f" × PP {pp}" if pp > 1 else "")
    if verdict == "fits":
        return (f"fits on {tp * pp} GPU(s) ({layout}): {_gib(fit.weights)} of weights per GPU, KV cache for "
                f"{fit.kv_tokens:,} tokens ({fit.kv_tokens / wanted:.1f}× the {wanted:,}-token context)")
    if verdict == "fits_limited":
        more = "; an FP8 KV cache or more GPUs would allow more" if kv_dtype_bytes > 1 \
            else "; more GPUs would allow more"
        return (f"fits on {tp * pp} GPU(s) ({layout}) with --max-model-len ≤ {supported:,} "
                f"(KV cache for {fit.kv_tokens:,} tokens, less than the {wanted:,}-token context){more}")
    needed = fit.weights + fit.reserve + fit.kv_per_token * MIN_USEFUL_CONTEXT
    parts = [(f"does not fit on {tp * pp} GPU(s) ({layout}): {_gib(fit.weights)} of weights + {_gib(fit.reserve)} "
              f"reserve per GPU, but only {_gib(usable)} usable ({utilization:.0%}); this layout needs GPUs of ≥ "
              f"{_gib(needed / utilization)}")]
    alternatives = []
    for alt_tp, alt_pp in ((2, 1), (4, 1), (8, 1), (8, 2), (8, 4)):
        if alt_tp * alt_pp <= tp * pp or tp_problem(cfg, alt_tp, summary.split_dims) or alt_pp > cfg.num_layers:
            continue
        alt = _evaluate(cfg, summary, scale, alt_tp, alt_pp, usable, kv_dtype_bytes)
        if alt.kv_tokens >= MIN_USEFUL_CONTEXT:
            nodes = " (a second node)" if alt_tp * alt_pp > 8 else ""
            alternatives.append(f"{alt_tp * alt_pp} GPUs as TP {alt_tp}" + (f" × PP {alt_pp}" if alt_pp > 1 else "")
                                + nodes)
            break
    if alternatives:
        parts.append("it fits on " + alternatives[0])
    if not fp8_tensor_cores and fp8_block(cfg) is not None:
        parts.append("GPUs with FP8 tensor cores (Ada/Hopper) keep the weights in FP8, halving them")
    if cfg.family == "deepseek_v3":  # R1 / V3: the distills are the single-node alternative
        parts.append("or serve a distill (DeepSeek-R1-Distill-Llama-70B, -Qwen-32B, -Llama-8B, -Qwen-7B)")
    return "; ".join(parts)
