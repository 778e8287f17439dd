"""The fused MoE epilogue (issue 15) in the Triton interpreter on CPU: silu-and-mul inside the second grouped GEMM,
silu-and-mul + FP8 group quantization in one kernel, the top-k sum with the shared experts' output added — each
against the separate passes it replaces (the same values) and against the torch twins.
Interpreter caveats: it truncates fp32 -> bf16 instead of rounding (so bf16 results are compared with the twins
within one bf16 step, and bit for bit only against other Triton kernels), and its fp32 -> fp8 cast is wrong (triton
issue 8322: the quantizer is asked for float32 output)."""

import pytest
import torch

from vdeploy_kernels import reference_deepseek as ref

pytest.importorskip("triton")

DTYPES = [torch.float32, torch.bfloat16]


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _sequential_sum(y, k):  # [T*k, H] -> fp32 [T, H]: slot 0 + slot 1 + ... in fp32, the kernel's order
    rows = y.view(-1, k, y.shape[1]).float()
    acc = rows[:, 0].clone()
    for j in range(1, k):
        acc += rows[:, j]
    return acc


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_shared", [False, True])
@pytest.mark.parametrize("t,k,hidden", [(1, 6, 40), (5, 1, 64), (9, 3, 1100)])  # T=1; k=1; two column blocks
def test_moe_sum_matches_twin(dtype, with_shared, t, k, hidden):
    from vdeploy_kernels.moe_epilogue import moe_sum

    gen = torch.Generator().manual_seed(t * k)
    y = torch.randn(t * k, hidden, generator=gen).to(dtype)  # [T*k, H]
    shared = torch.randn(t, hidden, generator=gen).to(dtype) if with_shared else None  # [T, H]
    out = moe_sum(y, k, shared)
    assert out.shape == (t, hidden) and out.dtype == dtype
    twin = ref.moe_sum(y, k, shared)
    if dtype == torch.float32:  # the same fp32 sum in the same order: exact
        expected = _sequential_sum(y, k) + (shared if with_shared else 0)
        assert torch.equal(out, expected)
        torch.testing.assert_close(out, twin, rtol=1e-6, atol=1e-6)
    else:  # the interpreter truncates each of the two roundings: up to a bf16 step of the largest term apart
        step = 2**-7 * max(y.float().abs().max().item() * k, 1.0)
        torch.testing.assert_close(out.float(), twin.float(), rtol=0, atol=2 * step)


def test_moe_sum_reads_a_strided_shared_output():
    from vdeploy_kernels.moe_epilogue import moe_sum

    y = torch.randn(6, 32)
    wide = torch.randn(3, 64)
    shared = wide[:, 16:48]  # row stride 64: the kernel reads it in place
    assert torch.equal(moe_sum(y, 2, shared), _sequential_sum(y, 2) + shared)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,inter,strided", [(1, 128, False), (7, 300, False), (45, 256, True)])
def test_silu_and_mul_quant_equals_the_two_kernels(dtype, m, inter, strided):
    """The fused kernel against activation.silu_and_mul + per_token_group_quant_fp8 (both Triton): the same scales
    and values, bit for bit (rows past M, a partial last group, a row stride wider than 2I)."""
    from vdeploy_kernels.activation import silu_and_mul
    from vdeploy_kernels.fp8_gemm import per_token_group_quant_fp8
    from vdeploy_kernels.moe_epilogue import silu_and_mul_quant_fp8

    gen = torch.Generator().manual_seed(m)
    h = (3 * torch.randn(m, 2 * inter + (64 if strided else 0), generator=gen)).to(dtype)[:, : 2 * inter]
    q, s = silu_and_mul_quant_fp8(h, 128, out_dtype=torch.float32)
    q2, s2 = per_token_group_quant_fp8(silu_and_mul(h), 128, out_dtype=torch.float32)
    assert q.shape == (m, inter) and s.shape == (m, -(-inter // 128))
    assert torch.equal(s, s2) and torch.equal(q, q2)
    # and the twin (torch: silu, rounding, quantization), the values dequantized: within the activation's rounding
    # plus e4m3's step (q is compared before the fp8 cast, which adds its own 2^-4 relative step)
    q_ref, s_ref = ref.silu_and_mul_quant(h, 128)
    torch.testing.assert_close(s, s_ref, rtol=2**-7, atol=0)
    deq = q * s.repeat_interleave(128, 1)[:, :inter]
    deq_ref = q_ref.float() * s_ref.repeat_interleave(128, 1)[:, :inter]
    assert rel_err(deq, deq_ref) < 0.04


def _routing(t, e, k, seed, hot=None):
    """k distinct experts per token; hot: only experts [0, hot) are used (the rest stay empty)."""
    gen = torch.Generator().manual_seed(seed)
    pool = hot or e
    ids = torch.stack([torch.randperm(pool, generator=gen)[:k] for _ in range(t)])
    return ids, torch.rand(t, k, generator=gen)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_shared", [False, True])
@pytest.mark.parametrize("t,e,k,hot", [(1, 8, 2, None), (13, 8, 3, 4), (40, 4, 4, None)])
def test_fused_moe_matches_unfused_path_and_twin(dtype, with_shared, t, e, k, hot, monkeypatch,
                                                 interpreter_bf16_dot):
    """The whole fused MoE (16/32-bit) against the separate passes (fuse_epilogue=False, with the Triton silu so
    both see the same activation) and against the expert loop plus the shared output. T = 1 leaves 6 of 8 experts
    empty; hot=4 leaves half of them empty and pads the others' runs."""
    from vdeploy_kernels import fused_moe as fm
    from vdeploy_kernels.activation import silu_and_mul

    gen = torch.Generator().manual_seed(t)
    x = torch.randn(t, 64, generator=gen).to(dtype)
    w13 = (0.1 * torch.randn(e, 96, 64, generator=gen)).to(dtype)
    w2 = (0.1 * torch.randn(e, 64, 48, generator=gen)).to(dtype)
    shared = torch.randn(t, 64, generator=gen).to(dtype) if with_shared else None
    ids, weights = _routing(t, e, k, t, hot)
    out = fm.fused_moe(x, w13, w2, ids, weights, shared_output=shared)
    assert out.shape == (t, 64) and out.dtype == dtype
    twin = ref.moe_loop(x, w13, w2, ids, weights)
    twin = twin if shared is None else (twin.float() + shared.float()).to(dtype)
    assert rel_err(out, twin) < (1e-5 if dtype == torch.float32 else 2e-2)
    monkeypatch.setattr(fm, "_silu_and_mul", silu_and_mul)  # the Triton kernel, as on CUDA (CPU: the torch twin)
    unfused = fm.fused_moe(x, w13, w2, ids, weights, shared_output=shared, fuse_epilogue=False)
    if dtype == torch.float32:
        # identical routed rows; the top-k sum may add in another order than torch's CPU reduction
        torch.testing.assert_close(out, unfused, rtol=1e-6, atol=1e-6)
    else:  # the interpreter truncates the kernel's two bf16 roundings, torch rounds to nearest: a step or two apart
        step = 2**-7 * unfused.float().abs().max().item()
        torch.testing.assert_close(out.float(), unfused.float(), rtol=0, atol=2 * step)


@pytest.mark.parametrize("with_shared", [False, True])
def test_fused_moe_fp8_with_shared_output_matches_twin(with_shared):
    """Block-FP8 weights on CPU: the activation goes through the torch twins (interpreter fp8 cast), composed as
    the fused kernel computes; fused and unfused epilogues agree, and both are near the dequantized expert loop."""
    from vdeploy_kernels.fused_moe import fused_moe

    torch.manual_seed(0)
    t, e, k, h, i = 9, 4, 2, 256, 128
    x = torch.randn(t, h)
    q13, s13 = map(torch.stack, zip(*(ref.quantize_weight_block(torch.randn(2 * i, h) * 0.1) for _ in range(e))))
    q2, s2 = map(torch.stack, zip(*(ref.quantize_weight_block(torch.randn(h, i) * 0.1) for _ in range(e))))
    ids, weights = _routing(t, e, k, 1)
    shared = torch.randn(t, h) if with_shared else None
    out = fused_moe(x, q13, q2, ids, weights, s13, s2, shared_output=shared)
    unfused = fused_moe(x, q13, q2, ids, weights, s13, s2, shared_output=shared, fuse_epilogue=False)
    torch.testing.assert_close(out, unfused, rtol=1e-6, atol=1e-6)
    dense13 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q13, s13)])
    dense2 = torch.stack([ref.dequantize_weight_block(a, b) for a, b in zip(q2, s2)])
    twin = ref.moe_loop(x, dense13, dense2, ids, weights) + (shared if with_shared else 0)
    assert rel_err(out, twin) < 0.06


def test_ops_fused_moe_cpu_adds_the_shared_output():
    """The CPU dispatch (the twin) adds shared_output as the model did before: routed (rounded) + shared."""
    from vdeploy.layers import ops

    torch.manual_seed(1)
    t, e, k = 5, 4, 2
    x = torch.randn(t, 32).bfloat16()
    w13, w2 = (torch.randn(e, 48, 32) * 0.1).bfloat16(), (torch.randn(e, 32, 24) * 0.1).bfloat16()
    ids, weights = _routing(t, e, k, 2)
    shared = torch.randn(t, 32).bfloat16()
    routed = ops.fused_moe(x, w13, w2, ids, weights)
    assert torch.equal(ops.fused_moe(x, w13, w2, ids, weights, shared_output=shared), routed + shared)
