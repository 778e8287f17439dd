"""The quantization hook of every linear layer: a `LinearMethod` creates the layer's parameters and computes
y = x W^T (+ b) with them. `get_linear_method(quant_config)` picks one; the unquantized method is
ops.dense_linear (cuBLAS, or a tuned Triton GEMV for decode shapes where one measured faster). Quantized methods
(FP8 block scales for DeepSeek-V3, AWQ / GPTQ W4A16, compressed-tensors W8A8) are listed in a constant table
(QUANTIZED_LINEAR_METHODS, by QuantConfig.method) and follow the same contract:

- create_weights registers parameters on `layer` and tags each with `output_dim` / `input_dim` (which tensor
  dimension is split across tensor-parallel ranks; None when not split) and optionally `weight_block =
  (block_out, block_in)` when the parameter holds one value per block of the weight (block scales), so the layer's
  `weight_loader` converts element offsets into block offsets.
- apply(layer, x, bias) returns the output for this rank's partition.
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass

import torch
from torch import nn

from vdeploy.config import QuantConfig
from vdeploy.errors import ConfigError
from vdeploy.layers import ops
from vdeploy.layers.weight_loading import set_weight_attrs


class LinearMethod:
    """Interface: how a linear layer stores and applies its weight."""

    def create_weights(
        self,
        layer: nn.Module,
        input_size_per_partition: int,
        output_partition_sizes: list[int],
        input_size: int,
        output_size: int,
        params_dtype: torch.dtype,
    ) -> None:
        raise NotImplementedError

    def apply(self, layer: nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def process_weights_after_loading(self, layer: nn.Module) -> None:
        """Called once after every weight of the model is loaded (repacking, transposes). Default: nothing."""

    def pin_decode_rows(self, pinning: "DecodeRowPinning") -> None:
        """Speculative decoding is on: a verify step's k + 1 rows per request must each be computed as a one-row
        decode step computes it, or greedy could leave plain greedy decoding. A method whose kernel tiles are
        tuned per row count (and may sum K in another order for another count) takes the one-row tiles while
        `pinning.active`. Default: nothing. Block FP8 pins; the W4A16 and dense GEMV tables also change kernels
        with the row count and do not yet (docs/speculative.md)."""


@dataclass
class DecodeRowPinning:
    """One per model with speculation on, shared by its linear methods; the model runner sets `active` for each
    forward: True where every row is a decode row (a verify step's, a decode step's, the decode CUDA graphs'),
    False for prefill and mixed steps, which then sum as they do without speculation (a prompt's last 16 tokens
    after a prefix-cache hit must give the plain engine's first token)."""

    active: bool = False


class UnquantizedLinearMethod(LinearMethod):
    """weight [out_per_partition, in_per_partition] in the model dtype."""

    def create_weights(self, layer, input_size_per_partition, output_partition_sizes, input_size, output_size,
                       params_dtype):
        weight = nn.Parameter(
            torch.empty(sum(output_partition_sizes), input_size_per_partition, dtype=params_dtype),
            requires_grad=False,
        )
        set_weight_attrs(weight, output_dim=0, input_dim=1)
        layer.register_parameter("weight", weight)

    def apply(self, layer, x, bias=None):
        return ops.dense_linear(x, layer.weight, bias)  # [T, in] -> [T, out]


# QuantConfig.method -> "module:Class" of its LinearMethod, imported on first use; the class is built as
# Class(quant_config). A constant table (no registration at import) so engines in one process never interact.
QUANTIZED_LINEAR_METHODS: dict[str, str] = {
    "fp8": "vdeploy.layers.fp8:Fp8LinearMethod",
    "awq": "vdeploy.layers.int4:AwqLinearMethod",
    "gptq": "vdeploy.layers.int4:GptqLinearMethod",
    "compressed-tensors": "vdeploy.layers.w8a8:W8A8LinearMethod",
}


def get_linear_method(quant_config: QuantConfig | None) -> LinearMethod:
    if quant_config is None:
        return UnquantizedLinearMethod()
    target = QUANTIZED_LINEAR_METHODS.get(quant_config.method)
    if target is None:
        raise ConfigError(
            f"unsupported quantization method {quant_config.method!r}",
            hint="vdeploy loads unquantized checkpoints and: " + ", ".join(sorted(QUANTIZED_LINEAR_METHODS)),
        )
    return pkgutil.resolve_name(target)(quant_config)
