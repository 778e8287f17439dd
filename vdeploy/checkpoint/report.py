"""The `inspect-shards` report: plain dataclasses, and their --json form (schema in docs/inspect-shards.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdeploy.checkpoint.findings import Finding
from vdeploy.checkpoint.planner import MemoryPlan
from vdeploy.config import ModelConfig, dataclass_to_dict

SCHEMA_VERSION = 1


@dataclass
class Architecture:
    architecture: str
    family: str  # llama | qwen2 | deepseek_v2 | deepseek_v3
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int  # MLA: the query/key head dim (nope + rope)
    vocab_size: int
    tie_word_embeddings: bool
    torch_dtype: str
    max_position_embeddings: int
    rope_theta: float
    rope_scaling: dict[str, Any] | None
    attention: str  # "MLA" | "GQA" | "MHA"
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    routed_experts: int = 0
    shared_experts: int = 0
    experts_per_token: int = 0
    expert_groups: int = 1
    topk_groups: int = 1
    moe_intermediate_size: int = 0
    first_dense_layers: int = 0
    mtp_layers: int = 0
    quant_method: str | None = None  # "fp8"
    quant_format: str | None = None  # "e4m3"
    quant_block: list[int] | None = None  # [128, 128]
    quant_scheme: str | None = None  # AWQ / GPTQ / compressed-tensors: one line (vdeploy.checkpoint.quant_schemes)
    quant_bits: int | None = None  # bits per quantized weight
    quant_group_size: int | None = None  # input rows per scale; -1: one scale per output channel
    quant_bytes_per_param: float | None = None  # real bytes per quantized weight (scales, zeros included)
    tokenizer_max_length: int | None = None  # tokenizer_config.json model_max_length
    tokenizer_vocab_size: int | None = None  # highest token id + 1 the tokenizer can produce

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Architecture:
        mla = cfg.is_mla
        return cls(
            architecture=cfg.architecture, family=cfg.family, num_layers=cfg.num_layers, hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size, num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads,
            head_dim=cfg.qk_head_dim if mla else cfg.head_dim, vocab_size=cfg.vocab_size,
            tie_word_embeddings=cfg.tie_word_embeddings,
            torch_dtype=cfg.torch_dtype, max_position_embeddings=cfg.max_position_embeddings,
            rope_theta=cfg.rope_theta, rope_scaling=cfg.rope_scaling,
            attention="MLA" if mla else ("GQA" if cfg.num_kv_heads < cfg.num_heads else "MHA"),
            q_lora_rank=cfg.q_lora_rank if mla else None, kv_lora_rank=cfg.kv_lora_rank if mla else None,
            qk_nope_head_dim=cfg.qk_nope_head_dim if mla else None,
            qk_rope_head_dim=cfg.qk_rope_head_dim if mla else None, v_head_dim=cfg.v_head_dim if mla else None,
            routed_experts=cfg.n_routed_experts, shared_experts=cfg.n_shared_experts,
            experts_per_token=cfg.num_experts_per_tok, expert_groups=cfg.n_group, topk_groups=cfg.topk_group,
            moe_intermediate_size=cfg.moe_intermediate_size,
            first_dense_layers=cfg.first_k_dense_replace if cfg.is_moe else 0,
            mtp_layers=cfg.num_nextn_predict_layers,
            quant_method=cfg.quant.method if cfg.quant else None, quant_format=cfg.quant.fmt if cfg.quant else None,
            quant_block=list(cfg.quant.weight_block_size) if cfg.quant and cfg.quant.weight_block_size else None,
            **_scheme_fields(cfg),
        )


def _scheme_fields(cfg: ModelConfig) -> dict[str, Any]:
    from vdeploy.checkpoint.quant_schemes import quant_scheme

    scheme = quant_scheme(cfg.quant)
    if scheme is None:
        return {}
    # an MLP projection [intermediate, hidden] stands for all: the scales' share barely depends on the shape
    return dict(quant_scheme=scheme.describe(), quant_bits=scheme.bits, quant_group_size=scheme.group_size,
                quant_bytes_per_param=round(scheme.bytes_per_param(cfg.hidden_size, cfg.intermediate_size), 4))


@dataclass
class Parameters:
    total: int  # main model, counted from the headers (FP8 scales are not parameters; MTP excluded)
    active: int  # per token (MoE: only top-k of the routed experts)
    mtp: int  # the multi-token-prediction module, reported apart
    by_component: dict[str, int]  # counted from the headers
    expected_total: int | None = None  # what the config implies (vdeploy.checkpoint.planner.estimate_params)
    expected_by_component: dict[str, int] = field(default_factory=dict)


@dataclass
class DtypeStat:
    dtype: str  # safetensors dtype, e.g. "F8_E4M3"
    tensors: int
    bytes: int


@dataclass
class ShardOutlier:
    file: str
    size: int
    holds: str  # what is in it, e.g. "layer 61 (MTP)"


@dataclass
class Storage:
    weight_format: str  # one line, e.g. "FP8 e4m3 (F8_E4M3) weights with 128×128 block scales ..."
    dtypes: list[DtypeStat]
    shard_count: int
    shard_min: int
    shard_median: int
    shard_max: int
    standard_shard_size: int
    outliers: list[ShardOutlier]
    index_total_size: int | None  # model.safetensors.index.json metadata.total_size
    tensor_bytes: int  # sum of the tensors' data in the headers
    file_bytes: int  # sum of the shard files on disk
    header_bytes: int  # file_bytes - tensor_bytes: the headers themselves (and any corruption)


@dataclass
class PlanSet:
    gpu_memory_bytes: int
    gpu_memory_utilization: float
    fp8_tensor_cores: bool
    plans: list[MemoryPlan]


@dataclass
class DataVerification:
    """`--verify-data`: every tensor's bytes read once (vdeploy.checkpoint.data_verify)."""

    bytes: int  # tensor data read
    seconds: float
    read_seconds: float  # of which waiting for reads (the raw read speed of the same files)
    tensors: int

    @property
    def gb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0

    @property
    def read_gb_per_s(self) -> float:
        return self.bytes / self.read_seconds / 1e9 if self.read_seconds > 0 else 0.0


@dataclass
class InspectReport:
    path: str
    files_read: list[str]  # config / tokenizer / index files actually read (shard headers not listed)
    architecture: Architecture | None
    parameters: Parameters | None
    storage: Storage | None
    findings: list[Finding]
    plans: list[PlanSet]
    recommended_profile: str | None = None
    profile_reasons: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    data: DataVerification | None = None  # set by --verify-data

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        data = dataclass_to_dict(self)
        data["schema_version"] = SCHEMA_VERSION
        data["summary"] = {s: sum(1 for f in self.findings if f.severity == s) for s in ("error", "warning", "info")}
        if self.data is not None:
            data["data"].update(gb_per_s=round(self.data.gb_per_s, 3), read_gb_per_s=round(self.data.read_gb_per_s, 3))
        for plan_set in data["plans"]:
            for plan in plan_set["plans"]:
                plan["num_gpus"] = plan["tp"] * plan["pp"]
        return data
