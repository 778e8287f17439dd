"""Triton store_kv against the torch twin, under the interpreter."""

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.store_kv import store_kv


@pytest.mark.parametrize("num_kv_heads,head_dim,block_size", [(1, 64, 16), (2, 128, 32), (3, 96, 16)])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_matches_twin_and_skips_padding(num_kv_heads, head_dim, block_size, dtype):
    gen = torch.Generator().manual_seed(head_dim + block_size)
    num_blocks, num_tokens = 6, 11
    k = torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen).to(dtype)
    v = torch.randn(num_tokens, num_kv_heads, head_dim, generator=gen).to(dtype)
    slots = torch.randperm(num_blocks * block_size, generator=gen)[:num_tokens]
    slots[[2, 7]] = -1  # padding tokens
    cache = torch.randn(2, num_blocks, block_size, num_kv_heads, head_dim, generator=gen).to(dtype)
    expected = cache.clone()
    store_kv(k, v, cache, slots)
    reference.store_kv(k, v, expected, slots)
    assert torch.equal(cache, expected)


def test_strided_inputs_and_single_component_cache():
    # k as a view into a fused projection; MLA-style cache (K = 1) takes no value tensor
    gen = torch.Generator().manual_seed(0)
    fused = torch.randn(5, 2, 3 * 64, generator=gen)
    k = fused[:, :, 64:128]
    cache = torch.zeros(1, 4, 16, 2, 64)
    expected = cache.clone()
    slots = torch.tensor([0, 17, 33, -1, 63])
    store_kv(k, None, cache, slots)
    reference.store_kv(k, None, expected, slots)
    assert torch.equal(cache, expected)
    assert cache.abs().sum() > 0


def test_converts_to_cache_dtype():
    gen = torch.Generator().manual_seed(1)
    k = torch.randn(3, 1, 64, generator=gen)
    v = torch.randn(3, 1, 64, generator=gen)
    cache = torch.zeros(2, 2, 16, 1, 64, dtype=torch.float16)
    store_kv(k, v, cache, torch.tensor([1, 2, 20]))
    assert torch.equal(cache[0, 1, 4, 0], k[2, 0].half())
    assert torch.equal(cache[1, 0, 1, 0], v[0, 0].half())


def test_value_tensor_needs_two_components():
    with pytest.raises(ValueError, match="component"):
        store_kv(torch.randn(1, 1, 64), torch.randn(1, 1, 64), torch.zeros(1, 2, 16, 1, 64), torch.tensor([0]))
