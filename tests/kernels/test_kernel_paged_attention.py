"""Triton paged attention (prefill/extend + split-KV decode) against the torch twin, under the interpreter.

Tiny shapes, fp16/fp32 (the interpreter's tl.dot mishandles bf16 operands; bf16 is covered by the GPU check in
benchmarks/kernels/check_and_bench.py). Every case scatters contexts over permuted pages.
"""

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.decode_attention import DecodeConfig
from vdeploy_kernels.paged_attention import paged_attention
from vdeploy_kernels.paged_batch import make_paged_batch
from vdeploy_kernels.prefill_attention import PrefillConfig

SMALL_PREFILL = PrefillConfig(block_m=16, block_n=16, num_warps=4, num_stages=1)


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def check(batch, *, dv=None, tol=2e-3, decode_config=None, prefill_config=None):
    d = batch.q.shape[-1]
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, d**-0.5, v_head_dim=dv,
                          decode_config=decode_config, prefill_config=prefill_config)
    ref = reference.paged_attention(batch.q, batch.kv_cache, batch.meta, d**-0.5, v_head_dim=dv)
    assert out.shape == ref.shape and out.dtype == batch.q.dtype
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < tol
    return out, ref


@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("block_size", [16, 32])
def test_mixed_batch_matches_twin(group, head_dim, block_size):
    # 3 decodes (short, page-crossing, long), an extend over a cached prefix, a fresh prefill
    gen = torch.Generator().manual_seed(group * 1000 + head_dim + block_size)
    batch = make_paged_batch([1, 1, 1, 9, 21], [3, 33, 70, 40, 21], num_heads=2 * group, num_kv_heads=2,
                             head_dim=head_dim, block_size=block_size, dtype=torch.float16, generator=gen)
    check(batch, decode_config=DecodeConfig(block_n=16, num_splits=3, num_warps=4, num_stages=1),
          prefill_config=SMALL_PREFILL)


def test_every_row_is_written_per_request():
    gen = torch.Generator().manual_seed(1)
    batch = make_paged_batch([1, 1, 5, 1 + 16, 40], [1, 17, 5, 50, 40], num_heads=4, num_kv_heads=1, head_dim=64,
                             block_size=16, dtype=torch.float32, generator=gen)
    batch.meta.num_decodes = 2
    out, ref = check(batch, tol=1e-5, prefill_config=SMALL_PREFILL)
    starts = batch.meta.query_start_loc.tolist()
    for a, b in zip(starts[:-1], starts[1:]):  # a per-request check: one bad request cannot hide in the norm
        assert rel_err(out[a:b], ref[a:b]) < 1e-5


@pytest.mark.parametrize("num_splits", [1, 2, 7])
def test_decode_split_counts_agree(num_splits):
    gen = torch.Generator().manual_seed(num_splits)
    batch = make_paged_batch([1, 1, 1, 1], [1, 16, 37, 95], num_heads=8, num_kv_heads=2, head_dim=64,
                             block_size=16, dtype=torch.float16, generator=gen)
    check(batch, decode_config=DecodeConfig(block_n=16, num_splits=num_splits, num_warps=4, num_stages=1))


@pytest.mark.parametrize("num_splits", [None, 1])  # None: the default (merged by stage 2); 1: stage 1 writes `out`
def test_decode_padding_row_with_empty_context_gives_zeros(num_splits):
    # a captured CUDA graph pads the batch with requests of seq_len 0: they must produce zeros, not NaN
    gen = torch.Generator().manual_seed(2)
    batch = make_paged_batch([1, 1], [20, 5], num_heads=4, num_kv_heads=4, head_dim=64, block_size=16,
                             dtype=torch.float16, generator=gen)
    batch.meta.seq_lens[1] = 0
    config = DecodeConfig(block_n=16, num_splits=1, num_warps=4, num_stages=1) if num_splits else None
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125, decode_config=config)
    assert torch.isfinite(out).all()
    assert out[1].abs().max().item() == 0.0
    batch.meta.seq_lens_host = [20, 0]
    ref = reference.paged_attention(batch.q[:1], batch.kv_cache, batch.meta, 0.125)
    assert rel_err(out[:1], ref[:1]) < 2e-3


def test_chunked_prefill_against_long_prefix_with_default_configs():
    # one chunk of 24 new tokens after 100 cached ones: the chunk crosses tile and page boundaries unaligned
    gen = torch.Generator().manual_seed(3)
    batch = make_paged_batch([24], [124], num_heads=8, num_kv_heads=2, head_dim=128, block_size=32,
                             dtype=torch.float16, generator=gen)
    check(batch)


def test_mla_style_single_component_cache_with_non_power_of_two_dims():
    # K = 1: values are the first Dv channels of the cached vector; D = 96 and Dv = 80 exercise padded head dims
    gen = torch.Generator().manual_seed(4)
    batch = make_paged_batch([1, 1, 12], [30, 7, 40], num_heads=4, num_kv_heads=1, head_dim=96, block_size=16,
                             dtype=torch.float16, num_components=1, generator=gen)
    check(batch, dv=80, prefill_config=SMALL_PREFILL,
          decode_config=DecodeConfig(block_n=16, num_splits=2, num_warps=4, num_stages=1))


@pytest.mark.parametrize("head_dim,dv", [(8, None), (24, 16)])
def test_head_dims_below_the_smallest_dot_tile(head_dim, dv):
    # tiny test models: 8-wide heads (hidden 48, 6 heads) and MLA's 24/16; tl.dot needs 16-wide tiles on the GPU,
    # so the kernels pad the head tile to 16 and mask the channels beyond the head
    gen = torch.Generator().manual_seed(head_dim)
    batch = make_paged_batch([1, 1, 7], [9, 30, 20], num_heads=6, num_kv_heads=3 if dv is None else 6,
                             head_dim=head_dim, block_size=16, dtype=torch.float32, generator=gen,
                             num_components=2 if dv is None else 1)
    check(batch, dv=dv, tol=1e-5)


def test_strided_query_view_is_read_correctly():
    gen = torch.Generator().manual_seed(5)
    batch = make_paged_batch([1, 6], [9, 6], num_heads=4, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32, generator=gen)
    fused = torch.randn(batch.q.shape[0], 4, 3 * 64, generator=gen)  # q lives inside a wider projection
    fused[:, :, 64:128] = batch.q
    batch.q = fused[:, :, 64:128]
    check(batch, tol=1e-5)


def test_rejects_head_count_not_multiple_of_kv_heads():
    batch = make_paged_batch([1], [4], num_heads=3, num_kv_heads=2, head_dim=64, block_size=16,
                             dtype=torch.float32)
    with pytest.raises(ValueError, match="multiple"):
        paged_attention(batch.q, batch.kv_cache, batch.meta, 0.125)
