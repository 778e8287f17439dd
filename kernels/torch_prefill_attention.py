"""Fresh-prompt prefill attention through an attention kernel torch ships, where a GPU's tuned table says it beats the
Triton kernel (fresh_prefill_attention.py) at that prompt length: the "fresh" table entry names the backend beside
its tiles (the tiles still serve batches that mix in cached prefixes). benchmarks/kernels/prefill_attention_backends.py
measures the candidates against the Triton kernel and the fp32 twin and proposes the entry.

Backends (same contract as fresh_prefill_attention: q [T, H, D], k / v [T, Hk, D] strided views of this step's
projection, rows of prompts with no cached prefix, causal within each prompt; out [T, H, D] written in place):
  flash-varlen   torch's FlashAttention-2 over the packed prompts (cu_seqlens; GQA native), one launch
  cudnn-per-seq  scaled_dot_product_attention per prompt on cuDNN's fused attention, K/V heads repeated to H (the
                 cuDNN path takes no GQA), its [1, H, L, D] output copied into the packed rows
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BACKENDS = ("flash-varlen", "cudnn-per-seq")


def torch_fresh_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, row_starts: list[int],
                        scale: float, backend: str) -> None:
    """Attention of the prompts whose rows are [row_starts[i], row_starts[i + 1]) (host ints), into out."""
    first, last = row_starts[0], row_starts[-1]
    if backend == "flash-varlen":
        cu = torch.tensor([s - first for s in row_starts], dtype=torch.int32, device=q.device)  # [B + 1]
        longest = max(b - a for a, b in zip(row_starts[:-1], row_starts[1:]))
        result = torch.ops.aten._flash_attention_forward(q[first:last], k[first:last], v[first:last], cu, cu,
                                                         longest, longest, 0.0, True, False, scale=scale)
        out[first:last] = result[0]
        return
    if backend != "cudnn-per-seq":
        raise ValueError(f"unknown prefill attention backend {backend!r}; known: {BACKENDS}")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    group = q.shape[1] // k.shape[1]
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        for a, b in zip(row_starts[:-1], row_starts[1:]):
            qi = q[a:b].transpose(0, 1).unsqueeze(0)  # [1, H, L, D]
            ki = k[a:b].transpose(0, 1).unsqueeze(0).repeat_interleave(group, dim=1)  # [1, H, L, D]
            vi = v[a:b].transpose(0, 1).unsqueeze(0).repeat_interleave(group, dim=1)
            out[a:b] = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scale)[0].transpose(0, 1)
