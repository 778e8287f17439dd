"""Triton rope_store_kv (rotary fused with the KV-cache store) under the interpreter: against the composition of the
twins (reference.rope_store_kv = reference.rotary + reference.store_kv), and bit for bit against the two Triton
kernels it replaces (rotary.py then store_kv.py), which is what keeps the engine's tokens unchanged on a GPU.

The interpreter truncates fp32 -> bf16 instead of rounding, so bf16 results sit one bf16 step from the twin (the
same step the rotary kernel's test allows); the comparison with the two kernels is exact in every dtype. fp8 caches
are compared with the two kernels only (the interpreter's fp32 -> fp8 cast is wrong; both kernels share it):
benchmarks/kernels/rope_store_check.py compares the bytes on the GPU.
"""

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.rope_store_kv import rope_store_kv
from vdeploy_kernels.rotary import rotary
from vdeploy_kernels.store_kv import store_kv

TOL = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}  # one rounding of the output dtype


def make_inputs(num_heads, num_kv_heads, head_dim, rot_dim, dtype, page_size, seed, tokens=9):
    """q, k, v as views into one fused [T, (H + 2 Hk) D] projection (as the model has them), a cos/sin cache, slots
    (two padding rows), positions, and a random cache (so untouched entries are checked too)."""
    gen = torch.Generator().manual_seed(seed)
    num_blocks = -(-2 * tokens // page_size)  # twice the slots needed: some entries stay untouched
    h, hk, d = num_heads, num_kv_heads, head_dim
    qkv = torch.randn(tokens, (h + 2 * hk) * d, generator=gen).to(dtype)
    q = qkv[:, : h * d].view(tokens, h, d)
    k = qkv[:, h * d : (h + hk) * d].view(tokens, hk, d)
    v = qkv[:, (h + hk) * d :].view(tokens, hk, d)
    max_pos = 64
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2).float() / rot_dim))
    angles = torch.outer(torch.arange(max_pos).float(), inv_freq)
    cos_sin = torch.cat((angles.cos(), angles.sin()), dim=-1)  # [max_pos, Dr]
    positions = torch.randint(0, max_pos, (tokens,), generator=gen)
    positions[0] = 0  # the identity rotation
    slots = torch.randperm(num_blocks * page_size, generator=gen)[:tokens]
    slots[[2, 5]] = -1  # padding rows
    cache = torch.randn(2, num_blocks, page_size, hk, d, generator=gen).to(dtype)
    return q, k, v, positions, cos_sin, slots, cache


def close(out, ref, dtype):
    assert out.dtype == ref.dtype and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref.float(), rtol=TOL[dtype], atol=TOL[dtype])


def check_against_twin(q, k, v, positions, cos_sin, slots, cache, dtype, interleaved):
    expected = cache.clone()
    q_out, k_out = rope_store_kv(q, k, v, positions, cos_sin, cache, slots, interleaved=interleaved, return_k=True)
    q_ref, k_ref = reference.rope_store_kv(q, k, v, positions, cos_sin, expected, slots, interleaved=interleaved,
                                           return_k=True)
    close(q_out, q_ref, dtype)
    close(k_out, k_ref, dtype)
    assert q_out.is_contiguous() and k_out.is_contiguous()
    close(cache, expected, dtype)
    # v and the padding rows' untouched entries are copies, exact in every dtype
    flat, flat_ref = cache.flatten(1, 2), expected.flatten(1, 2)  # [2, NB * BS, Hk, D]
    assert torch.equal(flat[1], flat_ref[1])
    written = torch.zeros(flat.shape[1], dtype=torch.bool)
    written[slots[slots >= 0]] = True
    assert torch.equal(flat[0, ~written], flat_ref[0, ~written])
    assert torch.equal(q_out[0], q[0]) and torch.equal(k_out[0], k[0])  # position 0


@pytest.mark.parametrize("interleaved", [False, True], ids=["neox", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_heads,num_kv_heads", [(8, 2), (12, 3), (3, 3)])  # GQA; 12: a partial head block
@pytest.mark.parametrize("page_size", [16, 1])
def test_matches_twin_composition(interleaved, dtype, num_heads, num_kv_heads, page_size):
    inputs = make_inputs(num_heads, num_kv_heads, 32, 32, dtype, page_size, seed=num_heads * 10 + page_size)
    check_against_twin(*inputs, dtype, interleaved)


@pytest.mark.parametrize("interleaved", [False, True], ids=["neox", "interleaved"])
@pytest.mark.parametrize("head_dim,rot_dim", [(64, 32), (48, 16), (24, 24)])  # partial rotary; non-pow2 dims
def test_partial_rotary_and_odd_dims(interleaved, head_dim, rot_dim):
    inputs = make_inputs(4, 2, head_dim, rot_dim, torch.float32, 16, seed=head_dim + rot_dim)
    check_against_twin(*inputs, torch.float32, interleaved)
    q, k, v, positions, cos_sin, slots, cache = inputs
    q_out, _ = rope_store_kv(q, k, v, positions, cos_sin, cache.clone(), slots, interleaved=interleaved)
    assert torch.equal(q_out[..., rot_dim:], q[..., rot_dim:])  # the tail passes through


@pytest.mark.parametrize("cache_dtype", [None, torch.float8_e4m3fn])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("interleaved", [False, True], ids=["neox", "interleaved"])
def test_bit_identical_to_rotary_then_store_kv(interleaved, dtype, cache_dtype):
    q, k, v, positions, cos_sin, slots, cache = make_inputs(8, 2, 64, 64, dtype, 16, seed=3)
    if cache_dtype is not None:
        cache = torch.zeros(cache.shape, dtype=cache_dtype)
    two_kernels = cache.clone()
    q_out, k_out = rope_store_kv(q, k, v, positions, cos_sin, cache, slots, 0.05, 0.02, interleaved, return_k=True)
    q_ref, k_ref = rotary(q, k, positions, cos_sin, interleaved)
    store_kv(k_ref, v, two_kernels, slots, 0.05, 0.02)
    assert torch.equal(q_out, q_ref) and torch.equal(k_out, k_ref)
    assert torch.equal(cache.view(torch.uint8), two_kernels.view(torch.uint8))


def test_keys_kept_only_when_asked_and_empty_batch():
    q, k, v, positions, cos_sin, slots, cache = make_inputs(4, 2, 32, 32, torch.float32, 16, seed=5)
    expected = cache.clone()
    q_out, k_out = rope_store_kv(q, k, v, positions, cos_sin, cache, slots)
    assert k_out is None
    q_ref, _ = reference.rope_store_kv(q, k, v, positions, cos_sin, expected, slots)
    close(q_out, q_ref, torch.float32)
    close(cache, expected, torch.float32)
    q_out, k_out = rope_store_kv(q[:0], k[:0], v[:0], positions[:0], cos_sin, cache, slots[:0], return_k=True)
    assert q_out.shape == (0, 4, 32) and k_out.shape == (0, 2, 32)


def test_rejects_mismatched_shapes():
    q, k, v, positions, cos_sin, slots, cache = make_inputs(4, 2, 32, 32, torch.float32, 16, seed=6)
    with pytest.raises(ValueError, match="rotary dim"):
        rope_store_kv(q, k, v, positions, torch.zeros(64, 34), cache, slots)
    with pytest.raises(ValueError, match="2 components"):
        rope_store_kv(q, k, v, positions, cos_sin, cache[:1], slots)
    with pytest.raises(ValueError, match="disagree"):
        rope_store_kv(q, k, v[..., :16], positions, cos_sin, cache, slots)
