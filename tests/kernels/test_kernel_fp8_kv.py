"""FP8 (e4m3) KV cache with per-layer scales: the twins' quantize/dequantize rule, and the Triton attention kernels
(paged decode + prefill, MLA) reading an fp8 cache against their twins under the interpreter.

The caches here are quantized by torch (vdeploy_kernels.reference.quantize_kv): the interpreter's fp32 -> fp8 cast is
wrong, so the quantizing store_kv kernel is compared with its twin on the GPU only
(benchmarks/kernels/fp8_kv_check.py). fp8 -> fp16/fp32 loads are exact in the interpreter.
"""

import pytest
import torch

from vdeploy.layers.forward_context import AttentionMetadata
from vdeploy_kernels import reference
from vdeploy_kernels import reference_deepseek as ref_ds
from vdeploy_kernels.decode_attention import DecodeConfig
from vdeploy_kernels.paged_attention import paged_attention
from vdeploy_kernels.paged_batch import make_paged_batch
from vdeploy_kernels.prefill_attention import PrefillConfig

FP8 = torch.float8_e4m3fn
SMALL_PREFILL = PrefillConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)
SMALL_DECODE = DecodeConfig(block_n=16, num_splits=3, num_warps=4, num_stages=1)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def quantized(cache: torch.Tensor, scales: list[float]) -> torch.Tensor:
    """cache [K, ...] -> fp8 with one scale per component, by the twins' rule."""
    return torch.stack([reference.quantize_kv(c, s, FP8) for c, s in zip(cache, scales)])


def test_quantize_saturates_scales_and_rounds_like_torch():
    x = torch.tensor([0.0, 0.3, -1.7, 100.0, 500.0, -1e6, 3.0e-3])
    q = reference.quantize_kv(x, 0.5, FP8)  # stores x / 0.5
    assert q.dtype == FP8 and torch.isfinite(q.float()).all()  # torch's plain cast gives NaN above 448
    assert q.float()[4].item() == 448.0 and q.float()[5].item() == -448.0
    assert torch.equal(q[:4], (x[:4] * 2.0).to(FP8))  # in range: a plain round-to-nearest-even cast
    back = reference.dequantize_kv(q, 0.5)
    assert back[5].item() == -224.0  # saturated at 448 * scale
    assert torch.equal(reference.quantize_kv(x, 2.0, torch.float16), x.half())  # 16-bit caches ignore scales


def test_round_trip_error_is_e4m3_precision():
    x = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    scale = float(x.abs().max()) / 448.0  # the whole range used
    err = (reference.dequantize_kv(reference.quantize_kv(x, scale, FP8), scale) - x).abs()
    normal = x.abs() >= 2.0**-6 * scale  # e4m3 normals: 3 mantissa bits -> relative error <= 2^-4
    assert normal.sum() > 4000
    assert (err[normal] <= x.abs()[normal] * 2.0**-4 + 1e-12).all()
    assert (err[~normal] <= 2.0**-10 * scale).all()  # subnormals: half of the smallest step, 2^-9 * scale


def test_twin_store_kv_quantizes_each_component_with_its_scale():
    gen = torch.Generator().manual_seed(1)
    k, v = torch.randn(5, 2, 64, generator=gen) * 3, torch.randn(5, 2, 64, generator=gen)
    cache = torch.zeros(2, 4, 16, 2, 64, dtype=FP8)
    slots = torch.tensor([3, -1, 17, 40, 63])
    reference.store_kv(k, v, cache, slots, k_scale=0.25, v_scale=0.05)
    flat = cache.view(2, 64, 2, 64)
    assert torch.equal(flat[0, 17], reference.quantize_kv(k[2], 0.25, FP8))
    assert torch.equal(flat[1, 63], reference.quantize_kv(v[4], 0.05, FP8))
    assert flat[0, 0].float().abs().sum() == 0  # padding skipped


def test_twin_attention_over_fp8_cache_equals_attention_over_its_dequantized_copy():
    gen = torch.Generator().manual_seed(2)
    batch = make_paged_batch([1, 1, 7], [20, 33, 25], num_heads=8, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    scales = [float(c.abs().max()) / 448.0 for c in batch.kv_cache]  # amax / 448: no saturation
    cache8 = quantized(batch.kv_cache, scales)
    dequant = torch.stack([reference.dequantize_kv(c, s) for c, s in zip(cache8, scales)])
    out8 = reference.paged_attention(batch.q, cache8, batch.meta, 0.125, k_scale=scales[0], v_scale=scales[1])
    out32 = reference.paged_attention(batch.q, dequant, batch.meta, 0.125)
    assert torch.allclose(out8, out32, atol=1e-6)
    # and within e4m3 precision of the unquantized cache
    assert rel_err(out8, reference.paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125)) < 0.05


@pytest.mark.parametrize("group,head_dim,scales", [(1, 64, (1.0, 1.0)), (4, 128, (0.02, 0.5)), (8, 64, (3.0, 0.01))])
def test_paged_attention_kernel_reads_fp8_cache_like_twin(group, head_dim, scales):
    # decodes (short, page-crossing, long), an extend over a cached prefix, a fresh prefill
    gen = torch.Generator().manual_seed(group + head_dim)
    batch = make_paged_batch([1, 1, 1, 9, 21], [3, 33, 70, 40, 21], num_heads=2 * group, num_kv_heads=2,
                             head_dim=head_dim, block_size=16, dtype=torch.float32, generator=gen)
    cache8 = quantized(batch.kv_cache * torch.tensor(scales).view(2, 1, 1, 1, 1), list(scales))
    q = batch.q.half()  # the interpreter's tl.dot mishandles bf16; fp16 queries exercise the fp8 -> fp16 widening
    d = head_dim**-0.5
    out = paged_attention(q, cache8, batch.meta, d, decode_config=SMALL_DECODE, prefill_config=SMALL_PREFILL,
                          k_scale=scales[0], v_scale=scales[1])
    twin = reference.paged_attention(q, cache8, batch.meta, d, k_scale=scales[0], v_scale=scales[1])
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert rel_err(out, twin) < 2e-3


def test_paged_attention_kernel_ignores_scales_for_a_16_bit_cache():
    gen = torch.Generator().manual_seed(3)
    batch = make_paged_batch([1, 5], [17, 12], num_heads=4, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125, k_scale=7.0, v_scale=0.1,
                          prefill_config=SMALL_PREFILL)
    assert rel_err(out, reference.paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125)) < 1e-5


@pytest.mark.parametrize("heads,splits,kv_scale", [(4, None, 0.02), (16, 2, 1.0), (20, 4, 0.3), (16, 1, 0.02)])
def test_mla_kernel_reads_fp8_latent_cache_like_twin(heads, splits, kv_scale):
    from vdeploy_kernels.mla_attention import mla_attention

    gen = torch.Generator().manual_seed(heads)
    lora, rope, num_blocks, block_size = 64, 16, 24, 16
    cache8 = reference.quantize_kv(torch.randn(1, num_blocks, block_size, 1, lora + rope, generator=gen) * kv_scale,
                                   kv_scale, FP8)
    q_lens, seq_lens = [1, 1, 6], [37, 5, 30]  # two decodes, then an extend over a cached prefix
    tables = torch.randperm(num_blocks, generator=gen)[:12].view(3, 4).to(torch.int32)
    qsl = torch.tensor([0, 1, 2, 8], dtype=torch.int32)
    meta = AttentionMetadata(torch.zeros(8, dtype=torch.long), qsl, torch.tensor(seq_lens, dtype=torch.int32),
                             tables, 6, 37, 2, block_size, q_lens, seq_lens)
    q = torch.randn(8, heads, lora + rope, generator=gen)
    tiles = {"block_h": 16, "block_n": 32, "num_warps": 4, "num_stages": 2}
    out = mla_attention(q, cache8, meta, 0.125, lora, num_splits=splits, kv_scale=kv_scale, tiles=tiles)
    twin = ref_ds.mla_attention(q, cache8, meta, 0.125, lora, kv_scale=kv_scale)
    assert torch.isfinite(out).all()
    assert rel_err(out, twin) < 1e-5
