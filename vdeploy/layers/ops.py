"""The one place where each kernel is dispatched: Triton on CUDA, the torch reference twin elsewhere.

Models call only these functions. Every function here has a plain-torch twin in `vdeploy_kernels.reference`,
which is what the tests compare the Triton kernels against.

Shapes: T tokens in the flat batch, H query heads, Hk KV heads, D head dim, B requests.
"""

from __future__ import annotations

import torch

from vdeploy.layers.forward_context import AttentionMetadata


def _use_triton(x: torch.Tensor) -> bool:
    if not x.is_cuda:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:  # pragma: no cover - CUDA torch ships triton
        return False
    return True


def store_kv(k: torch.Tensor, v: torch.Tensor | None, kv_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Write k [T, Hk, D] (and v) into kv_cache [K, NB, BS, Hk, D] at the flat slots of slot_mapping [T]."""
    from vdeploy_kernels import reference

    if _use_triton(k):
        from vdeploy_kernels.store_kv import store_kv as triton_store_kv

        return triton_store_kv(k, v, kv_cache, slot_mapping)
    return reference.store_kv(k, v, kv_cache, slot_mapping)


def paged_attention(
    q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float
) -> torch.Tensor:
    """Causal attention of q [T, H, D] over each request's paged context (prefix + this step's tokens, already
    stored). Returns [T, H, Dv]. GQA when H > Hk."""
    from vdeploy_kernels import reference

    if _use_triton(q):
        from vdeploy_kernels.paged_attention import paged_attention as triton_paged_attention

        return triton_paged_attention(q, kv_cache, meta, scale)
    return reference.paged_attention(q, kv_cache, meta, scale)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """RMSNorm of x [T, D]; with `residual`, first x = x + residual and return (normed, new_residual)."""
    from vdeploy_kernels import reference

    if _use_triton(x):
        from vdeploy_kernels.norms import rms_norm as triton_rms_norm

        return triton_rms_norm(x, weight, eps, residual)
    return reference.rms_norm(x, weight, eps, residual)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [T, 2I] = [gate ‖ up] -> silu(gate) * up [T, I]."""
    from vdeploy_kernels import reference

    if _use_triton(x):
        from vdeploy_kernels.activation import silu_and_mul as triton_silu_and_mul

        return triton_silu_and_mul(x)
    return reference.silu_and_mul(x)


def rotary(
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin_cache: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Neox-style rotary embedding of q [T, H, Dr] and k [T, Hk, Dr] at positions [T];
    cos_sin_cache [max_pos, Dr] holds cos in the first Dr/2 columns and sin in the rest."""
    from vdeploy_kernels import reference

    if _use_triton(q):
        from vdeploy_kernels.rotary import rotary as triton_rotary

        return triton_rotary(q, k, positions, cos_sin_cache)
    return reference.rotary(q, k, positions, cos_sin_cache)
