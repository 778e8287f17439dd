"""Rotary position embedding: the frequency computation for each scaling scheme and the cos ‖ sin cache that
ops.rotary (and ops.rope_store_kv, rotary fused with the KV-cache store) consume.

Schemes (config `rope_scaling.rope_type`): default, linear (positions divided by `factor`), llama3 (Llama 3.1:
long wavelengths divided by `factor`, a smooth blend in between), yarn (DeepSeek-V2/V3 and others: blend of
interpolated and extrapolated frequencies between the beta_fast/beta_slow correction dims, cos/sin multiplied by an
attention factor). DeepSeek's softmax scale also needs `yarn_get_mscale`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vdeploy.errors import ConfigError
from vdeploy.layers import ops


def base_inv_freq(rotary_dim: int, base: float) -> torch.Tensor:
    # [rotary_dim / 2]: theta_i = base^(-2i / d)
    return 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64, device="cpu") / rotary_dim))


def llama3_inv_freq(inv_freq: torch.Tensor, scaling: dict[str, Any]) -> torch.Tensor:
    factor = float(scaling["factor"])
    low_freq_factor = float(scaling.get("low_freq_factor", 1.0))
    high_freq_factor = float(scaling.get("high_freq_factor", 4.0))
    original_context = float(scaling["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    # wavelengths longer than original_context / low_freq_factor are fully interpolated, shorter than
    # original_context / high_freq_factor are kept; in between the two are blended linearly in 1 / wavelength
    blend = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blend = blend.clamp(0.0, 1.0)
    return (1 - blend) * inv_freq / factor + blend * inv_freq


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature factor for a context extension of `scale`."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_correction_dim(num_rotations: float, rotary_dim: int, base: float, original_context: int) -> float:
    # the dimension index whose wavelength completes `num_rotations` turns over the original context
    return rotary_dim * math.log(original_context / (num_rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_inv_freq(rotary_dim: int, base: float, scaling: dict[str, Any]) -> tuple[torch.Tensor, float]:
    """(inv_freq [rotary_dim / 2], attention factor applied to cos and sin)."""
    factor = float(scaling["factor"])
    original_context = int(scaling["original_max_position_embeddings"])
    beta_fast, beta_slow = float(scaling.get("beta_fast", 32)), float(scaling.get("beta_slow", 1))
    low = _yarn_correction_dim(beta_fast, rotary_dim, base, original_context)
    high = _yarn_correction_dim(beta_slow, rotary_dim, base, original_context)
    if scaling.get("truncate", True):  # YaRN rounds the ramp to whole dims; `truncate: false` keeps it exact (HF)
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, rotary_dim - 1)
    if high == low:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(rotary_dim // 2, dtype=torch.float64, device="cpu") - low) / (high - low)).clamp(0.0, 1.0)
    extrapolated = base_inv_freq(rotary_dim, base)
    interpolated = extrapolated / factor
    keep = 1.0 - ramp  # 1 for high-frequency dims (kept), 0 for low-frequency dims (interpolated)
    inv_freq = interpolated * (1 - keep) + extrapolated * keep
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = yarn_get_mscale(factor, float(mscale)) / yarn_get_mscale(factor, float(mscale_all_dim))
        else:
            attention_factor = yarn_get_mscale(factor)
    return inv_freq, float(attention_factor)


SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3", "yarn", "deepseek_yarn")


def rope_type_of(rope_scaling: dict[str, Any] | None) -> str:
    rope_type = (rope_scaling or {}).get("rope_type") or (rope_scaling or {}).get("type") or "default"
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ConfigError(f"unsupported rope scaling {rope_type!r}",
                          hint="vdeploy supports " + ", ".join(SUPPORTED_ROPE_TYPES[:4]))
    return rope_type


def compute_inv_freq(rotary_dim: int, base: float, rope_scaling: dict[str, Any] | None) -> tuple[torch.Tensor, float]:
    """(inv_freq [rotary_dim / 2] float64 on the CPU, factor multiplying cos and sin) for a `rope_scaling` dict."""
    rope_type = rope_type_of(rope_scaling)
    if rope_type == "default":
        return base_inv_freq(rotary_dim, base), 1.0
    if rope_type == "linear":
        return base_inv_freq(rotary_dim, base) / float(rope_scaling["factor"]), 1.0
    if rope_type == "llama3":
        return llama3_inv_freq(base_inv_freq(rotary_dim, base), rope_scaling), 1.0
    return yarn_inv_freq(rotary_dim, base, rope_scaling)


def compute_cos_sin_cache(rotary_dim: int, max_position: int, base: float, rope_scaling: dict[str, Any] | None,
                          device: torch.device | str | None = None) -> torch.Tensor:
    """[max_position, rotary_dim] float32: cos of every (position, frequency) in the first half, sin in the second."""
    inv_freq, attention_factor = compute_inv_freq(rotary_dim, base, rope_scaling)
    positions = torch.arange(max_position, dtype=torch.float64, device="cpu")
    angles = torch.outer(positions, inv_freq)  # [max_position, rotary_dim / 2]
    cache = torch.cat((angles.cos(), angles.sin()), dim=-1) * attention_factor
    return cache.to(device=device, dtype=torch.float32)


class RotaryEmbedding(nn.Module):
    """Applies RoPE to q and k ([T, H, head_dim] or [T, H * head_dim]) at `positions` [T]. Only the first
    `rotary_dim` channels rotate. is_neox_style=False rotates interleaved pairs (x0, x1), (x2, x3), ... (the kernel
    reads them in place)."""

    def __init__(self, head_dim: int, rotary_dim: int, max_position: int, base: float,
                 rope_scaling: dict[str, Any] | None = None, is_neox_style: bool = True):
        super().__init__()
        self.head_dim, self.rotary_dim = head_dim, rotary_dim
        self.max_position, self.base = max_position, base
        self.rope_scaling = dict(rope_scaling) if rope_scaling else None
        self.is_neox_style = is_neox_style
        rope_type_of(self.rope_scaling)  # validate the scheme at construction
        cache = torch.empty(max_position, rotary_dim, dtype=torch.float32)
        self.register_buffer("cos_sin_cache", cache, persistent=False)
        if cache.device.type != "meta":
            self.initialize_buffers()

    def initialize_buffers(self) -> None:
        """(Re)compute the cache on the buffer's device: called after a meta-built model is materialised."""
        device = self.cos_sin_cache.device
        self.cos_sin_cache = compute_cos_sin_cache(self.rotary_dim, self.max_position, self.base,
                                                   self.rope_scaling, device)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q_shape, k_shape = q.shape, k.shape
        q = q.view(q.shape[0], -1, self.head_dim)  # [T, H, D]
        k = k.view(k.shape[0], -1, self.head_dim)  # [T, Hk, D]
        if self.rotary_dim == self.head_dim:
            q, k = self._rotate(positions, q, k)
        else:
            rd = self.rotary_dim
            q_rot, k_rot = self._rotate(positions, q[..., :rd], k[..., :rd])
            q = torch.cat((q_rot, q[..., rd:]), dim=-1)
            k = torch.cat((k_rot, k[..., rd:]), dim=-1)
        return q.reshape(q_shape), k.reshape(k_shape)

    def rotate_and_store(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         kv_cache: torch.Tensor, slot_mapping: torch.Tensor, k_scale: float = 1.0,
                         v_scale: float = 1.0, return_k: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """forward on q [T, H, head_dim] and k [T, Hk, head_dim] fused with storing the rotated k and v into
        kv_cache at slot_mapping (one kernel: ops.rope_store_kv; partial rotary included). Returns (q_rot, k_rot),
        k_rot only when return_k, else None."""
        return ops.rope_store_kv(q, k, v, positions, self.cos_sin_cache, kv_cache, slot_mapping, k_scale, v_scale,
                                 interleaved=not self.is_neox_style, return_k=return_k)

    def _rotate(self, positions, q, k):
        return ops.rotary(q, k, positions, self.cos_sin_cache, interleaved=not self.is_neox_style)

    def extra_repr(self) -> str:
        kind = (self.rope_scaling or {}).get("rope_type", "default")
        return f"head_dim={self.head_dim}, rotary_dim={self.rotary_dim}, base={self.base}, scaling={kind}"
