"""The tensors a Hugging Face checkpoint of a given config holds: names, shapes, storage dtypes, what each belongs to,
and how tensor parallelism treats it.

One source of truth for the parameter estimate, the memory planner, the shape checks of `inspect-shards` and the
synthetic checkpoints, so that they cannot disagree with each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from vdeploy.config import ModelConfig
from vdeploy.dtypes import safetensors_codes

# Components, in report order. Scales of FP8 weights are storage, not parameters: they have no component.
COMPONENTS = ("embeddings", "attention", "dense_mlp", "routed_experts", "shared_experts", "router", "norms",
              "lm_head", "mtp")

# How tensor parallelism places a tensor on ranks:
#   split      - each rank holds 1/TP (column- or row-parallel linears, experts split along their intermediate dim)
#   vocab      - split along the vocabulary (embeddings, lm_head)
#   kv         - GQA K/V projections: split by KV head, but each rank needs at least one head (replicated when
#                kv_heads < TP)
#   replicated - every rank holds all of it (norms, MLA's latent down-projections q_a/kv_a, MoE routers)
TP_RULES = ("split", "vocab", "kv", "replicated")

HF_DTYPES = safetensors_codes()  # config.json torch_dtype -> safetensors code (vdeploy.dtypes)
SCALE_SUFFIX = "_scale_inv"  # DeepSeek block-FP8: `<weight>_scale_inv`, i.e. `x.weight_scale_inv`

_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.*)$")


@dataclass(slots=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype as stored
    component: str  # one of COMPONENTS
    tp: str  # one of TP_RULES
    layer: int | None = None  # decoder layer index; MTP layers come after the main ones
    quantized: bool = False  # an FP8 weight that comes with a `_scale_inv` tensor
    linear: bool = False  # a decoder linear's weight [out, in]: what AWQ/GPTQ store packed (quant_schemes)
    params_per_value: int = 1  # parameters one stored value holds: 8 in a 4-bit qweight, 0 in scales/zeros/g_idx
    scheme_tensor: bool = False  # stored as an AWQ/GPTQ/compressed-tensors scheme says (quant_schemes)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def scale_shape(shape: tuple[int, ...], block: tuple[int, int]) -> tuple[int, int]:
    """Block-FP8 scale shape for a [rows, cols] weight: one float32 per block, partial blocks included."""
    return (math.ceil(shape[0] / block[0]), math.ceil(shape[1] / block[1]))


def storage_dtype(cfg: ModelConfig) -> str:
    return HF_DTYPES.get(cfg.torch_dtype, "BF16")


def fp8_block(cfg: ModelConfig) -> tuple[int, int] | None:
    """The checkpoint's FP8 block shape, or None when its linears are not block-FP8. Never guessed: an fp8 config
    without weight_block_size is per-tensor FP8, refused when the config is read (vdeploy.config)."""
    if cfg.quant is None or cfg.quant.method != "fp8" or not cfg.quant.weight_block_size:
        return None
    return tuple(cfg.quant.weight_block_size)  # type: ignore[return-value]


def expected_tensors(cfg: ModelConfig, *, include_mtp: bool = True,
                     quantized: bool | None = None) -> Iterator[TensorSpec]:
    """Every parameter tensor (not the FP8 scales; see `scale_shape`) of `cfg`'s checkpoint, in file order.

    quantized: store the quantizable linears as FP8 (default: when the config has an fp8 quantization_config).
    """
    yield from embedding_tensors(cfg)
    for i in range(cfg.num_layers):
        yield from decoder_layer_tensors(cfg, i, quantized=quantized)
    yield from final_tensors(cfg)
    if include_mtp:
        yield from mtp_tensors(cfg, quantized=quantized)


def embedding_tensors(cfg: ModelConfig) -> list[TensorSpec]:
    return [TensorSpec("model.embed_tokens.weight", (cfg.vocab_size, cfg.hidden_size), storage_dtype(cfg),
                       "embeddings", "vocab")]


def final_tensors(cfg: ModelConfig) -> list[TensorSpec]:
    """The final norm and (unless tied to the embeddings) the lm_head."""
    dtype = storage_dtype(cfg)
    out = [TensorSpec("model.norm.weight", (cfg.hidden_size,), dtype, "norms", "replicated")]
    if not cfg.tie_word_embeddings:
        out.append(TensorSpec("lm_head.weight", (cfg.vocab_size, cfg.hidden_size), dtype, "lm_head", "vocab"))
    return out


def layer_kind(cfg: ModelConfig, i: int) -> str:
    """Decoder layers of one kind have identical shapes: sums over a 61-layer model need each kind only once."""
    return "moe" if cfg.is_moe_layer(i) else "dense"


def decoder_layer_tensors(cfg: ModelConfig, i: int, *, quantized: bool | None = None) -> list[TensorSpec]:
    """Layer i's tensors as stored: with an AWQ/GPTQ/W8A8 config each linear weight becomes its scheme's tensors."""
    return _packed(cfg, logical_layer_tensors(cfg, i, quantized=quantized))


def logical_layer_tensors(cfg: ModelConfig, i: int, *, quantized: bool | None = None) -> list[TensorSpec]:
    """Layer i's tensors with every linear as its [out, in] weight, whatever the storage (the TP rules' view)."""
    return list(_decoder_layer(cfg, i, _is_fp8(cfg, quantized), storage_dtype(cfg), component_override=None))


def _packed(cfg: ModelConfig, specs: list[TensorSpec]) -> list[TensorSpec]:
    from vdeploy.checkpoint.quant_schemes import quant_scheme, refuse_unsupported_model

    scheme = quant_scheme(cfg.quant)
    if scheme is not None:
        refuse_unsupported_model(cfg.family, cfg.quant)
    if scheme is None:
        return specs
    out: list[TensorSpec] = []
    for spec in specs:
        if not spec.linear:
            out.append(spec)
            continue
        prefix = spec.name[: -len("weight")]
        for name, shape, dtype, per_value in scheme.disk_tensors(prefix, spec.shape[0], spec.shape[1]):
            out.append(TensorSpec(name, shape, dtype, spec.component, spec.tp, spec.layer,
                                  params_per_value=per_value, scheme_tensor=True))
    return out


def mtp_tensors(cfg: ModelConfig, *, quantized: bool | None = None) -> list[TensorSpec]:
    fp8 = _is_fp8(cfg, quantized)
    out: list[TensorSpec] = []
    for k in range(cfg.num_nextn_predict_layers):
        out.extend(_mtp_layer(cfg, cfg.num_layers + k, fp8, storage_dtype(cfg)))
    return out


def _is_fp8(cfg: ModelConfig, quantized: bool | None) -> bool:
    return fp8_block(cfg) is not None if quantized is None else quantized


def _decoder_layer(cfg: ModelConfig, i: int, fp8: bool, dtype: str,
                   component_override: str | None) -> Iterator[TensorSpec]:
    h = cfg.hidden_size
    p = f"model.layers.{i}."
    linear_dtype = "F8_E4M3" if fp8 else dtype

    def linear(name: str, shape: tuple[int, int], component: str, tp: str, layer: int) -> TensorSpec:
        return TensorSpec(name, shape, linear_dtype, component, tp, layer, fp8, linear=True)

    def comp(c: str) -> str:
        return component_override or c

    yield TensorSpec(p + "input_layernorm.weight", (h,), dtype, comp("norms"), "replicated", i)
    a = p + "self_attn."
    if cfg.is_mla:
        q_out = cfg.num_heads * cfg.qk_head_dim
        if cfg.q_lora_rank:
            yield linear(a + "q_a_proj.weight", (cfg.q_lora_rank, h), comp("attention"), "replicated", i)
            yield TensorSpec(a + "q_a_layernorm.weight", (cfg.q_lora_rank,), dtype, comp("attention"), "replicated", i)
            yield linear(a + "q_b_proj.weight", (q_out, cfg.q_lora_rank), comp("attention"), "split", i)
        else:
            yield linear(a + "q_proj.weight", (q_out, h), comp("attention"), "split", i)
        yield linear(a + "kv_a_proj_with_mqa.weight", (cfg.kv_lora_rank + cfg.qk_rope_head_dim, h),
                     comp("attention"), "replicated", i)
        yield TensorSpec(a + "kv_a_layernorm.weight", (cfg.kv_lora_rank,), dtype, comp("attention"), "replicated", i)
        yield linear(a + "kv_b_proj.weight", (cfg.num_heads * (cfg.qk_nope_head_dim + cfg.v_head_dim),
                                              cfg.kv_lora_rank), comp("attention"), "split", i)
        yield linear(a + "o_proj.weight", (h, cfg.num_heads * cfg.v_head_dim), comp("attention"), "split", i)
    else:
        q_out, kv_out = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        yield linear(a + "q_proj.weight", (q_out, h), comp("attention"), "split", i)
        yield linear(a + "k_proj.weight", (kv_out, h), comp("attention"), "kv", i)
        yield linear(a + "v_proj.weight", (kv_out, h), comp("attention"), "kv", i)
        if cfg.attention_bias:
            yield TensorSpec(a + "q_proj.bias", (q_out,), dtype, comp("attention"), "split", i)
            yield TensorSpec(a + "k_proj.bias", (kv_out,), dtype, comp("attention"), "kv", i)
            yield TensorSpec(a + "v_proj.bias", (kv_out,), dtype, comp("attention"), "kv", i)
        yield linear(a + "o_proj.weight", (h, q_out), comp("attention"), "split", i)
    yield TensorSpec(p + "post_attention_layernorm.weight", (h,), dtype, comp("norms"), "replicated", i)
    m = p + "mlp."
    if cfg.is_moe_layer(i):
        e, mi = cfg.n_routed_experts, cfg.moe_intermediate_size
        yield TensorSpec(m + "gate.weight", (e, h), dtype, comp("router"), "replicated", i)
        if cfg.topk_method == "noaux_tc":
            yield TensorSpec(m + "gate.e_score_correction_bias", (e,), "F32", comp("router"), "replicated", i)
        for j in range(e):
            x = f"{m}experts.{j}."
            yield linear(x + "gate_proj.weight", (mi, h), comp("routed_experts"), "split", i)
            yield linear(x + "up_proj.weight", (mi, h), comp("routed_experts"), "split", i)
            yield linear(x + "down_proj.weight", (h, mi), comp("routed_experts"), "split", i)
        if cfg.n_shared_experts:
            si = mi * cfg.n_shared_experts
            yield linear(m + "shared_experts.gate_proj.weight", (si, h), comp("shared_experts"), "split", i)
            yield linear(m + "shared_experts.up_proj.weight", (si, h), comp("shared_experts"), "split", i)
            yield linear(m + "shared_experts.down_proj.weight", (h, si), comp("shared_experts"), "split", i)
    else:
        it = cfg.intermediate_size
        yield linear(m + "gate_proj.weight", (it, h), comp("dense_mlp"), "split", i)
        yield linear(m + "up_proj.weight", (it, h), comp("dense_mlp"), "split", i)
        yield linear(m + "down_proj.weight", (h, it), comp("dense_mlp"), "split", i)


def _mtp_layer(cfg: ModelConfig, i: int, fp8: bool, dtype: str) -> Iterator[TensorSpec]:
    """DeepSeek-V3 multi-token prediction: a full decoder layer plus its own embedding, projection and head
    (the MTP-only tensors come last, as in the released checkpoints' final shard)."""
    h, v = cfg.hidden_size, cfg.vocab_size
    p = f"model.layers.{i}."
    yield from _decoder_layer(cfg, i, fp8, dtype, component_override="mtp")
    yield TensorSpec(p + "embed_tokens.weight", (v, h), dtype, "mtp", "vocab", i)
    yield TensorSpec(p + "enorm.weight", (h,), dtype, "mtp", "replicated", i)
    yield TensorSpec(p + "hnorm.weight", (h,), dtype, "mtp", "replicated", i)
    # eh_proj is a plain (unquantized) linear in the released checkpoints
    yield TensorSpec(p + "eh_proj.weight", (h, 2 * h), dtype, "mtp", "split", i)
    yield TensorSpec(p + "shared_head.norm.weight", (h,), dtype, "mtp", "replicated", i)
    yield TensorSpec(p + "shared_head.head.weight", (v, h), dtype, "mtp", "vocab", i)


def layer_of(name: str) -> int | None:
    m = _LAYER_RE.match(name)
    return int(m.group(1)) if m else None


_SCALE_SUFFIXES = (SCALE_SUFFIX, ".weight_scale", ".input_scale")
_LAYER_PREFIX = "model.layers."


def component_of(name: str, num_layers: int | None) -> str | None:
    """Which component a checkpoint tensor belongs to, from its name alone; None for FP8 scales (not parameters).
    Plain string tests, most frequent first: this runs once per tensor (R1: ~92k)."""
    if name.endswith(_SCALE_SUFFIXES):
        return None
    if not name.startswith(_LAYER_PREFIX):
        if name.startswith("model.embed_tokens."):
            return "embeddings"
        if name.startswith("lm_head."):
            return "lm_head"
        return "norms" if "norm" in name else "other"
    layer, _, rest = name[len(_LAYER_PREFIX):].partition(".")
    if num_layers is not None and layer.isdigit() and int(layer) >= num_layers:
        return "mtp"
    if rest.startswith("mlp."):
        if rest.startswith("mlp.experts."):
            return "routed_experts"
        if rest.startswith("mlp.shared_experts."):
            return "shared_experts"
        if rest.startswith("mlp.gate."):
            return "router"
        return "dense_mlp"
    if rest.startswith("self_attn."):
        return "attention"
    return "norms" if "norm" in rest else "other"
