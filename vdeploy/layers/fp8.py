"""Block-FP8 linear layers (DeepSeek-V3/R1 checkpoints): e4m3 weights with one float32 `weight_scale_inv` per
128×128 block, kept FP8 in GPU memory and multiplied by a Triton W8A8 block-scaled GEMM on GPUs with FP8 tensor
cores (sm ≥ 89). Elsewhere (CPU, A100) the weights are dequantized once after loading: 2× the weight memory, no
FP8 arithmetic needed. The choice is made per layer in process_weights_after_loading, from the weight's device."""

from __future__ import annotations

import torch
from torch import nn

from vdeploy.checkpoint.planner import keeps_8bit_weights
from vdeploy.config import QuantConfig
from vdeploy.errors import ConfigError
from vdeploy.layers import ops
from vdeploy.layers.quantization import DecodeRowPinning, LinearMethod
from vdeploy.layers.weight_loading import set_weight_attrs


def fp8_tensor_cores_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    major, minor = torch.cuda.get_device_capability(device)
    return (major, minor) >= (8, 9)


class Fp8LinearMethod(LinearMethod):
    def __init__(self, quant_config: QuantConfig):
        if quant_config.fmt not in ("e4m3", "float8_e4m3fn"):
            raise ConfigError(f"unsupported FP8 format {quant_config.fmt!r}", hint="vdeploy reads e4m3 checkpoints")
        if not quant_config.weight_block_size:  # per-tensor FP8: refused with its reason when config.json is read
            raise ConfigError("an fp8 quantization_config without weight_block_size is not block FP8",
                              hint="vdeploy.config refuses such a config.json; pass the checkpoint's block size")
        self.block = tuple(quant_config.weight_block_size)
        self.pinning: DecodeRowPinning | None = None  # pin_decode_rows(): speculative decoding

    def pin_decode_rows(self, pinning: DecodeRowPinning) -> None:
        # the tuned tables split K otherwise at 4 rows than at 1 (R1's o_proj on an H100: 8 splits, then 4)
        self.pinning = pinning

    def create_weights(self, layer, input_size_per_partition, output_partition_sizes, input_size, output_size,
                       params_dtype):
        bn, bk = self.block
        out = sum(output_partition_sizes)
        weight = nn.Parameter(torch.empty(out, input_size_per_partition, dtype=torch.float8_e4m3fn),
                              requires_grad=False)
        set_weight_attrs(weight, output_dim=0, input_dim=1)
        # one scale per 128×128 block; merged layers' shards each start on a block boundary in R1's shapes
        scale_rows = sum(-(-size // bn) for size in output_partition_sizes)
        scale = nn.Parameter(torch.empty(scale_rows, -(-input_size_per_partition // bk), dtype=torch.float32),
                             requires_grad=False)
        set_weight_attrs(scale, output_dim=0, input_dim=1, weight_block=(bn, bk), dummy_fill=1.0)
        layer.register_parameter("weight", weight)
        layer.register_parameter("weight_scale_inv", scale)
        layer.fp8_params_dtype = params_dtype

    def process_weights_after_loading(self, layer):
        device = layer.weight.device
        # the memory planner counts the weights with the same rule
        if keeps_8bit_weights("block-fp8", device.type, fp8_tensor_cores_available(device)):
            layer.fp8_native = True
            return
        from vdeploy_kernels.reference_deepseek import dequantize_weight_block

        dense = dequantize_weight_block(layer.weight.data, layer.weight_scale_inv.data, self.block,
                                        layer.fp8_params_dtype)
        del layer.weight, layer.weight_scale_inv
        layer.register_parameter("weight", nn.Parameter(dense, requires_grad=False))
        layer.fp8_native = False

    def apply(self, layer, x, bias=None):
        if getattr(layer, "fp8_native", False):
            pinned = self.pinning is not None and self.pinning.active
            return ops.w8a8_block_linear(x, layer.weight, layer.weight_scale_inv, self.block, bias, pinned)
        return torch.nn.functional.linear(x, layer.weight, bias)
