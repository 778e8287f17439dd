"""Triton rms_norm (with fused residual), silu_and_mul and rotary against their torch twins, under the
interpreter."""

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.activation import silu_and_mul
from vdeploy_kernels.norms import rms_norm
from vdeploy_kernels.rotary import rotary

DTYPES = [torch.float16, torch.bfloat16, torch.float32]


def close(out, ref, dtype):
    # one rounding step of the output dtype apart at most
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}[dtype]
    assert out.dtype == ref.dtype and out.shape == ref.shape
    torch.testing.assert_close(out.float(), ref.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden", [64, 96, 1000])
def test_rms_norm_matches_twin(dtype, hidden):
    gen = torch.Generator().manual_seed(hidden)
    x = torch.randn(5, hidden, generator=gen).to(dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(dtype)
    close(rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_fused_residual_matches_twin_and_keeps_inputs(dtype):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 128, generator=gen).to(dtype)
    res = torch.randn(6, 128, generator=gen).to(dtype)
    w = torch.randn(128, generator=gen).to(dtype)
    x0, res0 = x.clone(), res.clone()
    normed, new_res = rms_norm(x, w, 1e-5, res)
    ref_normed, ref_res = reference.rms_norm(x, w, 1e-5, res)
    if dtype == torch.bfloat16:  # the interpreter truncates fp32 -> bf16 instead of rounding to nearest
        close(new_res, ref_res, dtype)
    else:  # the sum is rounded once, exactly like the twin
        assert torch.equal(new_res, ref_res)
    close(normed, ref_normed, dtype)
    assert torch.equal(x, x0) and torch.equal(res, res0)


def test_rms_norm_strided_rows():
    gen = torch.Generator().manual_seed(8)
    big = torch.randn(4, 256, generator=gen)
    x = big[:, :128]  # row stride 256
    w = torch.randn(128, generator=gen)
    close(rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6), torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inter", [64, 100, 1500])
def test_silu_and_mul_matches_twin(dtype, inter):
    gen = torch.Generator().manual_seed(inter)
    x = (3 * torch.randn(4, 2 * inter, generator=gen)).to(dtype)
    close(silu_and_mul(x), reference.silu_and_mul(x), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_heads,num_kv_heads,rot_dim", [(4, 4, 64), (8, 2, 128), (6, 1, 32)])
def test_rotary_matches_twin(dtype, num_heads, num_kv_heads, rot_dim):
    gen = torch.Generator().manual_seed(num_heads * rot_dim)
    tokens, max_pos = 7, 50
    inv_freq = 1.0 / (10000 ** (torch.arange(0, rot_dim, 2).float() / rot_dim))
    freqs = torch.outer(torch.arange(max_pos).float(), inv_freq)
    cache = torch.cat((freqs.cos(), freqs.sin()), dim=-1)  # [max_pos, Dr]
    q = torch.randn(tokens, num_heads, rot_dim, generator=gen).to(dtype)
    k = torch.randn(tokens, num_kv_heads, rot_dim, generator=gen).to(dtype)
    positions = torch.randint(0, max_pos, (tokens,), generator=gen)
    q_out, k_out = rotary(q, k, positions, cache)
    q_ref, k_ref = reference.rotary(q, k, positions, cache)
    close(q_out, q_ref, dtype)
    close(k_out, k_ref, dtype)


def test_rotary_reads_strided_views_of_a_fused_projection():
    gen = torch.Generator().manual_seed(9)
    qkv = torch.randn(5, 4 * 64 + 2 * 2 * 64, generator=gen)
    q = qkv[:, : 4 * 64].view(5, 4, 64)
    k = qkv[:, 4 * 64 : 6 * 64].view(5, 2, 64)
    cache = torch.randn(20, 64, generator=gen)
    positions = torch.tensor([0, 3, 19, 7, 7])
    q_out, k_out = rotary(q, k, positions, cache)
    q_ref, k_ref = reference.rotary(q, k, positions, cache)
    close(q_out, q_ref, torch.float32)
    close(k_out, k_ref, torch.float32)


@pytest.mark.parametrize("dtype", DTYPES)
def test_interleaved_rotary_on_mla_views_matches_complex_rotation(dtype):
    """DeepSeek's rope (interleaved pairs) read in place from MLA's projections — q_rope is the tail of each head of
    q [T, H, Dn + R], k_rope the tail of the latent [T, L + R] — against the kernel's twin and against the
    published form: each pair (x[2i], x[2i+1]) as a complex number times e^(i·angle_i)."""
    gen = torch.Generator().manual_seed(11)
    tokens, heads, nope, rope, lora, max_pos = 5, 4, 16, 8, 32, 40
    q = torch.randn(tokens, heads, nope + rope, generator=gen).to(dtype)
    latent = torch.randn(tokens, lora + rope, generator=gen).to(dtype)
    q_rope, k_rope = q[..., nope:], latent[:, lora:].reshape(tokens, 1, rope)  # strided views
    angles = torch.outer(torch.arange(max_pos).float(), 1.0 / (10000 ** (torch.arange(0, rope, 2).float() / rope)))
    cache = torch.cat((angles.cos(), angles.sin()), dim=-1)  # [max_pos, R]
    positions = torch.randint(0, max_pos, (tokens,), generator=gen)
    q_out, k_out = rotary(q_rope, k_rope, positions, cache, interleaved=True)
    q_ref, k_ref = reference.rotary(q_rope, k_rope, positions, cache, interleaved=True)
    close(q_out, q_ref, dtype)
    close(k_out, k_ref, dtype)
    turn = torch.polar(torch.ones_like(angles), angles)[positions][:, None, :]  # [T, 1, R/2]

    def published(x):
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # [T, H, R/2]
        return torch.view_as_real(pairs * turn).flatten(-2).to(dtype)

    close(q_out, published(q_rope), dtype)
    close(k_out, published(k_rope), dtype)
