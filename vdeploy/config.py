"""Configuration dataclasses shared by every part of vdeploy.

`ModelConfig` normalises a Hugging Face `config.json` (Llama, Qwen2, DeepSeek-V2/V3) into one flat description.
`EngineConfig` gathers the engine settings; precedence is built-in defaults < profile < VDEPLOY_* env < CLI flags
(see vdeploy.profiles). Everything here is plain data: no torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

from vdeploy.checkpoint.paths import json_type, read_model_json
from vdeploy.dtypes import byte_sizes
from vdeploy.errors import ConfigError
# checked reads of config.json values, and RoPE settings completed as transformers completes them
from vdeploy.model_configs.config_values import FIX_HINT as _FIX_HINT
from vdeploy.model_configs.config_values import count as _count
from vdeploy.model_configs.config_values import invalid as _invalid
from vdeploy.model_configs.config_values import is_count as _is_count
from vdeploy.model_configs.config_values import mapping as _mapping
from vdeploy.model_configs.config_values import positive_number as _positive_number
from vdeploy.model_configs.rope_settings import rope_settings
# ModelConfig.quant and EngineConfig.speculative: their settings and checks are modules of their own
from vdeploy.quant_config import QuantConfig, refuse_unloadable_fp8
from vdeploy.speculative_config import SpeculativeConfig

# architecture name in config.json -> family
ARCHITECTURE_FAMILIES = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
}

DTYPE_BYTES = byte_sizes()  # every dtype spelling -> bytes (vdeploy.dtypes)


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
    def from_dict(cls, cfg: Any, source: str = "config.json") -> "ModelConfig":
        """Normalise a parsed config.json, checking every value first: a malformed file (a key of the wrong type, zero
        heads, ...) is one ConfigError naming `source` and the key, not a crash deep in a planner or a model."""
        if not isinstance(cfg, dict):
            raise ConfigError(f"{source}: not a JSON object (got {json_type(cfg)})", hint=_FIX_HINT)
        archs = cfg.get("architectures") or []
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            raise _invalid(source, "architectures", "a list of class names", archs)
        arch = next((a for a in archs if a in ARCHITECTURE_FAMILIES), None)
        if arch is None:
            raise ConfigError(f"unsupported architecture {archs or cfg.get('model_type')!r}",
                              hint="vdeploy serves " + ", ".join(ARCHITECTURE_FAMILIES))
        family = ARCHITECTURE_FAMILIES[arch]
        count = partial(_count, cfg, source)
        num_heads, hidden = count("num_attention_heads"), count("hidden_size")
        num_kv_heads = count("num_key_value_heads", num_heads)
        if num_heads % num_kv_heads:
            raise ConfigError(f"{source}: num_attention_heads ({num_heads}) must be a multiple of "
                              f"num_key_value_heads ({num_kv_heads})", hint=_FIX_HINT)
        bos, eos = _token_ids(cfg, source)
        max_position = count("max_position_embeddings", 4096)
        rope_theta, rope_scaling = rope_settings(cfg, source, max_position)
        kw: dict[str, Any] = dict(
            architecture=arch,
            family=family,
            vocab_size=count("vocab_size"),
            hidden_size=hidden,
            intermediate_size=count("intermediate_size"),
            num_layers=count("num_hidden_layers"),
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=count("head_dim", hidden // num_heads or None),  # hidden < heads: head_dim must be given
            max_position_embeddings=max_position,
            rms_norm_eps=_positive_number(cfg.get("rms_norm_eps"), 1e-6, source, "rms_norm_eps"),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=family == "qwen2" or bool(cfg.get("attention_bias", False)),
            torch_dtype=str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"),
            bos_token_id=bos,
            eos_token_ids=eos,
            quant=_quant_config(cfg, source),
            raw=dict(cfg),
        )
        if family.startswith("deepseek"):
            kw.update(
                q_lora_rank=None if cfg.get("q_lora_rank") is None else count("q_lora_rank"),
                # V3 always routes with sigmoid scores and the bias-corrected group choice (HF's V3 ignores the key)
                topk_method=str(cfg.get("topk_method") or ("noaux_tc" if family == "deepseek_v3" else "greedy")),
                scoring_func=str(cfg.get("scoring_func") or ("sigmoid" if family == "deepseek_v3" else "softmax")),
                norm_topk_prob=bool(cfg.get("norm_topk_prob", False)),
                routed_scaling_factor=_positive_number(cfg.get("routed_scaling_factor"), 1.0, source,
                                                       "routed_scaling_factor"),
                attention_bias=bool(cfg.get("attention_bias", False)),
            )
            # DeepSeek's integer keys, each a field of the same name whose default is its value when the key is
            # absent; where the default is 0 (off), 0 may be written
            kw.update({f.name: count(f.name, f.default, minimum=f.default) for f in fields(cls)
                       if f.name in _DEEPSEEK_COUNTS})
        return cls(**kw)

    @classmethod
    def from_path(cls, path: str | Path) -> "ModelConfig":
        """config.json of model directory `path` (or the file `path`), read only as vdeploy.checkpoint.paths allows."""
        path = Path(path)
        root, name = (path, "config.json") if path.is_dir() else (path.parent, path.name)
        doc = read_model_json(root, name)
        if doc is None:
            raise ConfigError(f"no config.json in {path}", hint="point at a Hugging Face model directory")
        return cls.from_dict(doc, source=str(root / name))


_DEEPSEEK_COUNTS = ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "n_routed_experts",
                    "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size", "first_k_dense_replace",
                    "moe_layer_freq", "n_group", "topk_group", "num_nextn_predict_layers")


def _token_ids(cfg: dict[str, Any], source: str) -> tuple[int | None, tuple[int, ...]]:
    """(bos_token_id, eos_token_ids): the file gives one id each, or a list of eos ids."""
    bos, eos = cfg.get("bos_token_id"), cfg.get("eos_token_id")
    if bos is not None and not _is_count(bos):
        raise _invalid(source, "bos_token_id", "a token id", bos)
    eos_ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    if not all(_is_count(i) for i in eos_ids):
        raise _invalid(source, "eos_token_id", "a token id or a list of token ids", eos)
    return bos, tuple(eos_ids)


def _quant_config(cfg: dict[str, Any], source: str) -> QuantConfig | None:
    q = _mapping(cfg, "quantization_config", source)
    if not q:
        return None
    block = q.get("weight_block_size")
    if block is not None and not (isinstance(block, list) and len(block) == 2
                                  and all(_is_count(b, 1) for b in block)):
        raise _invalid(source, "quantization_config.weight_block_size", "two positive integers", block)
    # vLLM reads the method case-insensitively ("AWQ" in some exports)
    method, activations = str(q.get("quant_method", "")).lower(), str(q.get("activation_scheme", "dynamic"))
    if method == "fp8":
        refuse_unloadable_fp8(source, block, activations)
    return QuantConfig(method=method, fmt=str(q.get("fmt", "e4m3")),
                       weight_block_size=tuple(block) if block else None,
                       activation_scheme=activations, source=dict(q))


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
