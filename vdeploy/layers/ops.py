"""The one place where each kernel is dispatched: Triton on CUDA, the torch reference twin elsewhere.

Models call only these functions. Every function here has a plain-torch twin in `vdeploy_kernels.reference`,
which is what the tests compare the Triton kernels against.

Shapes: T tokens in the flat batch, H query heads, Hk KV heads, D head dim, B requests.
"""

from __future__ import annotations

import functools

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


def store_kv(k: torch.Tensor, v: torch.Tensor | None, kv_cache: torch.Tensor, slot_mapping: torch.Tensor,
             k_scale: float = 1.0, v_scale: float = 1.0) -> None:
    """Write k [T, Hk, D] (and v) into kv_cache [K, NB, BS, Hk, D] at the flat slots of slot_mapping [T].
    An fp8 cache stores saturate(x / scale) with the layer's k_scale / v_scale (ignored for 16/32-bit caches)."""
    from vdeploy_kernels import reference

    if _use_triton(k):
        from vdeploy_kernels.store_kv import store_kv as triton_store_kv

        return triton_store_kv(k, v, kv_cache, slot_mapping, k_scale, v_scale)
    return reference.store_kv(k, v, kv_cache, slot_mapping, k_scale, v_scale)



def rope_store_kv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor,
                  cos_sin_cache: torch.Tensor, kv_cache: torch.Tensor, slot_mapping: torch.Tensor,
                  k_scale: float = 1.0, v_scale: float = 1.0, interleaved: bool = False,
                  return_k: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """rotary then store_kv in one launch: q [T, H, D] and k [T, Hk, D] (any strides) rotated at positions [T] on
    their first Dr = cos_sin_cache.shape[-1] channels (the rest pass through), the rotated k and v [T, Hk, D] written
    into kv_cache [2, NB, BS, Hk, D] at slot_mapping [T] (an fp8 cache: saturate(x / scale)). Returns (q_rot, k_rot)
    as new contiguous tensors, k_rot only when return_k (else None)."""
    from vdeploy_kernels import reference

    if _use_triton(q):
        from vdeploy_kernels.rope_store_kv import rope_store_kv as triton_rope_store_kv

        return triton_rope_store_kv(q, k, v, positions, cos_sin_cache, kv_cache, slot_mapping, k_scale, v_scale,
                                    interleaved, return_k)
    return reference.rope_store_kv(q, k, v, positions, cos_sin_cache, kv_cache, slot_mapping, k_scale, v_scale,
                                   interleaved, return_k)


def attention_reads_new_kv(q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata) -> bool:
    """Whether paged_attention(q, kv_cache, meta, ..., new_kv=(k, v)) with k, v in q's dtype reads new_kv for this
    batch (the Triton path's prompts with no cached prefix, where tuned); host values only, no sync. The twin never
    reads it."""
    if _use_triton(q):
        from vdeploy_kernels.paged_attention import attention_reads_new_kv as triton_reads_new_kv

        return triton_reads_new_kv(q, kv_cache, meta)
    return False

def paged_attention(
    q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float,
    k_scale: float = 1.0, v_scale: float = 1.0, new_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Causal attention of q [T, H, D] over each request's paged context (prefix + this step's tokens, already
    stored). Returns [T, H, Dv]. GQA when H > Hk. An fp8 cache is read back as x_fp8 * k_scale / v_scale.
    new_kv: this step's (k, v) [T, Hk, D] as just stored; the Triton path reads prompts with no cached prefix from
    them (contiguous) instead of the pages. The result is the same, so the twin ignores it."""
    from vdeploy_kernels import reference

    if _use_triton(q):
        from vdeploy_kernels.paged_attention import paged_attention as triton_paged_attention

        return triton_paged_attention(q, kv_cache, meta, scale, k_scale=k_scale, v_scale=v_scale, new_kv=new_kv)
    return reference.paged_attention(q, kv_cache, meta, scale, k_scale=k_scale, v_scale=v_scale)


def dequantize_kv(x: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """Cached vectors (e.g. gathered MLA latents) in `dtype`: x_fp8 * scale for an fp8 cache, else a conversion.
    Plain torch on every device (one elementwise pass over a gathered copy)."""
    from vdeploy_kernels.reference import dequantize_kv as reference_dequantize_kv

    return reference_dequantize_kv(x, scale, dtype)


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
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin_cache: torch.Tensor, interleaved: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of q [T, H, Dr] and k [T, Hk, Dr] (any strides) at positions [T]; cos_sin_cache
    [max_pos, Dr] holds cos in the first Dr/2 columns and sin in the rest. Neox style (halves) or interleaved
    pairs. Returns new contiguous tensors."""
    from vdeploy_kernels import reference

    if _use_triton(q):
        from vdeploy_kernels.rotary import rotary as triton_rotary

        return triton_rotary(q, k, positions, cos_sin_cache, interleaved)
    return reference.rotary(q, k, positions, cos_sin_cache, interleaved)


def fused_moe(x, w13, w2, topk_ids, topk_weights, w13_scale=None, w2_scale=None, block=(128, 128),
              shared_output=None):
    """Routed experts: x [T, H], w13 [E, 2I, H], w2 [E, H, I], topk [T, k] -> [T, H] (block-FP8 when scales given).
    shared_output [T, H] (the shared experts' output): added to the result; on CUDA inside the kernel that sums the
    k experts of each token (no separate pass), rounding as `routed + shared_output` would; a function returning it
    (a side-stream join) is called just before that sum."""
    if _use_triton(x):
        from vdeploy_kernels.fused_moe import fused_moe as triton_fused_moe

        return triton_fused_moe(x, w13, w2, topk_ids, topk_weights, w13_scale, w2_scale, block,
                                shared_output=shared_output)
    from vdeploy_kernels import reference_deepseek as ref

    if w13_scale is not None:  # CPU keeps dense weights (dequantized at load); this branch serves tests
        w13 = torch.stack([ref.dequantize_weight_block(w, s, block) for w, s in zip(w13, w13_scale)])
        w2 = torch.stack([ref.dequantize_weight_block(w, s, block) for w, s in zip(w2, w2_scale)])
    out = ref.moe_loop(x, w13, w2, topk_ids, topk_weights)  # [T, H]
    if callable(shared_output):
        shared_output = shared_output()
    return out if shared_output is None else out + shared_output


DENSE_GEMV_MAX_ROWS = 8  # decode batches the GEMV's tables may cover; larger batches skip the lookup (cuBLAS)


def dense_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, K] @ weight [N, K]ᵀ (+ bias) -> [T, N]: cuBLAS (F.linear), except decode batches whose exact shape has
    a tuned row for this GPU kind, where the Triton GEMV measured faster (vdeploy_kernels.dense_gemv)."""
    if x.is_cuda and x.dim() == 2 and x.shape[0] <= DENSE_GEMV_MAX_ROWS and _use_triton(x):
        config = _tuned_gemv(x.shape[0], weight.shape[0], x.shape[1], x.dtype, x.device.index or 0)
        if config is not None:
            from vdeploy_kernels.dense_gemv import dense_gemv

            return dense_gemv(x, weight, config, bias)
    return torch.nn.functional.linear(x, weight, bias)


def _tuned_gemv(m: int, n: int, k: int, dtype: torch.dtype, device_index: int) -> dict | None:
    from vdeploy_kernels import tuned_tables
    from vdeploy_kernels.dense_gemv_configs import tuned_gemv_config

    return tuned_gemv_config(m, n, k, str(dtype).removeprefix("torch."), tuned_tables.device_name(device_index))


def w8a8_block_linear(x, weight, weight_scale_inv, block=(128, 128), bias=None, pin_decode_rows=False):
    """x [T, K] (bf16/fp32) @ block-FP8 weight [N, K]ᵀ -> [T, N] in x's dtype; activations quantized per token per
    128 channels. Triton W8A8 GEMM on CUDA (sm89+); dequantize + matmul elsewhere. pin_decode_rows: steps of up to
    16 rows take the one-row tiles (speculative decoding, see Fp8LinearMethod.pin_decode_rows)."""
    if _use_triton(x):
        from vdeploy_kernels.fp8_gemm import w8a8_block_linear as triton_w8a8_block_linear

        y = triton_w8a8_block_linear(x.reshape(-1, x.shape[-1]), weight, weight_scale_inv, block,
                                     pin_decode_rows=pin_decode_rows)
        y = y.view(*x.shape[:-1], -1)
    else:
        from vdeploy_kernels.reference_deepseek import dequantize_weight_block

        y = x @ dequantize_weight_block(weight, weight_scale_inv, block, x.dtype).t()
    return y if bias is None else y + bias


def w4a16_matmul(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor,
                 g_idx: torch.Tensor, group_size: int = 0, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [M, K] @ 4-bit W [K, N] (+ bias [N]) -> [M, N] in x's dtype; qweight [K/8, N] int32 packed along K, scales /
    zeros [G, N], g_idx [K] (layout: vdeploy_kernels.reference_quant). group_size > 0 when every group is that many
    consecutive rows. Triton on CUDA (the bias added in the kernel's store); dequantize + matmul elsewhere."""
    if _use_triton(x):
        from vdeploy_kernels.w4a16_gemm import w4a16_matmul as triton_w4a16_matmul

        return triton_w4a16_matmul(x, qweight, scales, zeros, g_idx, group_size, bias=bias)
    from vdeploy_kernels.reference_quant import w4a16_matmul as reference_w4a16_matmul

    y = reference_w4a16_matmul(x, qweight, scales, zeros, g_idx, group_size)
    return y if bias is None else y + bias


def w8a8_matmul(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """x [M, K] @ 8-bit weight [N, K]ᵀ (int8 or float8_e4m3fn) -> [M, N] in x's dtype; x is quantized per token on
    the fly (scale = amax / 127 or / 448) and weight_scale [N] float32 is per output channel. Triton on CUDA;
    the twin (vdeploy_kernels.reference_quant) elsewhere."""
    if _use_triton(x):
        from vdeploy_kernels.w8a8_gemm import w8a8_matmul as triton_w8a8_matmul

        return triton_w8a8_matmul(x, weight, weight_scale)
    from vdeploy_kernels.reference_quant import w8a8_matmul as reference_w8a8_matmul

    return reference_w8a8_matmul(x, weight, weight_scale)


def mla_attention(q: torch.Tensor, kv_cache: torch.Tensor, meta: AttentionMetadata, scale: float, kv_lora_rank: int,
                  kv_scale: float = 1.0, q_rope: torch.Tensor | None = None):
    """Absorbed MLA: q [T, H, L+R] (or q [T, H, L] and q_rope [T, H, R], any row/head strides) over the latent
    cache [1, NB, BS, 1, L+R] -> [T, H, L]; an fp8 latent cache is read back as x_fp8 * kv_scale."""
    if _use_triton(q):
        from vdeploy_kernels.mla_attention import mla_attention as triton_mla_attention

        return triton_mla_attention(q, kv_cache, meta, scale, kv_lora_rank, kv_scale=kv_scale, q_rope=q_rope)
    from vdeploy_kernels.reference_deepseek import mla_attention as reference_mla_attention

    return reference_mla_attention(q, kv_cache, meta, scale, kv_lora_rank, kv_scale=kv_scale, q_rope=q_rope)


def gumbel_sample(logits: torch.Tensor, temperature: torch.Tensor,
                  seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [N, V], temperature [N] (> 0), seeds [N] int64 -> (argmax [N], a draw from softmax(logits / T) [N]) in
    one read of the logits (Gumbel-max; kernels/sampling.py). The twin draws its noise with torch's generator seeded
    by each row's seed: the same distribution, other bits."""
    if _use_triton(logits):
        from vdeploy_kernels.sampling import gumbel_sample as triton_gumbel_sample

        return triton_gumbel_sample(logits, temperature, seeds)
    from vdeploy_kernels import reference

    return reference.gumbel_sample(logits, temperature, seeds)


def router_weight(weight: torch.Tensor, activation_dtype: torch.dtype) -> torch.Tensor:
    """The form a DeepSeek router weight [E, D] is kept in after loading, for router_logits: as loaded when it is in
    the activations' 16-bit dtype and this GPU's cuBLAS multiplies 16-bit inputs into a float32 output; otherwise
    float32 once (converting a 16-bit weight every step would cost more traffic than reading it)."""
    if weight.is_cuda and weight.dtype == activation_dtype and weight.dtype in (torch.bfloat16, torch.float16):
        if _float32_output_mm(weight.device.index or 0, weight.dtype):
            return weight
    return weight.float()


def router_logits(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """float32 logits [T, E] = x [T, D] · weightᵀ, accumulated in float32. A 16-bit weight (router_weight) runs as
    one cuBLAS GEMM with a float32 output: each product of two 16-bit numbers is exact in float32, so the result
    differs from the float32 GEMM only in summation order, at a fraction of its cost (the float32 GEMM runs on the
    CUDA cores: 0.6 ms per MoE layer for an 8,192-token R1 prefill step on an H100)."""
    if weight.dtype == torch.float32:
        return torch.nn.functional.linear(x.float(), weight)
    return torch.mm(x.to(weight.dtype), weight.t(), out_dtype=torch.float32)


@functools.lru_cache(maxsize=8)
def _float32_output_mm(device_index: int, dtype: torch.dtype) -> bool:
    """Whether torch.mm(..., out_dtype=float32) runs for 16-bit inputs on this GPU (torch >= 2.8 on CUDA)."""
    try:
        a = torch.ones(2, 16, dtype=dtype, device=f"cuda:{device_index}")
        return torch.mm(a, a.t(), out_dtype=torch.float32).dtype == torch.float32
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def select_experts(router_logits: torch.Tensor, correction_bias: torch.Tensor | None, spec):
    """MoE routing: router_logits [T, E] float32 -> (topk_weights [T, k] float32, topk_ids [T, k] int64) as spec
    (vdeploy.layers.moe.RoutingSpec) says; one program per token on CUDA instead of ~8 torch launches."""
    if _use_triton(router_logits):
        from vdeploy_kernels.moe_routing import select_experts as triton_select_experts

        return triton_select_experts(router_logits, correction_bias, spec)
    from vdeploy_kernels.reference_deepseek import select_experts as reference_select_experts

    return reference_select_experts(router_logits, correction_bias, spec)


def mla_rope_and_cache(q_rope: torch.Tensor, latent: torch.Tensor, positions: torch.Tensor,
                       cos_sin_cache: torch.Tensor, norm_weight: torch.Tensor, eps: float, kv_cache: torch.Tensor,
                       slot_mapping: torch.Tensor, kv_scale: float = 1.0) -> None:
    """MLA's glue in one step: q_rope [T, H, R] (a view) rotated in place (interleaved pairs), and
    RMSNorm(c_kv) ‖ rope(k_rope) of latent [T, L + R] written into the latent cache [1, NB, BS, 1, L + R] at
    slot_mapping [T] (an fp8 cache: saturate(x / kv_scale))."""
    if _use_triton(q_rope):
        from vdeploy_kernels.mla_rope_cache import mla_rope_and_cache as triton_mla_rope_and_cache

        return triton_mla_rope_and_cache(q_rope, latent, positions, cos_sin_cache, norm_weight, eps, kv_cache,
                                         slot_mapping, kv_scale)
    from vdeploy_kernels.reference_deepseek import mla_rope_and_cache as reference_mla_rope_and_cache

    return reference_mla_rope_and_cache(q_rope, latent, positions, cos_sin_cache, norm_weight, eps, kv_cache,
                                        slot_mapping, kv_scale)


def mla_prefill_attention(q, kv, k_rope, query_start_loc, seq_lens, max_query_len: int, scale: float,
                          nope_dim: int, context_starts: torch.Tensor | None = None) -> torch.Tensor:
    """Expanded MLA prefill: causal attention of q [T, H, Dn + R] over contexts laid out back to back, keys
    k_nope ‖ k_rope (kv [S, H, Dn + Dv] ‖ k_rope [S, R], shared by the heads), values the rest of kv; each request's
    queries are the last q_len tokens of its context (context_starts [B]: where each begins, if known). -> [T, H, Dv]."""
    if _use_triton(q):
        from vdeploy_kernels.mla_prefill_attention import mla_prefill_attention as triton_attention

        return triton_attention(q, kv, k_rope, query_start_loc, seq_lens, max_query_len, scale, nope_dim,
                                context_starts=context_starts)
    from vdeploy_kernels.reference_deepseek import mla_prefill_attention as reference_attention

    return reference_attention(q, kv, k_rope, query_start_loc, seq_lens, max_query_len, scale, nope_dim)


def add_lora(y: torch.Tensor, x: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, token_slots: torch.Tensor,
             seg_starts: torch.Tensor, seg_slots: torch.Tensor, max_run: int = 0) -> None:
    """Grouped LoRA, in place: y [T, N] += (x [T, K] @ lora_a[s]ᵀ) @ lora_b[s]ᵀ with s = token_slots[t] (-1: the
    base model, unchanged); lora_a [L, R, K], lora_b [L, N, R] stacked slots. seg_starts [S + 1] / seg_slots [S]:
    the same slots as runs of consecutive tokens (the Triton kernel's grid: one program per tile of a run);
    max_run: the longest run (0: unknown)."""
    if _use_triton(x):
        from vdeploy_kernels.lora import add_lora as triton_add_lora

        return triton_add_lora(y, x, lora_a, lora_b, token_slots, seg_starts, seg_slots, max_run)
    from vdeploy_kernels import reference

    return reference.add_lora(y, x, lora_a, lora_b, token_slots, seg_starts, seg_slots)
