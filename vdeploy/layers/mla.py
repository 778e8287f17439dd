"""Multi-head latent attention (DeepSeek-V2/V3) over a paged latent cache.

Per token and layer the cache holds c_kv (kv_lora_rank = L values, after kv_a_layernorm) ‖ k_rope (R values,
rotated): 576 values for R1, shared by all heads and never split across TP ranks. Heads are split across ranks.

Absorbed form (what runs): W_UK is folded into the query and W_UV applied after attention, so attention is
multi-query attention over the latent vectors themselves:
    q_lat[h] = q_nope[h] · W_UK[h]            [T, H, L]
    o_lat    = MQA(q_lat ‖ q_rope, cache)      [T, H, L]   (values = the cached c_kv)
    o[h]     = o_lat[h] · W_UV[h]ᵀ            [T, H, Dv]
W_UK / W_UV come from kv_b_proj and are prepared once after loading (dequantized when the checkpoint is FP8).
Decode rows take the absorbed form (one latent read serves every head). Prefill and extend rows take the expanded
form instead: their contexts are decompressed once through kv_b_proj and attended at head dim Dn + R (see
_prefill_split), which is what a long prompt's FLOPs favour.
`forward_naive` expands K and V per head from the cached latents: the test oracle for the absorbed path.
FP8 latent cache (--kv-cache-dtype fp8): one scale per layer, `kv_scale` (default 1.0, or the checkpoint's
`self_attn.k_scale` / `kv_scale`): the cache holds saturate(latent / kv_scale); every reader dequantizes with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vdeploy.config import ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.layers import ops
from vdeploy.layers.forward_context import ForwardContext
from vdeploy.layers.layernorm import RMSNorm
from vdeploy.layers.linear import (ColumnParallelLinear, MergedReplicatedLinear, ReplicatedLinear, RowParallelLinear,
                                   divide)
from vdeploy.layers.rotary import RotaryEmbedding, yarn_get_mscale

# q_a_layernorm and kv_a_layernorm: DeepSeek's modeling code (and transformers') builds them with the norm's default
# eps, not rms_norm_eps; the two agree for DeepSeek's own checkpoints, not for others of the architecture (Moonlight)
LATENT_NORM_EPS = 1e-6


def mla_rotary(cfg: ModelConfig) -> RotaryEmbedding:
    """The rotary embedding of the rope part of MLA's queries and keys (DeepSeek's interleaved pairs), built once
    per model: its cos/sin cache covers every position, so per-layer copies would cost start-up time and memory."""
    return RotaryEmbedding(cfg.qk_rope_head_dim, cfg.qk_rope_head_dim, cfg.max_position_embeddings, cfg.rope_theta,
                           cfg.rope_scaling, is_neox_style=False)


def merges_qkv_a(cfg: ModelConfig) -> bool:
    """Whether q_a_proj and kv_a_proj_with_mqa load into one weight (fused_qkv_a_proj): models with a q LoRA, unless
    a block-quantized checkpoint's q_a rows end inside a scale block (tiny test models; R1's 1536 is 12 blocks)."""
    if not cfg.q_lora_rank:
        return False
    quant = cfg.quant
    return quant is None or (quant.weight_block_size is not None and cfg.q_lora_rank % quant.weight_block_size[0] == 0)


def mla_softmax_scale(cfg: ModelConfig) -> float:
    scale = cfg.qk_head_dim**-0.5
    scaling = cfg.rope_scaling or {}
    if scaling.get("rope_type") in ("yarn", "deepseek_yarn") and scaling.get("mscale_all_dim"):
        mscale = yarn_get_mscale(float(scaling["factor"]), float(scaling["mscale_all_dim"]))
        scale = scale * mscale * mscale
    return scale


class MLAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int, parallel: ParallelState, rotary: RotaryEmbedding,
                 params_dtype: torch.dtype):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = divide(cfg.num_heads, parallel.tp_size, "number of attention heads")
        self.nope_dim, self.rope_dim, self.v_dim = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim
        self.kv_lora_rank = cfg.kv_lora_rank
        self.scale = mla_softmax_scale(cfg)
        common = dict(parallel=parallel, quant_config=cfg.quant, params_dtype=params_dtype)
        q_out = cfg.num_heads * cfg.qk_head_dim
        self.q_lora_rank = cfg.q_lora_rank
        latent_dim = cfg.kv_lora_rank + cfg.qk_rope_head_dim
        self.merged_qkv_a = merges_qkv_a(cfg)
        if self.merged_qkv_a:  # q_a_proj ‖ kv_a_proj_with_mqa (checkpoint shards 0 and 1): one GEMM of the hidden
            self.fused_qkv_a_proj = MergedReplicatedLinear(cfg.hidden_size, [cfg.q_lora_rank, latent_dim],
                                                           bias=cfg.attention_bias, **common)
        elif cfg.q_lora_rank:
            self.q_a_proj = ReplicatedLinear(cfg.hidden_size, cfg.q_lora_rank, bias=cfg.attention_bias, **common)
        else:  # DeepSeek-V2-Lite: one projection, no q LoRA
            self.q_proj = ColumnParallelLinear(cfg.hidden_size, q_out, **common)
        if cfg.q_lora_rank:
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, LATENT_NORM_EPS, params_dtype)
            self.q_b_proj = ColumnParallelLinear(cfg.q_lora_rank, q_out, **common)
        if not self.merged_qkv_a:
            self.kv_a_proj_with_mqa = ReplicatedLinear(cfg.hidden_size, latent_dim, bias=cfg.attention_bias,
                                                       **common)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank, LATENT_NORM_EPS, params_dtype)
        self.kv_b_proj = ColumnParallelLinear(cfg.kv_lora_rank, cfg.num_heads * (self.nope_dim + self.v_dim),
                                              **common)
        self.o_proj = RowParallelLinear(cfg.num_heads * cfg.v_head_dim, cfg.hidden_size,
                                        bias=cfg.attention_bias, **common)
        self.rotary_emb = rotary  # YaRN, interleaved pairs; one cache shared by all layers (see mla_rotary)
        # Context tokens per step token that the expanded prefill may decompress: its transient (kv_b_proj's output,
        # k_nope ‖ v of every context token) then stays below the routed experts' transient of the same step,
        # which the memory profile measured at the largest step (R1 at TP 1: 2.75; V2-Lite: 7.1). Dense models: 1.
        per_context_token = self.num_heads * (self.nope_dim + self.v_dim)
        inter = cfg.moe_intermediate_size // parallel.tp_size
        per_moe_token = cfg.num_experts_per_tok * (2 * inter + cfg.hidden_size) if cfg.n_routed_experts else 0
        self.expand_ratio = max(1.0, per_moe_token / per_context_token)
        self.w_uk: torch.Tensor | None = None  # [H, Dn, L], set by prepare_absorbed_weights
        self.w_uv: torch.Tensor | None = None  # [H, Dv, L]
        self.kv_scale = 1.0  # fp8 latent cache: cached = latent / kv_scale (a host float: CUDA graphs bake it in)

    def prepare_absorbed_weights(self) -> None:
        """Split kv_b_proj into W_UK and W_UV once, after loading (dequantized if the weight is FP8)."""
        w = self.kv_b_proj.weight
        if w.dtype == torch.float8_e4m3fn:
            from vdeploy_kernels.reference_deepseek import dequantize_weight_block

            block = self.kv_b_proj.linear_method.block
            w = dequantize_weight_block(w, self.kv_b_proj.weight_scale_inv, block, self.kv_a_layernorm.weight.dtype)
        w = w.view(self.num_heads, self.nope_dim + self.v_dim, self.kv_lora_rank)
        self.w_uk = w[:, : self.nope_dim].contiguous()  # [H, Dn, L]
        self.w_uv = w[:, self.nope_dim :].contiguous()  # [H, Dv, L]

    def _projections(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q [T, H, Dn + R] (before rope) and the latent [T, L + R] = c_kv ‖ k_rope (before norm and rope)."""
        t = hidden.shape[0]
        if self.merged_qkv_a:
            q_a, latent = self.fused_qkv_a_proj(hidden).split([self.q_lora_rank, self.kv_lora_rank + self.rope_dim],
                                                              dim=-1)  # strided views [T, Lq], [T, L + R]
        else:
            q_a, latent = self.q_a_proj(hidden) if self.q_lora_rank else None, self.kv_a_proj_with_mqa(hidden)
        q = self.q_b_proj(self.q_a_layernorm(q_a)) if self.q_lora_rank else self.q_proj(hidden)
        return q.view(t, self.num_heads, self.nope_dim + self.rope_dim), latent

    def _project(self, positions: torch.Tensor, hidden: torch.Tensor):
        """The unfused form, for the paths without a cache to write (memory-profile warm-up) and the oracle:
        q_nope, rotated q_rope and the cache entry [T, 1, L + R]."""
        t = hidden.shape[0]
        q, latent = self._projections(hidden)
        q_nope, q_rope = q.split([self.nope_dim, self.rope_dim], dim=-1)
        c_kv, k_rope = latent.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        c_kv = self.kv_a_layernorm(c_kv)  # [T, L] (the kernels read the strided views: no copies)
        q_rope, k_rope = self.rotary_emb(positions, q_rope, k_rope.reshape(t, 1, self.rope_dim))
        entry = torch.cat((c_kv, k_rope.view(t, self.rope_dim)), dim=-1).view(t, 1, -1)  # [T, 1, L + R]
        return q_nope, q_rope, entry

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        # hidden [T, D] -> [T, D] (all-reduced by o_proj)
        t = hidden.shape[0]
        kv_cache = ctx.kv_caches[self.layer_idx] if self.layer_idx < len(ctx.kv_caches) else None
        if kv_cache is None or kv_cache.numel() == 0:  # memory-profiling warm-up: no cache yet
            return self._attend_uncached(*self._project(positions, hidden), ctx)
        if self.w_uk is None:
            self.prepare_absorbed_weights()
        q, latent = self._projections(hidden)
        q_nope, q_rope = q.split([self.nope_dim, self.rope_dim], dim=-1)
        # q's rope in place, c_kv's norm, k's rope and the cache write: one launch on the GPU
        ops.mla_rope_and_cache(q_rope, latent, positions, self.rotary_emb.cos_sin_cache, self.kv_a_layernorm.weight,
                               self.kv_a_layernorm.eps, kv_cache, ctx.attn.slot_mapping, self.kv_scale)
        split = self._prefill_split(ctx.attn)  # first prefill row, or t: all absorbed
        parts = []
        if split > 0:
            parts.append(self._attend_absorbed(q_nope[:split], q_rope[:split], kv_cache, ctx))
        if split < t:  # q [T, H, Dn + R] is already q_nope ‖ rotated q_rope (q_rope is a view rotated in place)
            parts.append(self._attend_expanded(q[split:], kv_cache, ctx.attn))
        o = parts[0] if len(parts) == 1 else torch.cat(parts)  # [T, H, Dv]
        return self.o_proj(o.reshape(t, self.num_heads * self.v_dim))

    def _attend_absorbed(self, q_nope, q_rope, kv_cache, ctx: ForwardContext) -> torch.Tensor:
        """Decode rows: MQA over the latent cache (rows are the first of the batch: the kernel maps them)."""
        # [n, H, L], a transposed view of bmm's [H, n, L]: the kernel reads q_lat and q_rope where they lie
        q_lat = torch.bmm(q_nope.transpose(0, 1), self.w_uk).transpose(0, 1)
        o_lat = ops.mla_attention(q_lat, kv_cache, ctx.attn, self.scale, self.kv_lora_rank, self.kv_scale,
                                  q_rope=q_rope)  # [n, H, L]
        # [n, H, Dv] contiguous: bmm writes each head's [n, Dv] block into it with row stride H·Dv (cuBLAS takes the
        # strides), so o_proj's [n, H·Dv] input is a view, not a copy per layer
        out = torch.empty(o_lat.shape[0], self.num_heads, self.v_dim, dtype=o_lat.dtype, device=o_lat.device)
        torch.bmm(o_lat.transpose(0, 1), self.w_uv.transpose(1, 2), out=out.transpose(0, 1))
        return out

    def _prefill_split(self, meta) -> int:
        """Row where the prefill/extend requests start when they take the expanded path, else T (all absorbed).
        Expanded prefill decompresses each context once (kv_b_proj) and runs flash attention at head dim
        Dn + R = 192 instead of the latent width 576 per query row: 3.4x fewer FLOPs, and query tiles of 64 rows
        share every key tile. It needs the host's lengths and a bounded transient (the decompressed K and V)."""
        t = int(meta.slot_mapping.shape[0])
        nd = meta.num_decodes
        if meta.seq_lens_host is None or nd == meta.num_reqs:
            return t
        if meta.prefill_context_len > t * self.expand_ratio:  # long cached prefixes: stay absorbed
            return t
        return nd  # decodes come first, one row each

    def _attend_expanded(self, q, kv_cache, meta) -> torch.Tensor:
        """Prefill rows (requests num_decodes..), q [n, H, Dn + R]: every context token's latent decompressed once
        by kv_b_proj into k_nope ‖ v per head, then causal attention of the rows over them, k_rope shared by the
        heads (the kernel reads all three where they lie). -> [n, H, Dv]"""
        gathered = kv_cache.view(-1, self.kv_lora_rank + self.rope_dim)[meta.prefill_context_slots]  # [S, L + R]
        latents = ops.dequantize_kv(gathered, self.kv_scale, q.dtype)  # fp8 cache -> q's dtype
        kv = self.kv_b_proj(latents[:, : self.kv_lora_rank].contiguous())  # [S, H·(Dn + Dv)]
        kv = kv.view(meta.prefill_context_len, self.num_heads, self.nope_dim + self.v_dim)
        return ops.mla_prefill_attention(q, kv, latents[:, self.kv_lora_rank :], meta.prefill_query_start_loc,
                                         meta.seq_lens[meta.num_decodes :], meta.max_query_len, self.scale,
                                         self.nope_dim, meta.prefill_context_starts)

    def _expand(self, latents: torch.Tensor):
        # latents [S, L + R] -> k [S, H, Dn + R], v [S, H, Dv]
        s = latents.shape[0]
        c_kv, k_rope = latents.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        kv = self.kv_b_proj(c_kv.contiguous()).view(s, self.num_heads, self.nope_dim + self.v_dim)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_rope[:, None, :].expand(s, self.num_heads, self.rope_dim)), dim=-1)
        return k, v

    def _attend(self, q: torch.Tensor, latents: torch.Tensor, context_start: int) -> torch.Tensor:
        # q [n, H, Dn + R] at positions context_start.. ; latents [S, L + R] -> [n, H, Dv]
        k, v = self._expand(latents)
        n, s = q.shape[0], latents.shape[0]
        mask = torch.arange(s)[None, :] <= (context_start + torch.arange(n))[:, None]  # [n, S]
        out = F.scaled_dot_product_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1),
                                             attn_mask=mask.to(q.device), scale=self.scale)
        return out.transpose(0, 1)

    def _attend_uncached(self, q_nope, q_rope, entry, ctx: ForwardContext) -> torch.Tensor:
        q = torch.cat((q_nope, q_rope), dim=-1)
        out = torch.empty(q.shape[0], self.num_heads, self.v_dim, dtype=q.dtype, device=q.device)
        starts = ctx.attn.query_start_loc.tolist()
        for a, b in zip(starts[:-1], starts[1:]):
            out[a:b] = self._attend(q[a:b], entry[a:b, 0], 0)
        return self.o_proj(out.reshape(q.shape[0], -1))

    def forward_naive(self, positions: torch.Tensor, hidden: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """The oracle: same cache writes, but K and V expanded per head from the cached latents of each request."""
        from vdeploy_kernels.reference import gather_kv

        q_nope, q_rope, entry = self._project(positions, hidden)
        kv_cache = ctx.kv_caches[self.layer_idx]
        ops.store_kv(entry, None, kv_cache, ctx.attn.slot_mapping, self.kv_scale)
        q = torch.cat((q_nope, q_rope), dim=-1)
        out = torch.empty(q.shape[0], self.num_heads, self.v_dim, dtype=q.dtype, device=q.device)
        starts, seq_lens = ctx.attn.query_start_loc.tolist(), ctx.attn.seq_lens.tolist()
        for i, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
            latents = gather_kv(kv_cache, ctx.attn.block_tables[i], seq_lens[i], 0)[:, 0]  # [S, L + R]
            latents = ops.dequantize_kv(latents, self.kv_scale, q.dtype)
            out[a:b] = self._attend(q[a:b], latents, seq_lens[i] - (b - a))
        return self.o_proj(out.reshape(q.shape[0], -1))
