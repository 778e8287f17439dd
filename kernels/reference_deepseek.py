"""Plain-torch twins of the DeepSeek kernels (block FP8, fused MoE and its moe_align, MLA attention): the CPU path
and the oracle.

Block FP8 (DeepSeek-V3's format): a weight W [N, K] is stored as e4m3 with one float32 `scale_inv` per 128×128
block, shape [ceil(N/128), ceil(K/128)], so W ≈ W_fp8 * scale_inv (block-broadcast). Activations are quantized on
the fly per token per 128-channel group: x ≈ x_fp8 * x_scale, x_scale [T, ceil(K/128)].
"""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0


def _expand_blocks(scale: torch.Tensor, shape: tuple[int, int], block: tuple[int, int]) -> torch.Tensor:
    # scale [ceil(N/bn), ceil(K/bk)] -> [N, K]
    bn, bk = block
    return scale.repeat_interleave(bn, dim=0)[: shape[0]].repeat_interleave(bk, dim=1)[:, : shape[1]]


def quantize_weight_block(w: torch.Tensor, block: tuple[int, int] = (128, 128)):
    """w [N, K] -> (w_fp8 [N, K], scale_inv [ceil(N/bn), ceil(K/bk)] float32)."""
    n, k = w.shape
    bn, bk = block
    pad = torch.zeros(-(-n // bn) * bn, -(-k // bk) * bk, dtype=torch.float32, device=w.device)
    pad[:n, :k] = w.float()
    blocks = pad.view(pad.shape[0] // bn, bn, pad.shape[1] // bk, bk)  # [nb, bn, kb, bk]
    amax = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12)  # [nb, kb]
    scale_inv = amax / FP8_MAX
    q = (w.float() / _expand_blocks(scale_inv, (n, k), block)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale_inv


def dequantize_weight_block(w_fp8: torch.Tensor, scale_inv: torch.Tensor, block=(128, 128), dtype=torch.float32):
    """Inverse of quantize_weight_block: [N, K] in `dtype`."""
    return (w_fp8.float() * _expand_blocks(scale_inv.float(), tuple(w_fp8.shape), block)).to(dtype)


def quantize_act_per_token_group(x: torch.Tensor, group: int = 128):
    """x [T, K] -> (x_fp8 [T, K], scale [T, ceil(K/group)] float32); one scale per token per group."""
    t, k = x.shape
    groups = -(-k // group)
    pad = torch.zeros(t, groups * group, dtype=torch.float32, device=x.device)
    pad[:, :k] = x.float()
    amax = pad.view(t, groups, group).abs().amax(dim=-1).clamp(min=1e-12)  # [T, G]
    scale = amax / FP8_MAX
    q = (pad.view(t, groups, group) / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).view(t, -1)[:, :k]
    return q.to(FP8_DTYPE), scale


def w8a8_block_matmul(x_fp8, x_scale, w_fp8, w_scale_inv, block=(128, 128), out_dtype=torch.bfloat16):
    """y = dequant(x) @ dequant(W)^T: x_fp8 [T, K], x_scale [T, K/bk], W [N, K] -> y [T, N]."""
    x = x_fp8.float() * x_scale.repeat_interleave(block[1], dim=1)[:, : x_fp8.shape[1]]
    w = dequantize_weight_block(w_fp8, w_scale_inv, block)
    return (x @ w.t()).to(out_dtype)


def select_experts(router_logits: torch.Tensor, correction_bias: torch.Tensor | None, spec):
    """Twin of moe_routing.select_experts: router_logits [T, E] float32 -> (weights [T, k] float32, ids [T, k]
    int64), as spec (vdeploy.layers.moe.RoutingSpec) says: scores, group limit on the (bias-corrected) choice, top-k,
    renormalisation, scaling."""
    num_experts = router_logits.shape[-1]
    scores = router_logits.sigmoid() if spec.sigmoid else router_logits.softmax(dim=-1)
    choice = scores + correction_bias.float() if correction_bias is not None else scores
    if spec.group_score is not None:
        grouped = choice.view(-1, spec.n_group, num_experts // spec.n_group)  # [T, G, E/G]
        if spec.group_score == "sum_top2":
            group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [T, G]
        else:
            group_scores = grouped.max(dim=-1).values
        keep_groups = group_scores.topk(spec.topk_group, dim=-1).indices  # [T, topk_group]
        group_mask = torch.zeros_like(group_scores).scatter_(1, keep_groups, 1.0).bool()
        expert_mask = group_mask.unsqueeze(-1).expand_as(grouped).reshape(-1, num_experts)
        fill = float("-inf") if spec.group_score == "sum_top2" else 0.0
        choice = choice.masked_fill(~expert_mask, fill)
    topk_ids = choice.topk(spec.top_k, dim=-1).indices  # [T, k]
    topk_weights = scores.gather(1, topk_ids)
    if spec.renormalize:
        topk_weights = topk_weights / (topk_weights.sum(dim=-1, keepdim=True) + 1e-20)
    return topk_weights * spec.scaling, topk_ids


def moe_align_capacity(num_slots: int, num_experts: int, block_m: int) -> int:
    """Length P of moe_align's sorted_slots: the worst case num_slots + E*(block_m-1) rounded up to block_m, so it
    depends only on T (a CUDA graph captures the shapes)."""
    return -(-(num_slots + num_experts * (block_m - 1)) // block_m) * block_m


def moe_align(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """Twin of moe_align.moe_align (stable: slots keep their flat order within an expert's run).
    topk_ids [T, k] -> sorted_slots int32 [P] (flat slot ids t*k+j, padding = T*k), block_expert int32 [P/block_m]
    (-1 = a tile past the last expert's run). Each expert's run is padded to a multiple of block_m. No host sync."""
    flat = topk_ids.flatten().long()  # [T*k]
    num_slots = flat.numel()
    cap = moe_align_capacity(num_slots, num_experts, block_m)
    order = torch.argsort(flat, stable=True)  # [T*k] slots sorted by expert
    # scatter_add, not bincount: bincount syncs with the host, which a CUDA graph cannot capture
    counts = torch.zeros(num_experts, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m  # [E]
    start = torch.cumsum(counts, 0) - counts
    start_padded = torch.cumsum(padded, 0) - padded
    expert_sorted = flat[order]
    dest = start_padded[expert_sorted] + (torch.arange(num_slots, device=flat.device) - start[expert_sorted])
    sorted_slots = torch.full((cap,), num_slots, dtype=torch.int32, device=flat.device)  # [P]
    sorted_slots[dest] = order.to(torch.int32)
    tile_start = torch.arange(0, cap, block_m, device=flat.device)  # [P/block_m]
    ends = torch.cumsum(padded, 0)
    block_expert = torch.searchsorted(ends, tile_start, right=True).to(torch.int32)
    block_expert = torch.where(block_expert >= num_experts, -1, block_expert)  # tiles past the last expert
    return sorted_slots, block_expert


def moe_loop(
    x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor
) -> torch.Tensor:
    """Routed experts, one loop per expert. x [T, H]; w13 [E, 2I, H] (gate ‖ up); w2 [E, H, I];
    topk_ids / topk_weights [T, k] -> [T, H] = Σ_k weight · down(silu(gate(x)) · up(x))."""
    out = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float32, device=x.device)
    for e in torch.unique(topk_ids).tolist():
        token_idx, slot = torch.where(topk_ids == e)
        h = x[token_idx].float() @ w13[e].float().t()  # [n, 2I]
        gate, up = h.chunk(2, dim=-1)
        y = (torch.nn.functional.silu(gate) * up) @ w2[e].float().t()  # [n, H]
        out.index_add_(0, token_idx, y * topk_weights[token_idx, slot, None].float())
    return out.to(x.dtype)


def silu_and_mul_quant(h: torch.Tensor, group: int = 128):
    """Twin of moe_epilogue.silu_and_mul_quant_fp8: h [M, 2I] -> silu(gate) * up in h's dtype, quantized per token
    per group -> (x_fp8 [M, I], scale [M, ceil(I/group)])."""
    from vdeploy_kernels.reference import silu_and_mul

    return quantize_act_per_token_group(silu_and_mul(h), group)


def moe_sum(y: torch.Tensor, top_k: int, shared_output: torch.Tensor | None = None) -> torch.Tensor:
    """Twin of moe_epilogue.moe_sum: y [T*k, H] -> [T, H] = Σ_j y[t*k + j] (fp32 sum, one rounding to y's dtype),
    then + shared_output (a second rounding), as the unfused `routed + shared` rounds."""
    out = y.view(-1, top_k, y.shape[1]).float().sum(dim=1).to(y.dtype)
    return out if shared_output is None else (out.float() + shared_output.float()).to(y.dtype)


def mla_attention(
    q: torch.Tensor, kv_cache: torch.Tensor, meta, scale: float, kv_lora_rank: int, kv_scale: float = 1.0,
    q_rope: torch.Tensor | None = None,
) -> torch.Tensor:
    """Absorbed MLA over the paged latent cache. q [T, H, L + R] (q_nope·W_UK ‖ q_rope; or q [T, H, L] with
    q_rope [T, H, R] apart), kv_cache [1, NB, BS, 1, L + R] (c_kv ‖ k_rope) -> out [T, H, L]: attention output in
    latent space (W_UV applied after). It is multi-query attention with keys = the whole cached vector and values =
    its first L channels. An fp8 latent cache holds latent * (1 / kv_scale), one scale per layer for the whole
    vector."""
    from vdeploy_kernels.reference import paged_attention

    if q_rope is not None:
        q = torch.cat((q, q_rope), dim=-1)

    return paged_attention(q, kv_cache, meta, scale, v_head_dim=kv_lora_rank, k_scale=kv_scale)


def mla_prefill_attention(q, kv, k_rope, query_start_loc, seq_lens, max_query_len, scale, nope_dim):
    """Twin of mla_prefill_attention.mla_prefill_attention: per request, K = k_nope ‖ k_rope (shared by the heads),
    V = the rest of kv, causal softmax(q·kᵀ) v with the queries at the end of the context. -> [T, H, Dv]"""
    v_dim = kv.shape[2] - nope_dim
    out = torch.empty(q.shape[0], q.shape[1], v_dim, dtype=q.dtype, device=q.device)
    qsl, lens = query_start_loc.tolist(), seq_lens.tolist()
    start = 0
    for r, s in enumerate(lens):
        a, b = qsl[r], qsl[r + 1]
        ctx = kv[start : start + s].float()  # [S, H, Dn + Dv]
        rope = k_rope[start : start + s, None, :].float().expand(s, kv.shape[1], k_rope.shape[1])  # [S, H, R]
        k, v = torch.cat((ctx[..., :nope_dim], rope), dim=-1), ctx[..., nope_dim:]
        scores = torch.einsum("thd,shd->hts", q[a:b].float(), k) * scale  # [H, n, S]
        visible = torch.arange(s)[None, :] <= (s - (b - a) + torch.arange(b - a))[:, None]  # [n, S]
        scores = scores.masked_fill(~visible.to(q.device), float("-inf"))
        out[a:b] = torch.einsum("hts,shd->thd", scores.softmax(dim=-1), v).to(q.dtype)
        start += s
    return out


def mla_rope_and_cache(q_rope, latent, positions, cos_sin_cache, norm_weight, eps, kv_cache, slot_mapping,
                       kv_scale: float = 1.0) -> None:
    """Twin of mla_rope_cache.mla_rope_and_cache, as the unfused ops compose it: q_rope [T, H, R] rotated in place;
    RMSNorm(c_kv) ‖ rope(k_rope) of latent [T, L + R] stored into kv_cache at slot_mapping."""
    from vdeploy_kernels import reference

    lora = latent.shape[1] - q_rope.shape[-1]
    c_kv = reference.rms_norm(latent[:, :lora], norm_weight, eps)  # [T, L]
    q_rot, k_rot = reference.rotary(q_rope, latent[:, None, lora:], positions, cos_sin_cache, interleaved=True)
    q_rope.copy_(q_rot)
    entry = torch.cat((c_kv, k_rot[:, 0]), dim=-1)[:, None]  # [T, 1, L + R]
    reference.store_kv(entry, None, kv_cache, slot_mapping, kv_scale)
