"""The integer-packed weight formats of `quantization_config` (AWQ, GPTQ): what a config says (bits, group size,
zero points, act-order) and which tensors a quantized linear `<prefix>.weight` [out, in] becomes on disk.

One description shared by the header checks and the planner (vdeploy.checkpoint.layout), the TP rules and the
linear methods that load the tensors (vdeploy.layers.int4), so that what is checked is what is loaded.

On-disk layouts (int32 words hold 32 / bits values, the first value in the lowest bits):
- AWQ, version "gemm": qweight [in, out/8] packed along out in AWQ's nibble order (nibble p of a word holds column
  AWQ_PACK_ORDER[p] of its 8); qzeros [in/group, out/8] packed the same way; scales [in/group, out] fp16;
  w = (q - zero) * scale.
- GPTQ: qweight [in/8, out] packed along in (nibble j of word i holds input row 8i + j); qzeros [groups, out/8]
  packed along out in plain order; scales [groups, out] fp16; g_idx [in] int32, the group of each input row
  (act-order / desc_act: any order). checkpoint_format "gptq" (v1) stores zero - 1, "gptq_v2" the zero itself;
  group_size -1 means one group over the whole input.
- compressed-tensors W8A8 (formats "int-quantized" / "float-quantized", one config group over the Linear layers):
  weight [out, in] int8 or float8_e4m3; weight_scale [out, 1] (strategy "channel") or [1] (strategy "tensor", one
  per projection, so a merged q/k/v keeps three); activations quantized per token at run time (dynamic);
  w = weight * scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from vdeploy.config import QuantConfig
from vdeploy.errors import ConfigError

PACKED_METHODS = ("awq", "gptq")
AWQ_PACK_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble p holds column AWQ_PACK_ORDER[p] of its group of 8
AUX_SUFFIXES = (".qzeros", ".scales", ".g_idx")  # storage next to a qweight, not parameters


@dataclass(frozen=True)
class PackedScheme:
    method: str  # "awq" | "gptq"
    bits: int  # 4
    group_size: int  # input rows per scale; -1: the whole input (GPTQ)
    sym: bool  # GPTQ: symmetric (zero = 2^(bits-1)); AWQ checkpoints always carry zero points
    desc_act: bool  # GPTQ act-order: g_idx in any order
    zero_offset: int  # added to the stored zero: 1 for GPTQ v1 checkpoints

    @property
    def pack(self) -> int:
        return 32 // self.bits

    def groups(self, in_features: int) -> int:
        return 1 if self.group_size == -1 else -(-in_features // self.group_size)

    def scales_split_by_input(self) -> bool:
        """Whether a row-parallel rank holds only its own groups' scales and zeros. Not with act-order (a rank's input
        rows may belong to any group) or one group over the whole input: then every rank holds all of them."""
        return not self.desc_act and self.group_size != -1

    def disk_tensors(self, prefix: str, out_features: int, in_features: int,
                     scale_dtype: str = "F16") -> list[tuple[str, tuple[int, ...], str, int]]:
        """(name, shape, safetensors dtype, parameters per stored value) of one linear `prefix.weight`
        [out, in]; parameters per value is 8 for a qweight (8 4-bit weights per int32), 0 for scales/zeros/g_idx."""
        p, g = self.pack, self.groups(in_features)
        if self.method == "awq":
            return [(prefix + "qweight", (in_features, out_features // p), "I32", p),
                    (prefix + "qzeros", (g, out_features // p), "I32", 0),
                    (prefix + "scales", (g, out_features), scale_dtype, 0)]
        return [(prefix + "qweight", (in_features // p, out_features), "I32", p),
                (prefix + "qzeros", (g, out_features // p), "I32", 0),
                (prefix + "scales", (g, out_features), scale_dtype, 0),
                (prefix + "g_idx", (in_features,), "I32", 0)]

    def bytes_per_param(self, in_features: int, out_features: int) -> float:
        """Real bytes per weight of one linear: packed values plus its scales, zeros and g_idx."""
        total = sum(_numel(shape) * (2 if dtype in ("F16", "BF16") else 4)
                    for _, shape, dtype, _ in self.disk_tensors("", out_features, in_features))
        return total / (in_features * out_features)

    def params_in(self, name: str, numel: int) -> int:
        """Parameters a stored tensor holds: a qweight packs `pack` per value, scales/zeros/g_idx hold none."""
        if name.endswith(".qweight"):
            return numel * self.pack
        return 0 if name.endswith(AUX_SUFFIXES) else numel

    def holds(self, name: str, dtype: str) -> bool:
        """Whether a checkpoint tensor is part of a quantized linear of this scheme."""
        return name.endswith((".qweight",) + AUX_SUFFIXES)

    def tp_problem(self, name: str, size: int, row_parallel: bool, tp: int) -> str | None:
        """Why splitting the linear `name` (`size` features along its split dimension) over `tp` ranks cannot
        work, or None."""
        per_rank = size / tp
        if row_parallel:
            if self.scales_split_by_input() and (size % tp or (size // tp) % self.group_size):
                return (f"TP {tp} splits {name} ({size} input features) into {per_rank:g} per rank, not whole "
                        f"{self.method} groups of {self.group_size}: a rank would need part of another's scales")
            unit, what = self.pack, "input"
        else:
            unit, what = self.pack, "output"
        if size % tp or (size // tp) % unit:
            return (f"TP {tp} splits {name} ({size} {what} features) into {per_rank:g} per rank, not whole int32 "
                    f"words of {unit} packed {self.bits}-bit values")
        return None

    def describe(self) -> str:
        group = "per channel" if self.group_size == -1 else f"group {self.group_size}"
        extra = (", act-order" if self.desc_act else "") + (", symmetric" if self.sym and self.method == "gptq"
                                                             else ", zero points")
        return f"{self.method} int{self.bits} W{self.bits}A16, {group}{extra}"


@dataclass(frozen=True)
class W8A8Scheme:
    """compressed-tensors W8A8: symmetric 8-bit weights with per-channel or per-tensor scales, activations
    quantized per token at run time."""

    method: str  # "compressed-tensors"
    kind: str  # "int" | "float"
    strategy: str  # "channel" | "tensor"
    bits: int = 8
    group_size: int = -1  # no groups along the input

    @property
    def weight_dtype(self) -> str:
        return "I8" if self.kind == "int" else "F8_E4M3"

    def disk_tensors(self, prefix: str, out_features: int, in_features: int,
                     scale_dtype: str = "F32") -> list[tuple[str, tuple[int, ...], str, int]]:
        scale_shape = (out_features, 1) if self.strategy == "channel" else (1,)
        return [(prefix + "weight", (out_features, in_features), self.weight_dtype, 1),
                (prefix + "weight_scale", scale_shape, scale_dtype, 0)]

    def bytes_per_param(self, in_features: int, out_features: int) -> float:
        return 1 + (4 * out_features if self.strategy == "channel" else 4) / (in_features * out_features)

    def params_in(self, name: str, numel: int) -> int:
        return 0 if name.endswith(".weight_scale") else numel

    def holds(self, name: str, dtype: str) -> bool:
        return name.endswith(".weight_scale") or (name.endswith(".weight") and dtype == self.weight_dtype)

    def tp_problem(self, name: str, size: int, row_parallel: bool, tp: int) -> str | None:
        return None  # one scale per output channel (or per tensor): any split the heads allow

    def describe(self) -> str:
        return f"compressed-tensors {'INT8' if self.kind == 'int' else 'FP8'} W8A8, per-{self.strategy} weight " \
               "scales, dynamic per-token activations"


def refuse_unsupported_model(family: str, quant: QuantConfig | None) -> None:
    """AWQ / GPTQ / W8A8 are wired into the dense Llama/Qwen2 linears; DeepSeek's MoE experts and MLA only read
    block FP8. Refuse early (before any tensor is read) instead of failing on an unexpected tensor."""
    if quant is not None and quant.method in PACKED_METHODS + ("compressed-tensors",) \
            and family.startswith("deepseek"):
        raise ConfigError(f"{quant.method} quantization of {family} models: vdeploy serves DeepSeek-V2/V3 in bf16 "
                          "or DeepSeek's block FP8; AWQ/GPTQ/W8A8 are supported for Llama and Qwen2",
                          hint="use the block-FP8 checkpoint, or a quantized R1 distill (Qwen2 / Llama)")


def quant_scheme(quant: QuantConfig | None) -> PackedScheme | W8A8Scheme | None:
    """The weight scheme of any non-FP8-block quantization_config vdeploy loads, or None."""
    if quant is not None and quant.method == "compressed-tensors":
        return w8a8_scheme(quant)
    return packed_scheme(quant)


def w8a8_scheme(quant: QuantConfig) -> W8A8Scheme:
    src = quant.source
    fmt = str(src.get("format", ""))
    groups = src.get("config_groups") or {}
    if fmt not in ("int-quantized", "float-quantized", "naive-quantized") or len(groups) != 1:
        raise ConfigError(f"compressed-tensors format {fmt!r} with {len(groups)} config group(s): vdeploy loads one "
                          "W8A8 group in the int-quantized / float-quantized formats",
                          hint="use an INT8 or FP8 W8A8 (dynamic activations) export")
    group = next(iter(groups.values()))
    weights, acts = group.get("weights") or {}, group.get("input_activations") or {}
    kind, strategy = str(weights.get("type", "int")), str(weights.get("strategy", ""))
    problems = []
    if weights.get("num_bits") != 8 or kind not in ("int", "float"):
        problems.append(f"weights {weights.get('num_bits')}-bit {kind}")
    if strategy not in ("channel", "tensor") or not weights.get("symmetric", True) or weights.get("dynamic"):
        problems.append(f"weight strategy {strategy!r} (symmetric, static channel/tensor scales only)")
    if acts.get("num_bits") != 8 or acts.get("type", kind) != kind or not acts.get("dynamic") \
            or acts.get("strategy") != "token":
        problems.append("activations not 8-bit dynamic per-token of the weights' type")
    if any("lm_head" not in str(x) for x in src.get("ignore") or []):  # "lm_head" or a regex such as "re:.*lm_head"
        problems.append(f"ignore list {src.get('ignore')!r} (only lm_head may stay unquantized)")
    if problems:
        raise ConfigError("compressed-tensors scheme vdeploy does not load: " + "; ".join(problems),
                          hint="vdeploy loads INT8 / FP8 W8A8 with per-channel or per-tensor weight scales and "
                          "dynamic per-token activations")
    return W8A8Scheme(quant.method, kind, strategy)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def packed_scheme(quant: QuantConfig | None) -> PackedScheme | None:
    """The config's packed integer scheme, None for other (or no) quantization; ConfigError for variants vdeploy does
    not load, naming the key."""
    if quant is None or quant.method not in PACKED_METHODS:
        return None
    src = quant.source
    bits = int(src.get("bits", src.get("w_bit", 4)))
    group = int(src.get("group_size", src.get("q_group_size", 128)))
    if bits != 4:
        raise ConfigError(f"{quant.method} with bits = {bits}: vdeploy loads 4-bit {quant.method} only",
                          hint="use a 4-bit (W4A16) checkpoint")
    if group != -1 and (group <= 0 or group % 8):
        raise ConfigError(f"{quant.method} group_size {group}: must be -1 or a positive multiple of 8")
    if quant.method == "awq":
        version = str(src.get("version", "gemm")).lower()
        if version != "gemm":
            raise ConfigError(f"AWQ version {version!r}: vdeploy loads the GEMM layout (version \"gemm\") only",
                              hint="re-export the model with AutoAWQ's GEMM kernel layout")
        if not src.get("zero_point", True):
            raise ConfigError("AWQ with zero_point = false: vdeploy loads AWQ checkpoints with zero points only")
        # AutoAWQ leaves lm_head unquantized and some exports say so; vdeploy never quantizes the head either
        kept = [m for m in src.get("modules_to_not_convert") or [] if m != "lm_head"]
        if kept:
            raise ConfigError(f"AWQ modules_to_not_convert {kept!r}: vdeploy needs every decoder linear quantized",
                              hint="only lm_head may be left unquantized")
        if group == -1:
            raise ConfigError("AWQ group_size -1: AWQ checkpoints are grouped; vdeploy reads positive group sizes")
        return PackedScheme("awq", bits, group, sym=False, desc_act=False, zero_offset=0)
    fmt = "marlin" if src.get("is_marlin_format") else str(src.get("checkpoint_format", "gptq")).lower()
    if fmt not in ("gptq", "gptq_v2"):
        raise ConfigError(f"GPTQ checkpoint_format {fmt!r}: vdeploy loads the \"gptq\" and \"gptq_v2\" layouts",
                          hint="re-export the model in the plain GPTQ layout (not marlin/bitblas)")
    if str(src.get("pack_dtype", "int32")).removeprefix("torch.") != "int32":
        raise ConfigError(f"GPTQ pack_dtype {src['pack_dtype']!r}: vdeploy reads values packed into int32 words",
                          hint="re-export the model with pack_dtype int32 (the GPTQ default)")
    if src.get("lm_head"):
        raise ConfigError("GPTQ with a quantized lm_head: vdeploy loads GPTQ checkpoints whose lm_head is not "
                          "quantized")
    return PackedScheme("gptq", bits, group, sym=bool(src.get("sym", True)), desc_act=bool(src.get("desc_act")),
                        zero_offset=1 if fmt == "gptq" else 0)
