"""The expanded-MLA prefill kernel against its torch twin: in the Triton interpreter on CPU (tiny shapes), and on
the GPU at V2-Lite / R1 head counts with every launch path (pointer loads, TMA)."""

import pytest
import torch

from vdeploy_kernels import reference_deepseek as ref

pytest.importorskip("triton")


def rel_err(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def make_case(q_lens, seq_lens, heads, nope, rope, v_dim, device="cpu", dtype=torch.float32, seed=0):
    """Inputs laid out as the MLA layer has them: q a view of the projection output, kv_b_proj's output, and
    k_rope a column view of the gathered latents [S, L + R]."""
    gen = torch.Generator(device=device).manual_seed(seed)
    t, s = sum(q_lens), sum(seq_lens)
    q = torch.randn(t, heads, nope + rope, device=device, generator=gen).to(dtype)
    kv = torch.randn(s, heads, nope + v_dim, device=device, generator=gen).to(dtype)
    latents = torch.randn(s, 32 + rope, device=device, generator=gen).to(dtype)  # c_kv (L = 32 here) ‖ k_rope
    qsl = torch.tensor([0, *torch.tensor(q_lens).cumsum(0).tolist()], dtype=torch.int32, device=device)
    lens = torch.tensor(seq_lens, dtype=torch.int32, device=device)
    return q, kv, latents[:, 32:], qsl, lens


# (q_lens, seq_lens): fresh prompts, an extend over a cached prefix, a one-token extend, lengths off the tile grid
CASES = [([9, 6], [9, 27]), ([1, 40, 17], [1, 40, 50]), ([33], [33])]


@pytest.mark.parametrize("q_lens,seq_lens", CASES)
@pytest.mark.parametrize("dims", [(32, 16, 32), (16, 8, 16), (24, 8, 16)])  # (Dn, R, Dv): tiny V3 is 16 / 8 / 16
def test_mla_prefill_matches_twin(q_lens, seq_lens, dims):
    from vdeploy_kernels.mla_prefill_attention import mla_prefill_attention

    nope, rope, v_dim = dims
    q, kv, k_rope, qsl, lens = make_case(q_lens, seq_lens, 3, nope, rope, v_dim)
    out = mla_prefill_attention(q, kv, k_rope, qsl, lens, max(q_lens), 0.2, nope)
    assert out.shape == (sum(q_lens), 3, v_dim)
    assert rel_err(out, ref.mla_prefill_attention(q, kv, k_rope, qsl, lens, max(q_lens), 0.2, nope)) < 1e-5


def test_mla_prefill_reads_strided_query_rows():
    """The layer hands over q[split:] of a [T, H, Dn + R] projection: rows at an offset, heads strided."""
    from vdeploy_kernels.mla_prefill_attention import MLAPrefillConfig, mla_prefill_attention

    q, kv, k_rope, qsl, lens = make_case([5, 12], [20, 12], 2, 16, 16, 16, seed=3)
    padded = torch.randn(q.shape[0] + 4, 2, 48)
    padded[4:, :, :32] = q
    view = padded[4:, :, :32]
    cfg = MLAPrefillConfig(16, 16, 4, 1)
    out = mla_prefill_attention(view, kv, k_rope, qsl, lens, 12, 0.3, 16, config=cfg)
    assert rel_err(out, ref.mla_prefill_attention(q, kv, k_rope, qsl, lens, 12, 0.3, 16)) < 1e-5


@pytest.mark.parametrize("q_lens,seq_lens", CASES)
def test_mla_prefill_tma_path_in_the_interpreter(q_lens, seq_lens, monkeypatch):
    """The descriptor path (tiles past a context belong to the next one, or lie past the end: masked / zeroed)."""
    from vdeploy_kernels import mla_prefill_attention as kernel

    monkeypatch.setattr(kernel, "_tma_ok", lambda *args: True)  # the real check asks for a CUDA tensor
    q, kv, k_rope, qsl, lens = make_case(q_lens, seq_lens, 2, 16, 16, 16, seed=7)
    cfg = kernel.MLAPrefillConfig(16, 16, 4, 1, tma=True)
    out = kernel.mla_prefill_attention(q, kv, k_rope, qsl, lens, max(q_lens), 0.2, 16, config=cfg)
    assert rel_err(out, ref.mla_prefill_attention(q, kv, k_rope, qsl, lens, max(q_lens), 0.2, 16)) < 1e-5


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@cuda
@pytest.mark.parametrize("heads", [16, 128])  # V2-Lite, R1 (TP 1)
@pytest.mark.parametrize("tma", [False, True])
def test_mla_prefill_real_shapes_on_gpu(heads, tma):
    from vdeploy_kernels.mla_prefill_attention import MLAPrefillConfig, mla_prefill_attention

    q_lens, seq_lens = [1000, 37, 512], [1000, 700, 2048]
    q, kv, k_rope, qsl, lens = make_case(q_lens, seq_lens, heads, 128, 64, 128, "cuda", torch.bfloat16)
    want = ref.mla_prefill_attention(q, kv, k_rope, qsl, lens, 1000, 0.1, 128)
    # the heuristic, and configs that fit 227 KB of shared memory (the H100 sweep; 128 x 64 pointer loads do not)
    configs = [MLAPrefillConfig(128, 64, 8, 3, True), MLAPrefillConfig(128, 128, 8, 2, True)] if tma else \
        [MLAPrefillConfig(128, 32, 8, 3), MLAPrefillConfig(128, 64, 8, 2)]
    for cfg in [None, *configs]:
        out = mla_prefill_attention(q, kv, k_rope, qsl, lens, 1000, 0.1, 128, config=cfg)
        assert rel_err(out, want) < 2e-2, cfg


@cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_mla_prefill_tiny_dims_on_gpu(dtype):
    """The tiny DeepSeek-V3's dims (keys 16 + 8, values 16), where the kernel this one replaced crashed in bf16."""
    from vdeploy_kernels.mla_prefill_attention import mla_prefill_attention

    q, kv, k_rope, qsl, lens = make_case([37, 3, 4], [37, 3, 9], 4, 16, 8, 16, "cuda", dtype)
    out = mla_prefill_attention(q, kv, k_rope, qsl, lens, 37, 0.25, 16)
    tol = 2e-2  # float32 dots run as TF32 on the tensor cores
    assert rel_err(out, ref.mla_prefill_attention(q, kv, k_rope, qsl, lens, 37, 0.25, 16)) < tol
