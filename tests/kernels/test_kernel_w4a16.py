"""The W4A16 Triton GEMM against its torch twin under the interpreter: uniform groups (one scale row per K tile),
groups smaller than a tile, act-order g_idx (gather), a K split, ragged M / N / K edges, fp16 / fp32 (bf16:
on the GPU). The explicit configs here are the dequantizing kernel's; the factored decode kernel (the default for
1-2 rows) has its own tests in test_kernel_w4a16_factored."""

import pytest
import torch

from int4_testlib import random_int4_weights
from vdeploy_kernels import reference_quant as ref
from vdeploy_kernels.w4a16_gemm import legacy_w4a16_config, w4a16_config, w4a16_matmul


def test_pack_unpack_roundtrip_and_nibble_order():
    values = torch.arange(16).repeat(2).reshape(32, 1) % 16  # rows 0..15, 0..15
    packed = ref.pack_int4_rows(values)
    assert packed.shape == (4, 1)
    assert int(packed[0, 0]) == 0x76543210 and int(packed[1, 0]) == (0xFEDCBA98 - 2**32)
    assert torch.equal(ref.unpack_int4_rows(packed), values)


# bf16 is left to the GPU check (benchmarks/kernels/quant_gemm_check.py): Triton 3.9's interpreter returns garbage
# for tl.dot on bf16 operands (a bare 16x16 bf16 dot is off by ~1e10), so it cannot judge the kernel there
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("m,n,k,group,gather,cfg", [
    (1, 64, 256, 128, False, None),  # decode: uniform groups, K split
    (5, 96, 192, 64, False, None),  # N not a multiple of the tile
    (33, 64, 128, 32, False, None),  # groups smaller than the default K tile: tile shrinks to one group
    (3, 64, 256, 128, True, None),  # act-order rows: g_idx gathered per row
    (20, 40, 136, 8, False, dict(block_m=16, block_n=32, block_k=32, split_k=3, num_warps=4, num_stages=1)),
    (3, 64, 256, 128, False, dict(block_m=2, block_n=32, block_k=64, split_k=2, num_warps=4, num_stages=1,
                                  dot=False)),  # decode without the tensor-core dot
    (1, 64, 256, 128, True, dict(block_m=1, block_n=64, block_k=128, split_k=1, num_warps=4, num_stages=1,
                                 dot=False)),
    (5, 96, 192, 64, False, dict(block_m=16, block_n=32, block_k=64, split_k=2, num_warps=4, num_stages=1,
                                 unpack3d=True)),  # each packed word loaded once, expanded in registers
    (2, 64, 256, 128, True, dict(block_m=2, block_n=64, block_k=128, split_k=1, num_warps=4, num_stages=1,
                                 unpack3d=True, dot=False)),
])
def test_w4a16_matches_twin(dtype, m, n, k, group, gather, cfg):
    gen = torch.Generator().manual_seed(m * 1000 + k)
    qweight, scales, zeros, g_idx = random_int4_weights(k, n, group, gen, shuffled=gather)
    x = torch.randn(m, k, generator=gen).to(dtype)
    out = w4a16_matmul(x, qweight, scales, zeros, g_idx, 0 if gather else group, config=cfg)
    want = ref.w4a16_matmul(x, qweight, scales, zeros, g_idx)
    assert out.dtype == dtype and out.shape == (m, n)
    tol = {torch.float16: 2e-2, torch.float32: 1e-4}[dtype]
    torch.testing.assert_close(out.float(), want.float(), atol=tol, rtol=tol)


def test_config_splits_k_for_decode_only():
    h100 = 132  # SMs
    assert w4a16_config(1, 3584, 18944, 128, h100)["split_k"] > 1  # Qwen2-7B down_proj: 56 output tiles
    assert legacy_w4a16_config(4096, 3584, 18944, 128, h100)["split_k"] == 1
    assert w4a16_config(4096, 3584, 18944, 128, h100) == {"dequant": True}  # prefill: dequantize, then cuBLAS
    assert w4a16_config(16, 3584, 18944, 128, h100).get("dequant") is None
    assert legacy_w4a16_config(1, 64, 128, 32, h100)["block_k"] == 32  # the dequantizing kernel: one group a tile
    # the factored kernel (the default for decode) takes K tiles of one group too (test_kernel_w4a16_factored)
    assert w4a16_config(1, 64, 128, 32, h100)["block_k"] == 32


@pytest.mark.parametrize("group", [128, 0])  # uniform groups; act order (g_idx gathers)
def test_dequantize_path_matches_twin_exactly(group):
    # more than DEQUANT_MIN_M rows: the weight is dequantized (bit tricks, no conversion instruction) and multiplied
    # by torch; the dequantized weight equals the twin's to the bit
    from vdeploy_kernels.w4a16_gemm import DEQUANT_MIN_M, dequantize_w4

    gen = torch.Generator().manual_seed(group)
    k, n = 256, 96
    qweight = torch.randint(-2**31, 2**31 - 1, (k // 8, n), dtype=torch.int32, generator=gen)
    scales = (torch.rand(k // 64, n, generator=gen) + 0.1).to(torch.float16)
    zeros = torch.randint(0, 16, (k // 64, n), generator=gen).to(torch.float16)
    g_idx = (torch.arange(k) // 64).to(torch.int32)
    if group == 0:
        g_idx = g_idx[torch.randperm(k, generator=gen)].contiguous()
    else:
        group = 64
    assert torch.equal(dequantize_w4(qweight, scales, zeros, g_idx, group, torch.float32),
                       ref.dequantize_w4(qweight, scales, zeros, g_idx, torch.float32))
    x = torch.randn(DEQUANT_MIN_M, k, generator=gen)
    assert torch.allclose(w4a16_matmul(x, qweight, scales, zeros, g_idx, group),
                          ref.w4a16_matmul(x, qweight, scales, zeros, g_idx, group), rtol=1e-5, atol=1e-4)


def test_a_tuned_table_row_serves_its_own_token_count_only(tmp_path, monkeypatch):
    # a decode tile tuned for one row must not be picked for sixteen; an H200 borrows the H100's table (siblings)
    import json

    from vdeploy_kernels import tuned_tables
    from vdeploy_kernels.w4a16_configs import KIND, config_name, tuned_w4a16_config

    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    row = dict(factored=True, dot=False, block_m=1, block_n=128, block_k=64, num_warps=1, num_stages=2, split_k=7)
    folder = tmp_path / "kernel_configs" / KIND
    folder.mkdir(parents=True)
    (folder / config_name(4608, 3584, 128, "NVIDIA H100 80GB HBM3")).write_text(json.dumps({"1": row}))
    tuned_tables.load_table.cache_clear()
    tuned_w4a16_config.cache_clear()
    try:
        assert tuned_w4a16_config(1, 4608, 3584, 128, "NVIDIA H100 80GB HBM3") == row
        assert tuned_w4a16_config(1, 4608, 3584, 128, "NVIDIA H200") == row
        assert tuned_w4a16_config(16, 4608, 3584, 128, "NVIDIA H100 80GB HBM3") is None
        assert tuned_w4a16_config(1, 4608, 3584, 64, "NVIDIA H100 80GB HBM3") is None  # another group size
    finally:
        tuned_tables.load_table.cache_clear()
        tuned_w4a16_config.cache_clear()
