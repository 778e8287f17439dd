"""The W8A8 Triton GEMM (per-token activation quantization fused into the tile loads) against its torch twin under
the interpreter: INT8 and FP8 weights, fp16 / fp32 activations (bf16: on the GPU, see test_kernel_w4a16), ragged
M / N / K edges and every tile configuration the heuristic picks."""

import pytest
import torch

from vdeploy_kernels import reference_quant as ref
from vdeploy_kernels.w8a8_gemm import w8a8_matmul

SMALL = dict(block_m=16, block_n=32, block_k=64, num_warps=4, num_stages=1)


def _activations(m, k, kind, dtype, gen):
    if kind == "int":
        return torch.randn(m, k, generator=gen).to(dtype)
    # FP8: the interpreter converts fp32 -> e4m3 with its own rounding, so use activations whose quantized values
    # are exact: e4m3 values with each row's amax at 448, times a power-of-two scale (x / scale is then exact)
    q = (torch.randn(m, k, generator=gen) * 100).clamp(-440, 440).to(torch.float8_e4m3fn).float()
    q[:, 0] = 448.0
    return (q * 2.0**-6).to(dtype)


@pytest.mark.parametrize("kind", ["int", "float"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("m,n,k,cfg", [(1, 64, 256, None), (5, 72, 200, SMALL), (40, 96, 128, None),
                                       (130, 48, 96, SMALL)])
def test_w8a8_matches_twin(kind, dtype, m, n, k, cfg):
    gen = torch.Generator().manual_seed(m + n + k)
    x = _activations(m, k, kind, dtype, gen)
    if kind == "int":
        w = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    else:
        w = torch.randn(n, k, generator=gen).to(torch.float8_e4m3fn)
    scale = torch.rand(n, generator=gen) * 0.01 + 1e-3
    out = w8a8_matmul(x, w, scale, config=cfg)
    want = ref.w8a8_matmul(x, w, scale)
    assert out.dtype == dtype and out.shape == (m, n)
    tol = 2e-3 if dtype == torch.float16 else 1e-5
    torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)


def test_twin_quantizes_per_token_with_the_documented_rounding():
    x = torch.tensor([[127.0, 0.5, -0.5, 1.49], [2.0, -4.0, 1.0, 0.0]])
    q, s = ref.quantize_per_token(x, torch.int8)
    assert torch.equal(s, torch.tensor([1.0, 4.0 / 127]))
    assert q[0].tolist() == [127, 1, 0, 1]  # half up: 0.5 -> 1, -0.5 -> 0
    assert q[1].tolist() == [64, -127, 32, 0]


@pytest.mark.parametrize("m,n,k", [(80, 48, 64), (130, 96, 2048)])
def test_fp8_prefill_path_quantizes_once_then_library_gemm(m, n, k):
    """The FP8 prefill path (Hopper picks it for M > 64): x quantized once by _row_scale_kernel, then torch's
    _scaled_mm with row-wise scales; CPU torch runs the library GEMM, so the whole path is checked here against the
    twin (exact-rounding activations, as above). INT8 keeps the Triton kernel whatever the config says."""
    gen = torch.Generator().manual_seed(m + k)
    x = _activations(m, k, "float", torch.bfloat16, gen)
    w = torch.randn(n, k, generator=gen).to(torch.float8_e4m3fn)
    scale = torch.rand(n, generator=gen) * 0.01 + 1e-3
    try:
        out = w8a8_matmul(x, w, scale, config={"backend": "cublas"})
    except (RuntimeError, NotImplementedError) as e:  # a CPU torch without the FP8 library GEMM
        pytest.skip(f"torch._scaled_mm on this CPU build: {e}")
    want = ref.w8a8_matmul(x, w, scale)
    assert out.dtype == torch.bfloat16 and out.shape == (m, n)
    torch.testing.assert_close(out.float(), want.float(), atol=1.6e-2, rtol=1.6e-2)
    x_int = _activations(m, k, "int", torch.bfloat16, gen)
    w_int = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    torch.testing.assert_close(w8a8_matmul(x_int, w_int, scale, config={"backend": "cublas"}).float(),
                               ref.w8a8_matmul(x_int, w_int, scale).float(), atol=1.6e-2, rtol=1.6e-2)
