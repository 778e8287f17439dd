"""Configuration dataclasses shared by every part of vdeploy.

`ModelConfig` normalises a Hugging Face `config.json` (Llama, Qwen2, DeepSeek-V2/V3) into one flat description.
`EngineConfig` gathers the engine settings; precedence is built-in defaults < profile < VDEPLOY_* env < CLI flags
(see vdeploy.profiles). Everything here is plain data: no torch import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vdeploy.dtypes import byte_sizes
from vdeploy.errors import ConfigError

# architecture name in config.json -> family
ARCHITECTURE_FAMILIES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
}

DTYPE_BYTES = byte_sizes()  # every dtype spelling -> bytes (vdeploy.dtypes)


@dataclass(frozen=True)
class QuantConfig:
    method: str  # quant_method of config.json: "fp8", "awq", "gptq", "compressed-tensors"
    fmt: str  # "e4m3"
    weight_block_size: tuple[int, int] | None  # (128, 128) for DeepSeek-V3 block FP8
    activation_scheme: str = "dynamic"
    # the whole quantization_config mapping: each method's LinearMethod reads its own keys (bits, group_size, ...)
    source: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    family: str  # llama | qwen2 | deepseek_v2 | deepseek_v3
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2: bias on q/k/v projections
    torch_dtype: str = "bfloat16"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    # MLA (DeepSeek-V2/V3); kv_lora_rank == 0 means standard GQA attention
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # MoE
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    n_group: int = 1
    topk_group: int = 1
    topk_method: str = "greedy"
    scoring_func: str = "softmax"
    norm_topk_prob: bool = False
    routed_scaling_factor: float = 1.0
    num_nextn_predict_layers: int = 0
    quant: QuantConfig | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def is_moe(self) -> bool:
        return self.n_routed_experts > 0

    def is_moe_layer(self, layer_idx: int) -> bool:
        return (
            self.is_moe
            and layer_idx >= self.first_k_dense_replace
            and layer_idx % max(self.moe_layer_freq, 1) == 0
        )

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def kv_cache_dim(self) -> int:
        """Values cached per token per layer per KV head (MLA: latent + rope key, one 'head')."""
        return self.kv_lora_rank + self.qk_rope_head_dim if self.is_mla else self.head_dim

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> "ModelConfig":
        archs = cfg.get("architectures") or []
        arch = next((a for a in archs if a in ARCHITECTURE_FAMILIES), None)
        if arch is None:
            raise ConfigError(
                f"unsupported architecture {archs or cfg.get('model_type')!r}",
                hint="vdeploy serves " + ", ".join(ARCHITECTURE_FAMILIES),
            )
        family = ARCHITECTURE_FAMILIES[arch]
        num_heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        eos = cfg.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
        q = cfg.get("quantization_config")
        quant = None
        if q:
            block = q.get("weight_block_size")
            quant = QuantConfig(
                method=str(q.get("quant_method", "")),
                fmt=str(q.get("fmt", "e4m3")),
                weight_block_size=tuple(block) if block else None,
                activation_scheme=str(q.get("activation_scheme", "dynamic")),
                source=dict(q),
            )
        is_deepseek = family.startswith("deepseek")
        rope_theta, rope_scaling = _rope_settings(cfg)
        kw: dict[str, Any] = dict(
            architecture=arch,
            family=family,
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=num_heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or num_heads),
            head_dim=int(cfg.get("head_dim") or hidden // num_heads),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=family == "qwen2" or bool(cfg.get("attention_bias", False)),
            torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"),
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=eos_ids,
            quant=quant,
            raw=dict(cfg),
        )
        if is_deepseek:
            kw.update(
                q_lora_rank=cfg.get("q_lora_rank"),
                kv_lora_rank=int(cfg.get("kv_lora_rank") or 0),
                qk_nope_head_dim=int(cfg.get("qk_nope_head_dim") or 0),
                qk_rope_head_dim=int(cfg.get("qk_rope_head_dim") or 0),
                v_head_dim=int(cfg.get("v_head_dim") or 0),
                n_routed_experts=int(cfg.get("n_routed_experts") or 0),
                n_shared_experts=int(cfg.get("n_shared_experts") or 0),
                num_experts_per_tok=int(cfg.get("num_experts_per_tok") or 0),
                moe_intermediate_size=int(cfg.get("moe_intermediate_size") or 0),
                first_k_dense_replace=int(cfg.get("first_k_dense_replace") or 0),
                moe_layer_freq=int(cfg.get("moe_layer_freq") or 1),
                n_group=int(cfg.get("n_group") or 1),
                topk_group=int(cfg.get("topk_group") or 1),
                # V3 always routes with sigmoid scores and the bias-corrected group choice (HF's V3 ignores the key)
                topk_method=str(cfg.get("topk_method") or ("noaux_tc" if family == "deepseek_v3" else "greedy")),
                scoring_func=str(cfg.get("scoring_func") or ("sigmoid" if family == "deepseek_v3" else "softmax")),
                norm_topk_prob=bool(cfg.get("norm_topk_prob", False)),
                routed_scaling_factor=float(cfg.get("routed_scaling_factor") or 1.0),
                num_nextn_predict_layers=int(cfg.get("num_nextn_predict_layers") or 0),
                attention_bias=bool(cfg.get("attention_bias", False)),
            )
        return cls(**kw)

    @classmethod
    def from_path(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        cfg_file = path / "config.json" if path.is_dir() else path
        try:
            return cls.from_dict(json.loads(cfg_file.read_text()))
        except FileNotFoundError:
            raise ConfigError(f"no config.json in {path}", hint="point at a Hugging Face model directory") from None
        except (json.JSONDecodeError, KeyError) as e:
            raise ConfigError(f"{cfg_file}: invalid config ({e})") from None


def _rope_settings(cfg: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling) from either the classic keys or transformers 5's `rope_parameters`; the scaling
    dict always carries `rope_type` (older configs say `type`), and is None for plain RoPE."""
    params = dict(cfg.get("rope_parameters") or {})
    scaling = dict(cfg.get("rope_scaling") or params)
    theta = float(cfg.get("rope_theta") or params.get("rope_theta") or scaling.get("rope_theta") or 10000.0)
    rope_type = scaling.get("rope_type") or scaling.get("type")
    if not rope_type or rope_type == "default":
        return theta, None
    scaling["rope_type"] = rope_type
    scaling.pop("rope_theta", None)
    return theta, scaling


@dataclass(frozen=True)
class CacheConfig:
    block_size: int = 16
    gpu_memory_utilization: float = 0.90
    cpu_kv_cache_bytes: int = 256 << 20  # KV budget on CPU, where memory cannot be measured per device
    kv_cache_dtype: str = "auto"  # auto = model dtype
    enable_prefix_caching: bool = True
    num_gpu_blocks_override: int | None = None


@dataclass(frozen=True)
class SchedulerConfig:
    # Measured on an H200 (benchmarks/results/2026-12-02-h200-vs-vllm): 512 sequences keep every decode step inside
    # a CUDA graph (the largest bucket) and 16,384 tokens per step prefill twice as fast per step as 8,192:
    # 13.5k output tok/s on Qwen2-7B 1000 x 1000/1000, against 9.6k at 1,024 sequences (eager decode beyond 512)
    # and vLLM's 12.9k with its 1,024 / 16,384. Profiles for small GPUs set lower values.
    max_num_seqs: int = 512
    max_num_batched_tokens: int = 16384
    max_model_len: int | None = None  # None: min(model's max_position_embeddings, what KV memory allows)
    enable_chunked_prefill: bool = True
    max_waiting: int = 4096  # bounded waiting queue; the server answers 503 beyond it
    # Schedule step N+1 while the device runs step N (tokens not yet sampled are placeholders the workers resolve
    # on the device). Off: every step waits for its tokens before the next is scheduled (the exact same tokens).
    async_scheduling: bool = True


@dataclass(frozen=True)
class SpeculativeConfig:
    method: str | None = None  # None (off) | "ngram" (prompt lookup) | "mtp" (DeepSeek's MTP module)
    num_speculative_tokens: int = 3  # drafts per step and request
    prompt_lookup_min: int = 1  # n-gram sizes searched, longest first
    prompt_lookup_max: int = 3

    @property
    def enabled(self) -> bool:
        return self.method is not None and self.num_speculative_tokens > 0

    @property
    def uses_mtp(self) -> bool:
        """The checkpoint's multi-token-prediction module is built, cached and run as the draft model."""
        return self.enabled and self.method == "mtp"


@dataclass(frozen=True)
class ParallelConfig:
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int | None = None
    # A step whose tokens do not come back within this many seconds means a rank is stuck (stopped, a hung
    # collective): the ranks are named and stopped. Far above any real step (a 16k-token prefill of R1 at TP 8 is
    # seconds), and below the patience of anyone waiting on a frozen server.
    step_timeout_s: float = 120.0
    # While no step is in flight, a rank that stays stopped (SIGSTOP, a debugger) or in uninterruptible sleep this
    # long is named and every rank stopped: an idle server must not look healthy until its next request hangs.
    # Shorter than the step timeout because an idle rank has no work that could legitimately take time.
    idle_timeout_s: float = 30.0
    # engine replicas behind one server (each with tensor_parallel_size x pipeline_parallel_size GPUs of its own)
    data_parallel_size: int = 1
    # DeepSeek MLA: every tensor rank runs attention for its own requests over its own latent cache (attention
    # weights replicated, no latent copy per rank); the MLP / experts stay split over the ranks (vdeploy.layers.dp)
    enable_dp_attention: bool = False
    # Data parallelism across nodes (--nnodes > 1 with data_parallel_size > 1): the replicas this node hosts
    # (None: data_parallel_size / nnodes), the address and first port its replicas listen on for node 0 (a worker
    # host's; None / 0: the local address of the route to master_addr, free ports), and the shared secret that
    # authenticates node 0 and the replicas to each other. The secret never leaves the node (not in the rendezvous
    # store, not in the engine-core's Init) and is not in the repr (logs).
    data_parallel_size_local: int | None = None
    dp_listen_address: str | None = None
    data_parallel_rpc_port: int | None = None
    dp_secret: str | None = field(default=None, repr=False)

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


@dataclass(frozen=True)
class LoRAConfig:
    """Multi-LoRA serving: up to max_loras PEFT adapters live at once, each in a preallocated slot of every target
    layer (the slots' memory is taken before the KV cache is sized)."""

    enable_lora: bool = False
    max_loras: int = 1  # adapters resident at once (slots)
    max_lora_rank: int = 16  # slots are this wide; an adapter of a higher rank is refused
    lora_modules: tuple[tuple[str, str], ...] = ()  # (name, adapter directory) loaded at start

    @property
    def enabled(self) -> bool:
        return self.enable_lora or bool(self.lora_modules)


@dataclass(frozen=True)
class EngineConfig:
    model: str  # checkpoint directory
    tokenizer: str | None = None  # defaults to `model`
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    device: str = "auto"  # auto | cuda | cpu
    load_format: str = "safetensors"  # safetensors | dummy (random weights at the config's shapes)
    dummy_weights: str = "normal"  # normal | uniform: how load_format dummy draws them (engine_settings says why)
    seed: int = 0
    enforce_eager: bool = False  # no CUDA graphs
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)

    def with_overrides(self, **kw: Any) -> "EngineConfig":
        """Return a copy with top-level or nested fields replaced (nested as 'cache.block_size')."""
        top: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in kw.items():
            if value is None:
                continue
            if "." in key:
                section, name = key.split(".", 1)
                nested.setdefault(section, {})[name] = value
            else:
                top[key] = value
        cfg = replace(self, **top)
        for section, values in nested.items():
            cfg = replace(cfg, **{section: replace(getattr(cfg, section), **values)})
        return cfg


def dataclass_to_dict(obj: Any) -> Any:
    """Plain-dict form of (nested) dataclasses for --json output."""
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in fields(obj) if f.name != "raw"}
    if isinstance(obj, (list, tuple)):
        return [dataclass_to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: dataclass_to_dict(v) for k, v in obj.items()}
    return obj
