"""Which tensor-parallel sizes a checkpoint supports: one rule, used by the memory planner (`inspect-shards`,
`env check`, the profile matcher) and by the weight loader, so that the planner never says "fits" for a TP size the
loader refuses.

A TP size must divide the attention heads and the split intermediate sizes; with block-FP8 weights each rank's
partition must also start on a whole quantization block (the loader copies a rank's scales block by block:
vdeploy/layers/linear.py refuses a partition offset that is not a multiple of the block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vdeploy.checkpoint.layout import decoder_layer_tensors, fp8_block, layer_kind, logical_layer_tensors
from vdeploy.checkpoint.quant_schemes import quant_scheme
from vdeploy.config import ModelConfig

# Row-parallel linears split their input features (dim 1); every other split linear its output features (dim 0).
_ROW_PARALLEL = ("o_proj.weight", "down_proj.weight")
_MERGED_FIRST = ("gate_proj.weight", "q_proj.weight", "k_proj.weight")


@dataclass(frozen=True)
class SplitDim:
    name: str  # e.g. model.layers.N.self_attn.o_proj.weight
    size: int  # features along the split dimension
    dim: int  # 0: output features (column parallel), 1: input features (row parallel)


def fp8_split_dims(cfg: ModelConfig) -> list[SplitDim]:
    """The distinct split dimensions of the block-FP8 weights (one layer of each kind; experts deduplicated)."""
    if fp8_block(cfg) is None:
        return []
    seen_kinds: set[str] = set()
    dims: dict[tuple[int, int, str], SplitDim] = {}
    for i in range(cfg.num_layers):  # layers of one kind have identical shapes
        kind = layer_kind(cfg, i)
        if kind in seen_kinds:
            continue
        seen_kinds.add(kind)
        for spec in decoder_layer_tensors(cfg, i):
            if not spec.quantized or spec.tp != "split" or len(spec.shape) != 2:
                continue
            dim = 1 if spec.name.endswith(_ROW_PARALLEL) else 0
            generic = re.sub(r"\.experts\.\d+\.", ".experts.E.", spec.name.replace(f"model.layers.{i}.",
                                                                                  "model.layers.N."))
            dims.setdefault((spec.shape[dim], dim, generic), SplitDim(generic, spec.shape[dim], dim))
    return list(dims.values())


def tp_problem(cfg: ModelConfig, tp: int, split_dims: list[SplitDim] | None = None) -> str | None:
    """Why `cfg`'s checkpoint cannot be split `tp` ways, or None when it can. `split_dims`: fp8_split_dims(cfg),
    when the caller asks for many TP sizes."""
    if tp < 1:
        return f"tensor parallel size must be ≥ 1 (got {tp})"
    if tp > 1 and cfg.num_heads % tp:
        return f"TP {tp} does not divide the {cfg.num_heads} attention heads"
    for what, size in (("intermediate_size", cfg.intermediate_size),
                       ("moe_intermediate_size", cfg.moe_intermediate_size if cfg.is_moe else 0)):
        if size and size % tp:
            return f"TP {tp} does not divide {what} {size}"
    problem = _packed_problem(cfg, tp)
    if problem is not None:
        return problem
    block = fp8_block(cfg)
    if block is None:
        return None
    for d in split_dims if split_dims is not None else fp8_split_dims(cfg):
        b = block[d.dim]
        # the first part of a merged weight (gate of gate_up, q/k of qkv) must end on a block even at TP 1: the
        # next part's scales start there
        merged_first = d.dim == 0 and d.name.endswith(_MERGED_FIRST)
        if (tp > 1 or merged_first) and (d.size % tp or (d.size // tp) % b):
            if tp == 1:
                return (f"{d.name} ({d.size} output features) does not end on a whole {block[0]}×{block[1]} FP8 "
                        "block, so the weight merged after it cannot be loaded")
            return (f"TP {tp} splits {d.name} ({d.size} {'input' if d.dim else 'output'} features) into "
                    f"{d.size / tp:g} per rank, not whole {block[0]}×{block[1]} FP8 blocks")
    return None


def _packed_problem(cfg: ModelConfig, tp: int) -> str | None:
    """AWQ/GPTQ: each rank's slice of a split linear must be whole packed int32 words and (row parallel) whole
    groups; checked on one layer of each kind (layers of a kind have equal shapes)."""
    scheme = quant_scheme(cfg.quant)
    if scheme is None or tp == 1:
        return None
    seen: set[str] = set()
    for i in range(cfg.num_layers):
        if layer_kind(cfg, i) in seen:
            continue
        seen.add(layer_kind(cfg, i))
        for spec in logical_layer_tensors(cfg, i):
            if not spec.linear or spec.tp != "split":
                continue
            row = spec.name.endswith(_ROW_PARALLEL)
            generic = spec.name.replace(f"model.layers.{i}.", "model.layers.N.")[: -len(".weight")]
            problem = scheme.tp_problem(generic, spec.shape[1 if row else 0], row, tp)
            if problem is not None:
                return problem
    return None


def supported_tp_sizes(cfg: ModelConfig, limit: int = 8, split_dims: list[SplitDim] | None = None) -> list[int]:
    dims = split_dims if split_dims is not None else fp8_split_dims(cfg)
    return [t for t in range(1, limit + 1) if tp_problem(cfg, t, dims) is None]


def tp_advice(cfg: ModelConfig, tp: int, split_dims: list[SplitDim] | None = None) -> str:
    """What to do instead of an unsupported `tp`."""
    sizes = supported_tp_sizes(cfg, split_dims=split_dims)
    return "use --tp " + " or ".join(str(t) for t in sizes) if sizes else "no tensor-parallel size up to 8 works"
