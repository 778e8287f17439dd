"""Which tensor-parallel sizes a checkpoint supports: one rule, used by the memory planner (`inspect-shards`,
`env check`, the profile matcher) and by the weight loader, so that the planner never says "fits" for a TP size the
loader refuses.

A TP size must divide the attention heads and the split intermediate sizes, and split the KV heads evenly (each
rank keeps KV_heads / TP of them, or one head replicated on TP / KV_heads ranks). With block-FP8 weights the loader
copies a rank's scales block by block (vdeploy/layers/linear.py refuses a partition offset that is not a multiple
of the block), so every offset it uses must fall on a block:
- where a rank's slice starts in the checkpoint tensor (split linears at TP > 1, K/V projections when their heads
  go to different ranks), and
- where the next part of a merged weight starts in the rank's partition (gate ‖ up, q ‖ k ‖ v), even at TP 1.
The routed experts (vdeploy.layers.moe) slice their scales in whole blocks without checking: there the same rule keeps
a rank from reading another rank's scales.
K/V projections are checked with the rows a rank really holds (whole heads), not 1/TP of the tensor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vdeploy.checkpoint.layout import decoder_layer_tensors, fp8_block, layer_kind, logical_layer_tensors
from vdeploy.checkpoint.quant_schemes import quant_scheme
from vdeploy.config import ModelConfig

# Row-parallel linears split their input features (dim 1); every other split linear its output features (dim 0).
_ROW_PARALLEL = ("o_proj.weight", "down_proj.weight")
# Weights whose rows are followed by another weight's in one merged parameter (gate ‖ up, q ‖ k ‖ v; MLA's q_proj
# is a layer of its own)
_MERGED_FIRST = ("gate_proj.weight", "q_proj.weight", "k_proj.weight")
_MERGED_FIRST_MLA = ("gate_proj.weight",)
_SPLIT_RULES = ("split", "kv")  # the TP rules (vdeploy.checkpoint.layout.TP_RULES) that cut a linear between ranks


@dataclass(frozen=True)
class SplitDim:
    name: str  # e.g. model.layers.N.self_attn.o_proj.weight
    size: int  # features along the split dimension
    dim: int  # 0: output features (column parallel), 1: input features (row parallel)
    kv_heads: int = 0  # K/V projections: split by whole KV heads (vdeploy.layers.linear.QKVParallelLinear); 0 otherwise
    merged_first: bool = False  # another weight's rows follow this one's in the rank's merged partition

    def rank_share(self, tp: int) -> tuple[float, int]:
        """(features each rank holds, how many different slices the ranks hold) at `tp` ranks."""
        if self.kv_heads and self.kv_heads < tp:  # one whole head per rank, replicated on tp / kv_heads ranks
            return self.size / self.kv_heads, self.kv_heads
        return self.size / tp, tp


def fp8_split_dims(cfg: ModelConfig) -> list[SplitDim]:
    """The distinct split dimensions of the block-FP8 weights (one layer of each kind; experts deduplicated)."""
    if fp8_block(cfg) is None:
        return []
    merged_first = _MERGED_FIRST_MLA if cfg.is_mla else _MERGED_FIRST
    seen_kinds: set[str] = set()
    dims: dict[tuple[int, int, str], SplitDim] = {}
    for i in range(cfg.num_layers):  # layers of one kind have identical shapes
        kind = layer_kind(cfg, i)
        if kind in seen_kinds:
            continue
        seen_kinds.add(kind)
        for spec in decoder_layer_tensors(cfg, i):
            if not spec.quantized or spec.tp not in _SPLIT_RULES or len(spec.shape) != 2:
                continue
            dim = 1 if spec.name.endswith(_ROW_PARALLEL) else 0
            generic = re.sub(r"\.experts\.\d+\.", ".experts.E.", spec.name.replace(f"model.layers.{i}.",
                                                                                  "model.layers.N."))
            dims.setdefault((spec.shape[dim], dim, generic), SplitDim(
                generic, spec.shape[dim], dim, kv_heads=cfg.num_kv_heads if spec.tp == "kv" else 0,
                merged_first=dim == 0 and spec.name.endswith(merged_first)))
    return list(dims.values())


def tp_problem(cfg: ModelConfig, tp: int, split_dims: list[SplitDim] | None = None) -> str | None:
    """Why `cfg`'s checkpoint cannot be split `tp` ways, or None when it can. `split_dims`: fp8_split_dims(cfg),
    when the caller asks for many TP sizes."""
    if tp < 1:
        return f"tensor parallel size must be ≥ 1 (got {tp})"
    if tp > 1 and cfg.num_heads % tp:
        return f"TP {tp} does not divide the {cfg.num_heads} attention heads"
    problem = _kv_heads_problem(cfg, tp)
    if problem is not None:
        return problem
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
        problem = _block_problem(d, tp, block)
        if problem is not None:
            return problem
    return None


def _kv_heads_problem(cfg: ModelConfig, tp: int) -> str | None:
    """GQA attention (not MLA, whose latent is replicated): each rank needs KV_heads / TP whole heads, or one head
    shared by TP / KV_heads ranks (vdeploy.layers.linear.QKVParallelLinear refuses anything else)."""
    kv = cfg.num_kv_heads
    if cfg.is_mla or tp == 1 or not kv:
        return None
    if kv >= tp and kv % tp:
        return f"TP {tp} does not divide the {kv} KV heads"
    if kv < tp and tp % kv:
        return f"TP {tp} cannot share the {kv} KV heads evenly (a multiple or a divisor of {kv} can)"
    return None


def _block_problem(d: SplitDim, tp: int, block: tuple[int, int]) -> str | None:
    """Why the loader cannot copy each rank's block scales of `d` at `tp` ranks (see the module docstring), or
    None."""
    b = block[d.dim]
    per_rank, slices = d.rank_share(tp)
    # a rank's slice starts inside the checkpoint tensor, or the next merged weight starts after it
    if not (slices > 1 or d.merged_first) or (per_rank.is_integer() and per_rank % b == 0):
        return None
    fp8_block_name = f"{block[0]}×{block[1]} FP8 block"
    what = "input" if d.dim else "output"
    if d.kv_heads and d.kv_heads < tp:
        return (f"TP {tp} gives each rank one whole KV head of {d.name}: {per_rank:g} {what} features, not whole "
                f"{fp8_block_name}s")
    if tp == 1:
        return (f"{d.name} ({d.size} {what} features) does not end on a whole {fp8_block_name}, so the weight "
                "merged after it cannot be loaded")
    heads = f", {d.kv_heads} KV heads" if d.kv_heads else ""
    return (f"TP {tp} splits {d.name} ({d.size} {what} features{heads}) into {per_rank:g} per rank, not whole "
            f"{fp8_block_name}s")


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
            if not spec.linear or spec.tp not in _SPLIT_RULES:
                continue
            row = spec.name.endswith(_ROW_PARALLEL)
            generic = spec.name.replace(f"model.layers.{i}.", "model.layers.N.")[: -len(".weight")]
            kv = cfg.num_kv_heads if spec.tp == "kv" else 0
            # K/V with fewer heads than ranks: each rank holds one whole head, the slices of TP = KV heads
            ways = kv if kv and kv < tp else tp
            problem = scheme.tp_problem(generic, spec.shape[1 if row else 0], row, ways)
            if problem is not None:
                return problem if ways == tp else f"TP {tp} keeps one of the {kv} KV heads per rank, as TP {kv} " \
                                                  f"does: {problem}"
    return None


def supported_tp_sizes(cfg: ModelConfig, limit: int = 8, split_dims: list[SplitDim] | None = None) -> list[int]:
    dims = split_dims if split_dims is not None else fp8_split_dims(cfg)
    return [t for t in range(1, limit + 1) if tp_problem(cfg, t, dims) is None]


def tp_advice(cfg: ModelConfig, tp: int, split_dims: list[SplitDim] | None = None) -> str:
    """What to do instead of an unsupported `tp`."""
    sizes = supported_tp_sizes(cfg, split_dims=split_dims)
    return "use --tp " + " or ".join(str(t) for t in sizes) if sizes else "no tensor-parallel size up to 8 works"
