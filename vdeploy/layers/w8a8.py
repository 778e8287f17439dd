"""compressed-tensors W8A8 linear layers: INT8 or FP8 (e4m3) weights with per-channel or per-tensor scales,
activations quantized per token at run time (dynamic), multiplied by ops.w8a8_matmul (Triton on GPUs with the
needed tensor cores: INT8 sm80+, FP8 sm89+; the torch twin on CPU, which quantizes activations the same way).

Per-tensor scales are stored one per projection (a merged q/k/v layer loads three) and expanded to one per output
channel after loading, so one kernel serves both strategies. On a GPU without FP8 tensor cores an FP8 weight is
dequantized once to the model dtype (2x the weight memory, activations then stay unquantized).
"""

from __future__ import annotations

import torch
from torch import nn

from vdeploy.checkpoint.planner import keeps_8bit_weights
from vdeploy.checkpoint.quant_schemes import w8a8_scheme
from vdeploy.config import QuantConfig
from vdeploy.layers import ops
from vdeploy.layers.quantization import LinearMethod
from vdeploy.layers.weight_loading import set_weight_attrs


def _native(weight: torch.Tensor) -> bool:
    """Whether this device multiplies the 8-bit weight directly (CPU: the twin does, in float64); the memory planner
    counts the weight with the same rule."""
    on_gpu = weight.device.type == "cuda"
    kind = "w8a8-int8" if weight.dtype == torch.int8 else "w8a8-fp8"
    if not on_gpu:
        return keeps_8bit_weights(kind, "cpu", False, False)
    from vdeploy.layers.fp8 import fp8_tensor_cores_available

    int8_cores = torch.cuda.get_device_capability(weight.device) >= (8, 0)
    return keeps_8bit_weights(kind, "cuda", fp8_tensor_cores_available(weight.device), int8_cores)


class W8A8LinearMethod(LinearMethod):
    def __init__(self, quant_config: QuantConfig):
        self.scheme = w8a8_scheme(quant_config)

    def create_weights(self, layer, input_size_per_partition, output_partition_sizes, input_size, output_size,
                       params_dtype):
        n = sum(output_partition_sizes)
        dtype = torch.int8 if self.scheme.kind == "int" else torch.float8_e4m3fn
        weight = nn.Parameter(torch.empty(n, input_size_per_partition, dtype=dtype), requires_grad=False)
        set_weight_attrs(weight, output_dim=0, input_dim=1)
        if self.scheme.strategy == "channel":
            scale = nn.Parameter(torch.empty(n, 1, dtype=torch.float32), requires_grad=False)  # [N, 1]
            set_weight_attrs(scale, output_dim=0, input_dim=None, dummy_fill=0.01)
        else:  # [projections]: one per merged projection, expanded to channels after loading
            scale = nn.Parameter(torch.empty(len(output_partition_sizes), dtype=torch.float32), requires_grad=False)
            set_weight_attrs(scale, output_dim=None, input_dim=None, per_shard_value=True, dummy_fill=0.01)
        layer.register_parameter("weight", weight)
        layer.register_parameter("weight_scale", scale)
        layer.w8a8_params_dtype = params_dtype
        layer.fill_dummy_weights = lambda generator: self.fill_dummy(layer, generator)  # vdeploy.models.loader

    def fill_dummy(self, layer, generator: torch.Generator) -> None:
        """`--load-format dummy`: random 8-bit weights and scales giving weights of std ~0.02."""
        from vdeploy.models.loader import DUMMY_INIT_STD

        with torch.no_grad():
            w = layer.weight
            if w.dtype == torch.int8:
                w.copy_(torch.randint(-127, 128, w.shape, generator=generator, device=w.device, dtype=torch.int8))
                layer.weight_scale.fill_(DUMMY_INIT_STD / 73.0)  # uniform -127..127 has std ~73
            else:
                values = torch.empty(w.shape, device=w.device).normal_(0.0, 1.0, generator=generator)
                w.copy_(values.to(w.dtype))
                layer.weight_scale.fill_(DUMMY_INIT_STD)
            if layer.bias is not None:
                layer.bias.normal_(0.0, DUMMY_INIT_STD, generator=generator)

    def process_weights_after_loading(self, layer):
        scale = layer.weight_scale.data
        if self.scheme.strategy == "channel":
            scale = scale.reshape(-1)  # [N]
        else:
            sizes = torch.tensor(layer.output_partition_sizes, device=scale.device)
            scale = scale.repeat_interleave(sizes)  # [N]
        del layer.weight_scale
        layer.w8a8_native = _native(layer.weight)
        if not layer.w8a8_native:
            dense = (layer.weight.data.float() * scale[:, None]).to(layer.w8a8_params_dtype)
            del layer.weight
            layer.register_parameter("weight", nn.Parameter(dense, requires_grad=False))
            return
        layer.register_parameter("weight_scale", nn.Parameter(scale.contiguous(), requires_grad=False))

    def apply(self, layer, x, bias=None):
        if not layer.w8a8_native:
            return torch.nn.functional.linear(x, layer.weight, bias)
        x2 = x.reshape(-1, x.shape[-1])  # [T, K]
        y = ops.w8a8_matmul(x2, layer.weight, layer.weight_scale).view(*x.shape[:-1], -1)  # [..., N]
        return y if bias is None else y + bias
