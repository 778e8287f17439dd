"""Cross-file integrity checks: the index against the shard headers, duplicates, and the headers against what the
config implies (shapes, dtypes, FP8 scales), plus config/tokenizer contradictions.

Findings of one kind are capped (MAX_PER_KIND listed, then one summary) so that a config off by one layer does not
bury the report under ten thousand lines.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from vdeploy.checkpoint.findings import Finding, error, info, warning
from vdeploy.checkpoint.index import ShardMap
from vdeploy.checkpoint.kv_scales import kv_scale_target
from vdeploy.checkpoint.layout import SCALE_SUFFIX, expected_tensors, fp8_block, layer_of, scale_shape
from vdeploy.checkpoint.quant_schemes import PACKED_METHODS
from vdeploy.checkpoint.safetensors_header import FP8_DTYPES, ShardHeader, TensorEntry
from vdeploy.config import ModelConfig

MAX_PER_KIND = 20
# int32-packed 4-bit weights and their zero points (AWQ, GPTQ): a checkpoint holding them is a packed one
PACKED_MARKERS = (".qweight", ".qzeros")
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
SCALE_DTYPES = ("F32", "BF16", "F16")
# Tensors some exporters leave in a checkpoint that no model uses (older Llama exports keep rotary inv_freq).
BENIGN_SUFFIXES = (".rotary_emb.inv_freq",)
# Tensors only a DeepSeek multi-token-prediction module has (it also holds a full decoder layer).
MTP_MARKERS = (".eh_proj.weight", ".enorm.weight", ".hnorm.weight", ".embed_tokens.weight", ".shared_head.head.weight",
               ".shared_head.norm.weight")


@dataclass(slots=True)
class Located:
    entry: TensorEntry
    file: str


class FindingList:
    """Collects findings, listing at most MAX_PER_KIND of each kind and counting the rest."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._overflow: dict[str, tuple[Finding, int]] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, finding: Finding) -> None:
        self._counts[finding.kind] += 1
        if self._counts[finding.kind] <= MAX_PER_KIND:
            self.items.append(finding)
        else:
            first, n = self._overflow.get(finding.kind, (finding, 0))
            self._overflow[finding.kind] = (first, n + 1)

    def extend(self, findings: list[Finding]) -> None:
        for f in findings:
            self.add(f)

    def result(self) -> list[Finding]:
        out = list(self.items)
        for kind, (first, n) in self._overflow.items():
            out.append(Finding(first.severity, kind, f"… and {n:,} more findings like the ones above"))
        return out


def collect_tensors(headers: list[ShardHeader], shard_map: ShardMap, out: FindingList) -> dict[str, Located]:
    """One entry per tensor name, checking duplicates and the index's placement against the headers."""
    tensors: dict[str, Located] = {}
    weight_map = shard_map.weight_map
    for shard in headers:
        for t in shard.tensors:
            seen = tensors.get(t.name)
            if seen is not None:
                out.add(error("duplicate_tensor", f"also stored in {seen.file}; which copy loads is undefined",
                              file=shard.file, tensor=t.name, hint="remove the stale copy or re-download"))
                continue
            tensors[t.name] = Located(t, shard.file)
            if not weight_map:
                continue
            listed = weight_map.get(t.name)
            if listed is None:
                out.add(error("tensor_not_in_index", "in this shard's header but not in the index; loaders that follow "
                              "the index will not load it", file=shard.file, tensor=t.name,
                              hint="fix model.safetensors.index.json or re-download it"))
            elif listed != shard.file:
                out.add(error("index_header_mismatch", f"the index places it in {listed}, but it is in this shard",
                              file=shard.file, tensor=t.name, hint="re-download model.safetensors.index.json"))
    names_by_file = {s.file: {t.name for t in s.tensors} for s in headers if s.readable}
    for name, file in weight_map.items():
        names = names_by_file.get(file)
        if names is not None and name not in names:
            out.add(error("tensor_missing_from_shard", "the index places it in this shard, but its header lacks it",
                          file=file, tensor=name, hint="re-download this shard"))
    return tensors


def check_against_config(cfg: ModelConfig, tensors: dict[str, Located], out: FindingList) -> None:
    """Shapes and dtypes the config implies, FP8 weights and their block scales."""
    packed = next((name for name in tensors if name.endswith(PACKED_MARKERS)), None)
    if packed is not None and (cfg.quant is None or cfg.quant.method not in PACKED_METHODS):
        # every weight would read as missing and every packed tensor as stray: say the one thing that is wrong
        out.add(error("packed_without_quant_config", "an AWQ/GPTQ packed weight, but config.json declares no AWQ or "
                      "GPTQ quantization_config", file=tensors[packed].file, tensor=packed,
                      hint="use the config.json that came with these weights (its quantization_config names the "
                           "format; a separate quant_config.json is not read)"))
        return
    expected = {s.name: s for s in expected_tensors(cfg, include_mtp=True)}
    block = fp8_block(cfg)
    mtp_missing = 0
    for name, spec in expected.items():
        if name not in tensors:
            if spec.component == "mtp":
                mtp_missing += 1
            else:
                out.add(error("missing_tensor", f"the config implies {list(spec.shape)} {spec.dtype} but no shard "
                              "holds it", tensor=name, hint="download the complete checkpoint"))
    if mtp_missing:
        out.add(info("mtp_absent", f"{mtp_missing} tensors of the multi-token-prediction layer are not in the "
                     "checkpoint; serving does not need them"))
    fp8_dtype = f"F8_{cfg.quant.fmt.upper()}" if block is not None and cfg.quant and cfg.quant.fmt else "F8_E4M3"
    unquantized = 0
    for name, loc in tensors.items():
        t = loc.entry
        if name.endswith(SCALE_SUFFIX):
            _check_scale(name, loc, tensors, block, out)
            continue
        if kv_scale_target(name) is not None:  # fp8 KV-cache scales: optional, applied by the loader
            continue
        spec = expected.get(name)
        if spec is None:
            _unexpected(cfg, name, loc, out)
            continue
        if t.shape != spec.shape:
            out.add(error("shape_mismatch", f"shape {list(t.shape)} contradicts the config, which implies "
                          f"{list(spec.shape)}", file=loc.file, tensor=name,
                          hint="the config.json does not belong to these weights (hidden size, heads, vocab?)"))
        has_scale = name + SCALE_SUFFIX in tensors
        if spec.scheme_tensor:  # AWQ/GPTQ/compressed-tensors: integer and 8-bit tensors exactly as the scheme says
            if t.dtype != spec.dtype and not (t.dtype in FLOAT_DTYPES and spec.dtype in FLOAT_DTYPES):
                out.add(error("wrong_dtype", f"stored as {t.dtype}; the {cfg.quant.method if cfg.quant else ''} "
                              f"layout stores it as {spec.dtype}", file=loc.file, tensor=name,
                              hint="use the config.json that came with these weights, or re-download this shard"))
        elif t.dtype in FP8_DTYPES:
            if block is None:
                out.add(error("fp8_without_quant_config", f"{t.dtype} weight but config.json has no fp8 "
                              "quantization_config", file=loc.file, tensor=name,
                              hint="use the config.json that came with these weights"))
            elif t.dtype != fp8_dtype:
                out.add(error("fp8_format_mismatch", f"stored as {t.dtype} but config.json's quantization_config "
                              f"says fmt {cfg.quant.fmt} ({fp8_dtype}): the bytes would be decoded as the wrong "
                              "format", file=loc.file, tensor=name,
                              hint="use the config.json that came with these weights, or re-download the shard"))
            elif not spec.quantized:
                out.add(error("unexpected_fp8", f"{t.dtype} but this tensor is never quantized (it is "
                              f"{spec.dtype} in {cfg.architecture})", file=loc.file, tensor=name,
                              hint="re-download this shard"))
            elif not has_scale:
                out.add(error("fp8_weight_without_scale", f"{t.dtype} weight without its {name + SCALE_SUFFIX}",
                              file=loc.file, tensor=name, hint="re-download the shard holding its scale"))
        elif t.dtype not in FLOAT_DTYPES:
            out.add(error("wrong_dtype", f"stored as {t.dtype}, not a floating-point type; the config implies "
                          f"{spec.dtype}", file=loc.file, tensor=name, hint="re-download this shard"))
        elif spec.quantized and has_scale:
            out.add(error("unquantized_with_scale", f"stored as {t.dtype} but its {name + SCALE_SUFFIX} is present: "
                          "the weight was replaced or its quantization lost; loading would apply the scales to "
                          "unquantized values", file=loc.file, tensor=name,
                          hint="re-download this shard (an FP8 checkpoint stores this weight as F8_E4M3)"))
        elif spec.quantized:
            unquantized += 1
        elif t.dtype != spec.dtype:
            out.add(warning("dtype_mismatch", f"stored as {t.dtype}; the config implies {spec.dtype}",
                            file=loc.file, tensor=name))
    if unquantized:
        out.add(info("unquantized_weights", f"{unquantized} weights the config quantizes to FP8 are stored "
                     "unquantized; they load as they are"))
    _check_layer_count(cfg, tensors, out)


def _unexpected(cfg: ModelConfig, name: str, loc: Located, out: FindingList) -> None:
    """A tensor the config does not describe. Known leftovers are ignored with a warning; anything else means the
    config and the weights disagree (a layer the config does not have, a renamed tensor) and is an error."""
    t = loc.entry
    if cfg.quant is not None and cfg.quant.method == "gptq" and name.endswith("_proj.bias"):
        out.add(warning("unexpected_tensor", f"{t.dtype} {list(t.shape)}: a bias AutoGPTQ exports for every "
                        "quantized linear; skipped at load when all zero (refused otherwise)", file=loc.file,
                        tensor=name))
        return
    benign = name.endswith(BENIGN_SUFFIXES) or (name == "lm_head.weight" and cfg.tie_word_embeddings)
    if benign:
        out.add(warning("unexpected_tensor", f"{t.dtype} {list(t.shape)} is not used by a {cfg.architecture} with "
                        "this config; it will be ignored", file=loc.file, tensor=name))
        return
    out.add(error("unexpected_tensor", f"{t.dtype} {list(t.shape)} is not part of a {cfg.architecture} with this "
                  "config: the config and the weights disagree", file=loc.file, tensor=name,
                  hint="use the config.json that came with these weights, or remove the stray tensor"))


def _check_layer_count(cfg: ModelConfig, tensors: dict[str, Located], out: FindingList) -> None:
    """The decoder layers the headers hold (a layer with attention, not an MTP module) against num_hidden_layers:
    a config with fewer layers would silently run a truncated model, one with more would read the MTP module as a
    decoder layer."""
    main: dict[int, str] = {}
    mtp: set[int] = set()
    for name, loc in tensors.items():
        # plain string tests before any parsing: this sees every tensor (R1: ~92k)
        is_mtp = name.endswith(MTP_MARKERS)
        if not (is_mtp or ".self_attn." in name) or not name.startswith("model.layers."):
            continue
        layer = layer_of(name)
        if layer is None:
            continue
        if is_mtp:
            mtp.add(layer)
        else:
            main.setdefault(layer, loc.file)
    layers = sorted(i for i in main if i not in mtp)
    if not layers:
        return
    held = layers[-1] + 1
    if held != cfg.num_layers:
        extra = held > cfg.num_layers
        where = max(layers) if extra else None
        out.add(error("layer_count_mismatch", f"config.json has num_hidden_layers = {cfg.num_layers} but the "
                      f"checkpoint holds {held} decoder layers (0-{held - 1})"
                      + ("; the extra layers would be ignored: a truncated model" if extra else ""),
                      file=main[where] if where is not None else "config.json",
                      tensor=next((n for n in tensors if layer_of(n) == where), None) if extra else None,
                      hint="use the config.json that came with these weights"))


def _check_scale(name: str, loc: Located, tensors: dict[str, Located], block: tuple[int, int] | None,
                 out: FindingList) -> None:
    weight = tensors.get(name[: -len(SCALE_SUFFIX)])
    if weight is None:
        out.add(warning("orphan_scale", "an FP8 scale without its weight", file=loc.file, tensor=name))
        return
    if loc.entry.dtype not in SCALE_DTYPES:
        out.add(error("scale_dtype", f"scale stored as {loc.entry.dtype}; block scales are float32",
                      file=loc.file, tensor=name, hint="re-download this shard"))
        return
    if block is None or len(weight.entry.shape) != 2:
        return
    want = scale_shape(weight.entry.shape, block)
    if loc.entry.shape != want:
        out.add(error("scale_block_shape", f"scale shape {list(loc.entry.shape)} does not match {block[0]}×{block[1]} "
                      f"blocks of the {list(weight.entry.shape)} weight (expected {list(want)})",
                      file=loc.file, tensor=name, hint="the quantization_config block size does not match the weights"))


def check_tokenizer(cfg: ModelConfig, model_max_length: int | None, tokenizer_vocab: int | None,
                    out: FindingList) -> None:
    if model_max_length is not None and model_max_length < cfg.max_position_embeddings:
        out.add(warning("model_max_length", f"tokenizer_config.json model_max_length {model_max_length:,} is below "
                        f"max_position_embeddings {cfg.max_position_embeddings:,}", file="tokenizer_config.json",
                        hint="tokenizer-side truncation would cut prompts early; vdeploy uses --max-model-len "
                        "(default: what the KV cache allows, up to max_position_embeddings)"))
    if tokenizer_vocab is not None and tokenizer_vocab > cfg.vocab_size:
        out.add(error("vocab_smaller_than_tokenizer", f"the tokenizer produces ids up to {tokenizer_vocab - 1:,} but "
                      f"the model's vocab_size is {cfg.vocab_size:,}: those tokens index past the embedding",
                      file="config.json", hint="use the tokenizer that came with this model"))
