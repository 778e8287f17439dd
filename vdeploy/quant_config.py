"""`ModelConfig.quant`: config.json's quantization_config as read (the method, the FP8 format and block size, and
the whole mapping for each scheme's LinearMethod), and the FP8 variants refused when the config is read. Plain data:
no torch import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vdeploy.errors import ConfigError


@dataclass(frozen=True)
class QuantConfig:
    method: str  # quant_method of config.json: "fp8", "awq", "gptq", "compressed-tensors"
    fmt: str  # "e4m3"
    weight_block_size: tuple[int, int] | None  # (128, 128) for DeepSeek-V3 block FP8
    activation_scheme: str = "dynamic"
    # the whole quantization_config mapping: each method's LinearMethod reads its own keys (bits, group_size, ...)
    source: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


_FP8_LOADED = ("vdeploy loads FP8 as DeepSeek's block FP8 (weight_block_size [128, 128], activation_scheme "
               "\"dynamic\") or as compressed-tensors FP8 W8A8 (per-channel or per-tensor weight scales, dynamic "
               "per-token activations)")
_FP8_HINT = "use the model's compressed-tensors FP8-dynamic export (e.g. made by llm-compressor) or its bf16 weights"


def refuse_unloadable_fp8(source: str, block: Any, activations: str) -> None:
    """`quant_method: fp8` means DeepSeek's block FP8 only with a `weight_block_size`: without one it is the
    per-tensor format of AutoFP8 / vLLM (a scalar `weight_scale`, plus an `input_scale` when the activations are
    "static"), which must not be read as 128×128 blocks. Refused here, naming the key, so that the loader and
    `inspect-shards` do not blame the files for a format vdeploy does not read."""
    if not block:
        static = ", static input_scale" if activations == "static" else ""
        raise ConfigError(f"{source}: quantization_config has quant_method \"fp8\" without weight_block_size "
                          f"(activation_scheme \"{activations}\"): per-tensor FP8 (AutoFP8 / vLLM format: scalar "
                          f"weight_scale{static}), which vdeploy does not load; {_FP8_LOADED}", hint=_FP8_HINT)
    if activations != "dynamic":
        raise ConfigError(f"{source}: quantization_config.activation_scheme \"{activations}\": static activation "
                          f"scales (input_scale) are not loaded; {_FP8_LOADED}", hint=_FP8_HINT)
