"""FP8 KV-cache scales a checkpoint may carry: one float per layer for the keys and one for the values.

Exporters that calibrate an fp8 KV cache store them next to the attention weights, under one of these names
(layer N): `model.layers.N.self_attn.k_scale` / `.v_scale` (vLLM's and llm-compressor's current names), the same under
`.self_attn.attn.`, the older single `.self_attn.kv_scale` (both components), and compressed-tensors' older
`.self_attn.k_proj.output_scale` / `.v_proj.output_scale`. The cache then holds x / scale in e4m3 and is read back as
x_fp8 * scale. MLA caches one latent vector per token, so a DeepSeek layer takes one scale: its k_scale (or
kv_scale); a v_scale there has nothing to apply to and is ignored.

Without such tensors every scale is 1.0 (e4m3 covers +-448, far beyond the keys and values of the models served
here). The scales act only when the cache is fp8 (--kv-cache-dtype fp8); a 16-bit cache ignores them.
Torch-free: the header validation (checks.py) uses the name rule too.
"""

from __future__ import annotations

import re

from vdeploy.errors import CheckpointError

_KV_SCALE = re.compile(
    r"^model\.layers\.(\d+)\.self_attn\.(?:attn\.)?(?:(k|v|kv)_scale|(k|v)_proj\.output_scale)$")


def kv_scale_target(name: str) -> tuple[int, str] | None:
    """(layer index, "k" | "v" | "kv") for a KV-cache scale tensor's name, else None."""
    m = _KV_SCALE.match(name)
    if m is None:
        return None
    return int(m.group(1)), m.group(2) or m.group(3)


def scale_value(source: str, name: str, tensor) -> float:
    """The one positive, finite float a KV scale tensor holds (0-d or a single element). `tensor` may be a lazy
    shard slice (larger tensors are not read whole)."""
    if not hasattr(tensor, "numel"):
        tensor = tensor[...]
    if tensor.numel() != 1:
        raise CheckpointError(f"{source}: tensor {name} holds {tensor.numel()} values; vdeploy applies one KV-cache "
                              "scale per layer (per-tensor, as vLLM does)",
                              hint="re-export the checkpoint with per-tensor KV scales, or remove them to use 1.0")
    value = float(tensor.float().reshape(-1)[0])
    if not (value > 0 and value < float("inf")):
        raise CheckpointError(f"{source}: tensor {name} is {value}; a KV-cache scale must be positive and finite",
                              hint="re-download the shard, or remove the tensor to use 1.0")
    return value


def apply_kv_scale(model, layer_idx: int, kind: str, value: float) -> bool:
    """Set the scale on this rank's attention module of `layer_idx` (Attention: k_scale / v_scale; MLAttention:
    kv_scale). False when this rank does not hold the layer (another pipeline stage, an MTP layer)."""
    for module in model.modules():
        if getattr(module, "layer_idx", None) != layer_idx:
            continue
        if hasattr(module, "kv_scale"):  # MLA: one latent vector per token
            if kind in ("k", "kv"):
                module.kv_scale = value
            return True
        if hasattr(module, "k_scale"):
            if kind in ("k", "kv"):
                module.k_scale = value
            if kind in ("v", "kv"):
                module.v_scale = value
            return True
    return False
