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
from vdeploy.checkpoint.layout import SCALE_SUFFIX, expected_tensors, fp8_block, scale_shape
from vdeploy.checkpoint.safetensors_header import FP8_DTYPES, ShardHeader, TensorEntry
from vdeploy.config import ModelConfig

MAX_PER_KIND = 20


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
    unquantized = 0
    for name, loc in tensors.items():
        t = loc.entry
        if name.endswith(SCALE_SUFFIX):
            _check_scale(name, loc, tensors, block, out)
            continue
        spec = expected.get(name)
        if spec is None:
            out.add(warning("unexpected_tensor", f"{t.dtype} {list(t.shape)} is not part of a {cfg.architecture} "
                            "with this config; it will be ignored", file=loc.file, tensor=name))
            continue
        if t.shape != spec.shape:
            out.add(error("shape_mismatch", f"shape {list(t.shape)} contradicts the config, which implies "
                          f"{list(spec.shape)}", file=loc.file, tensor=name,
                          hint="the config.json does not belong to these weights (hidden size, heads, vocab?)"))
        if t.dtype in FP8_DTYPES:
            if block is None:
                out.add(error("fp8_without_quant_config", f"{t.dtype} weight but config.json has no fp8 "
                              "quantization_config", file=loc.file, tensor=name,
                              hint="use the config.json that came with these weights"))
            elif name + SCALE_SUFFIX not in tensors:
                out.add(error("fp8_weight_without_scale", f"{t.dtype} weight without its {name + SCALE_SUFFIX}",
                              file=loc.file, tensor=name, hint="re-download the shard holding its scale"))
        elif spec.quantized:
            unquantized += 1
        elif t.dtype != spec.dtype:
            out.add(warning("dtype_mismatch", f"stored as {t.dtype}; the config implies {spec.dtype}",
                            file=loc.file, tensor=name))
    if unquantized:
        out.add(info("unquantized_weights", f"{unquantized} weights the config quantizes to FP8 are stored "
                     "unquantized; they load as they are"))


def _check_scale(name: str, loc: Located, tensors: dict[str, Located], block: tuple[int, int] | None,
                 out: FindingList) -> None:
    weight = tensors.get(name[: -len(SCALE_SUFFIX)])
    if weight is None:
        out.add(warning("orphan_scale", "an FP8 scale without its weight", file=loc.file, tensor=name))
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
