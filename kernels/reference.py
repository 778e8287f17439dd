"""Plain-torch twins of every kernel: the CPU execution path and the oracle the kernel tests compare against.

Written for clarity, computed in float32, returned in the input dtype.
Shapes: T tokens, H query heads, Hk KV heads, D head dim, B requests, NB blocks, BS block size, K cache components.

FP8 KV cache (float8_e4m3fn): one scale per layer and component (k_scale, v_scale; vLLM's convention): the cache holds
saturate(x * (1 / scale)) and is read back as x_fp8 * scale. Scales are ignored for 16/32-bit caches.
"""

from __future__ import annotations

import torch

from vdeploy_kernels.reference_deepseek import FP8_MAX


def is_fp8_cache(kv_cache: torch.Tensor) -> bool:
    return kv_cache.dtype.itemsize == 1


def quantize_kv(x: torch.Tensor, scale: float, cache_dtype: torch.dtype) -> torch.Tensor:
    """x in the cache's dtype; for fp8: x * (1 / scale) in float32 (a product, as the kernel computes it), saturated
    to +-448 (torch's cast would give NaN above it), rounded to nearest even."""
    if cache_dtype.itemsize != 1:
        return x.to(cache_dtype)
    return (x.float() * (1.0 / scale)).clamp(-FP8_MAX, FP8_MAX).to(cache_dtype)


def dequantize_kv(x: torch.Tensor, scale: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Cached values in `dtype`: x_fp8 * scale for an fp8 cache, a plain conversion otherwise."""
    if x.dtype.itemsize != 1:
        return x.to(dtype)
    return (x.float() * scale).to(dtype)


def store_kv(k: torch.Tensor, v: torch.Tensor | None, kv_cache: torch.Tensor, slot_mapping: torch.Tensor,
             k_scale: float = 1.0, v_scale: float = 1.0) -> None:
    # k, v: [T, Hk, D]; kv_cache: [K, NB, BS, Hk, D]; slot_mapping: [T] (negative = padding, skipped)
    num_blocks, block_size = kv_cache.shape[1], kv_cache.shape[2]
    flat = kv_cache.view(kv_cache.shape[0], num_blocks * block_size, *kv_cache.shape[3:])
    valid = slot_mapping >= 0
    slots = slot_mapping[valid].long()
    flat[0, slots] = quantize_kv(k[valid], k_scale, kv_cache.dtype)
    if v is not None:
        flat[1, slots] = quantize_kv(v[valid], v_scale, kv_cache.dtype)


def gather_kv(kv_cache: torch.Tensor, block_table: torch.Tensor, seq_len: int, component: int) -> torch.Tensor:
    """The first seq_len cached vectors of one request: [seq_len, Hk, D]."""
    block_size = kv_cache.shape[2]
    num_blocks = (seq_len + block_size - 1) // block_size
    blocks = kv_cache[component, block_table[:num_blocks].long()]  # [nb, BS, Hk, D]
    return blocks.reshape(-1, *kv_cache.shape[3:])[:seq_len]


def paged_attention(q: torch.Tensor, kv_cache: torch.Tensor, meta, scale: float, v_head_dim: int | None = None,
                    k_scale: float = 1.0, v_scale: float = 1.0):
    """q: [T, H, D]; kv_cache: [K, NB, BS, Hk, D] -> out [T, H, Dv]. An fp8 cache is dequantized with
    k_scale / v_scale (K == 1: the values are the keys' channels, dequantized with k_scale).

    Query i of a request with q_len new tokens and context seq_len sits at position seq_len - q_len + i and sees
    keys [0, that position]. K == 1 (MLA latent cache) means values are the first `v_head_dim` channels of keys.
    q may hold only the first T rows of the batch (MLA's decode rows): later requests are skipped, as in the kernel.
    """
    T, H, _ = q.shape
    Hk = kv_cache.shape[3]
    group = H // Hk
    starts = meta.query_start_loc.tolist() if meta.query_lens_host is None else None
    q_lens = meta.query_lens_host or [starts[i + 1] - starts[i] for i in range(meta.num_reqs)]
    seq_lens = meta.seq_lens_host or meta.seq_lens.tolist()
    dv = v_head_dim or kv_cache.shape[4]
    out = torch.empty(T, H, dv, dtype=q.dtype, device=q.device)
    offset = 0
    for i, (q_len, seq_len) in enumerate(zip(q_lens, seq_lens)):
        if offset >= T:
            break
        if q_len == 0:
            continue
        k = dequantize_kv(gather_kv(kv_cache, meta.block_tables[i], seq_len, 0), k_scale)  # [S, Hk, D] fp32
        if kv_cache.shape[0] == 2:
            v = dequantize_kv(gather_kv(kv_cache, meta.block_tables[i], seq_len, 1), v_scale)
        else:
            v = k[..., :dv]
        qi = q[offset : offset + q_len].float()  # [q_len, H, D]
        k = k.repeat_interleave(group, dim=1)  # [S, H, D]
        v = v.repeat_interleave(group, dim=1)
        scores = torch.einsum("qhd,khd->hqk", qi, k) * scale  # [H, q_len, S]
        q_pos = torch.arange(seq_len - q_len, seq_len, device=q.device)[:, None]
        k_pos = torch.arange(seq_len, device=q.device)[None, :]
        scores.masked_fill_(k_pos > q_pos, float("-inf"))
        probs = scores.softmax(dim=-1)
        out[offset : offset + q_len] = torch.einsum("hqk,khd->qhd", probs, v).to(q.dtype)
        offset += q_len
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    # x: [T, D]; returns normed [T, D] or (normed, x + residual)
    if residual is not None:
        x = x + residual
        residual = x
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)
    return normed if residual is None else (normed, residual)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    # x: [T, 2I] -> [T, I]
    gate, up = x.float().chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate) * up).to(x.dtype)


def rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin_cache: torch.Tensor,
           interleaved: bool = False):
    # q: [T, H, Dr], k: [T, Hk, Dr], cos_sin_cache: [max_pos, Dr] = [cos ‖ sin] -> rotated. Pair i: channels
    # (i, i + Dr/2) (neox) or (2i, 2i + 1) (interleaved)
    cos, sin = cos_sin_cache[positions.long()].float().chunk(2, dim=-1)  # [T, Dr/2] each
    cos, sin = cos[:, None, :], sin[:, None, :]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        x1, x2 = (xf[..., 0::2], xf[..., 1::2]) if interleaved else xf.chunk(2, dim=-1)
        y1, y2 = x1 * cos - x2 * sin, x2 * cos + x1 * sin
        y = torch.stack((y1, y2), dim=-1).flatten(-2) if interleaved else torch.cat((y1, y2), dim=-1)
        return y.to(x.dtype)

    return rotate(q), rotate(k)



def rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                  cos_sin_cache: torch.Tensor, kv_cache: torch.Tensor, slot_mapping: torch.Tensor,
                  k_scale: float = 1.0, v_scale: float = 1.0, interleaved: bool = False, return_k: bool = False):
    """rotary of the first Dr = cos_sin_cache.shape[-1] channels of q [T, H, D] and k [T, Hk, D] (the rest pass
    through), then store_kv of the rotated k and v: -> (q_rot, k_rot if return_k else None), new tensors."""
    rot_dim = cos_sin_cache.shape[-1]
    q_rot, k_rot = rotary(q[..., :rot_dim], k[..., :rot_dim], positions, cos_sin_cache, interleaved)
    if rot_dim < q.shape[-1]:
        q_rot = torch.cat((q_rot, q[..., rot_dim:]), dim=-1)
        k_rot = torch.cat((k_rot, k[..., rot_dim:]), dim=-1)
    store_kv(k_rot, v, kv_cache, slot_mapping, k_scale, v_scale)
    return q_rot, (k_rot if return_k else None)

def add_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, token_slots: torch.Tensor,
             seg_starts: torch.Tensor | None = None, seg_slots: torch.Tensor | None = None) -> None:
    """y [T, N] += (x [T, K] @ lora_a[s]ᵀ) @ lora_b[s]ᵀ per token, s = token_slots[t] (-1: unchanged); lora_a
    [L, R, K], lora_b [L, N, R]. One gathered matmul pair per adapter present in the batch (the segments are the
    kernel's; the twin groups by slot). h is rounded to the weights' dtype before the expand, as the kernel does."""
    for slot in torch.unique(token_slots).tolist():
        if slot < 0:
            continue
        rows = (token_slots == slot).nonzero().squeeze(1)  # [Ts]
        h = x[rows].float() @ lora_a[slot].float().t()  # [Ts, R]
        delta = h.to(lora_b.dtype).float() @ lora_b[slot].float().t()  # [Ts, N]
        y.index_copy_(0, rows, (y[rows].float() + delta).to(y.dtype))


def gumbel_sample(logits: torch.Tensor, temperature: torch.Tensor,
                  seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Twin of sampling.gumbel_sample: (argmax, argmax(logits / T + G)) per row, G = -log(-log u) with u drawn by a
    torch generator seeded with the row's seed (the kernel draws u by Philox: same distribution, other bits)."""
    x = logits.float()  # [N, V]
    u = torch.empty_like(x)
    for row, seed in enumerate(seeds.tolist()):
        u[row].uniform_(generator=torch.Generator(device=x.device).manual_seed(seed))
    scores = x / temperature[:, None] - torch.log(-torch.log(u))
    return x.argmax(dim=-1), scores.argmax(dim=-1)
