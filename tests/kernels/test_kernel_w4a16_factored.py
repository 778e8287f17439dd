"""The factored W4A16 decode kernel (vdeploy_kernels.w4a16_factored: nibbles decoded by bit tricks, group scales
applied once per word row or K tile, split-K partials summed in-kernel by the last program of each output tile)
against the torch twin under the interpreter: M 1 / 3 / 16, uniform groups of 128 / 64 / 32, act-order g_idx
(gather), N not a multiple of the tile, K splits (one of them empty), fp16 / bf16 / fp32 activations, both inner
products (CUDA-core FMA, tensor-core dot), and the in-kernel reduction against the two-launch reducer."""

import pytest
import torch

from int4_testlib import random_int4_weights
from vdeploy_kernels import reference_quant as ref
from vdeploy_kernels.split_k import split_tickets
from vdeploy_kernels.w4a16_factored import w4a16_factored_matmul
from vdeploy_kernels.w4a16_gemm import factored_split, legacy_w4a16_config, w4a16_config, w4a16_matmul

# against the twin, which rounds the dequantized weight to x's dtype (bf16: 8 significant bits) before the matmul
TWIN_TOL = {torch.float16: 2e-2, torch.bfloat16: 6e-2, torch.float32: 1e-4}
# against the exact product (fp64): ‖out − exact‖ / ‖exact‖, about the output dtype's rounding (bf16: the interpreter
# truncates fp32 -> bf16, up to 2^-7, where the GPU rounds to nearest; fp32: the FMA path's partial sums carry x·256
# next to x·q, ~5 bits of fp32 lost; fp32 is a test dtype, not a serving one)
EXACT_TOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 2e-5}


def _check(out, x, qweight, scales, zeros, g_idx, factored=True):
    dtype = x.dtype
    want = ref.w4a16_matmul(x, qweight, scales, zeros, g_idx)
    assert out.dtype == dtype and out.shape == want.shape
    torch.testing.assert_close(out.float(), want.float(), atol=TWIN_TOL[dtype], rtol=TWIN_TOL[dtype])
    if not factored:  # the dequantizing kernel rounds the weight to x's dtype, like the twin
        return
    exact = x.double() @ ref.dequantize_w4(qweight, scales, zeros, g_idx, torch.float64)
    assert ((out.double() - exact).norm() / exact.norm()).item() < EXACT_TOL[dtype]


def _cfg(bm, bn, bk, split, dot=False, **extra):
    return dict(factored=True, dot=dot, block_m=bm, block_n=bn, block_k=bk, split_k=split, num_warps=4,
                num_stages=1, **extra)


CASES = [  # m, n, k, group, act_order, config
    (1, 96, 512, 128, False, _cfg(1, 64, 128, 3)),  # split 3 over 4 K tiles: the third split is empty; N ragged
    (1, 64, 832, 64, False, _cfg(1, 32, 32, 12)),  # 12 splits: the last program sums two chunks of partials
    (2, 72, 200, 64, False, _cfg(2, 32, 64, 2)),  # K not a multiple of the tile: the last K tile masked
    (1, 64, 384, 64, False, _cfg(1, 32, 128, 2)),  # groups shorter than the K tile: a scale row per word row
    (3, 80, 256, 32, False, _cfg(4, 32, 64, 2)),  # 3 rows on the CUDA cores (BLOCK_M 4, one row padded)
    (3, 96, 512, 128, True, _cfg(4, 64, 128, 2)),  # act order: scales gathered per weight through g_idx
    (16, 96, 512, 128, False, _cfg(16, 64, 128, 3, dot=True)),  # tensor cores, tile scales, split
    (3, 72, 256, 32, False, _cfg(16, 32, 32, 2, dot=True)),  # tensor cores on a one-group K tile, N ragged
    (16, 64, 256, 64, False, _cfg(16, 64, 64, 1, dot=True)),  # no split: stored directly
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("m,n,k,group,act_order,cfg", CASES)
def test_factored_matches_twin(interpreter_bf16_dot, dtype, m, n, k, group, act_order, cfg):
    gen = torch.Generator().manual_seed(m * 1000 + n + k)
    qweight, scales, zeros, g_idx = random_int4_weights(k, n, group, gen, act_order)
    x = torch.randn(m, k, generator=gen).to(dtype)
    out = w4a16_matmul(x, qweight, scales, zeros, g_idx, 0 if act_order else group, config=cfg)
    _check(out, x, qweight, scales, zeros, g_idx)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 3, 16])
@pytest.mark.parametrize("group,act_order", [(128, False), (32, False), (128, True)])
def test_default_decode_config_matches_twin(interpreter_bf16_dot, dtype, m, group, act_order):
    """What the engine runs: w4a16_config's choice (4 "SMs" under the interpreter, so small layers still split)."""
    n, k = 200, 512
    gen = torch.Generator().manual_seed(m + group)
    qweight, scales, zeros, g_idx = random_int4_weights(k, n, group, gen, act_order)
    x = torch.randn(m, k, generator=gen).to(dtype)
    cfg = w4a16_config(m, n, k, 0 if act_order else group, 4)
    factored = bool(cfg.get("factored"))
    assert factored == (m <= 4)  # 5-16 rows: the dequantizing kernel (as fast as two 4-row tiles, measured)
    out = w4a16_matmul(x, qweight, scales, zeros, g_idx, 0 if act_order else group)
    _check(out, x, qweight, scales, zeros, g_idx, factored)


@pytest.mark.parametrize("cfg", [_cfg(1, 32, 64, 5), _cfg(16, 32, 64, 3, dot=True)])
def test_in_kernel_split_sum_matches_the_reducer_and_resets_its_counters(cfg):
    """The last program of a tile adds the partials in a fixed order (not necessarily the two-launch reducer's, so
    equal within rounding); repeated calls give the same bits; every counter is back at 0 for the next launch (or
    graph replay)."""
    gen = torch.Generator().manual_seed(7)
    m, n, k, group = 3, 96, 512, 64
    qweight, scales, zeros, g_idx = random_int4_weights(k, n, group, gen)
    x = torch.randn(m, k, generator=gen).half()
    tickets = w4a16_factored_matmul(x, qweight, scales, zeros, g_idx, group, cfg)
    assert int(split_tickets(x.device).abs().sum()) == 0
    again = w4a16_factored_matmul(x, qweight, scales, zeros, g_idx, group, cfg)
    reducer = w4a16_factored_matmul(x, qweight, scales, zeros, g_idx, group, dict(cfg, reduce="kernel"))
    assert torch.equal(tickets, again)
    torch.testing.assert_close(tickets, reducer, atol=2e-3, rtol=2e-3)
    _check(tickets, x, qweight, scales, zeros, g_idx)


@pytest.mark.parametrize("offset", [0, 1])
def test_bf16_rows_read_in_pairs_or_one_by_one(interpreter_bf16_dot, offset):
    """bf16 activations at a 4-byte aligned address are read as int32 pairs; at an odd element offset (a view into a
    larger buffer) one value at a time. Both give the same result."""
    gen = torch.Generator().manual_seed(3)
    m, n, k, group = 2, 64, 256, 64
    qweight, scales, zeros, g_idx = random_int4_weights(k, n, group, gen)
    buffer = torch.randn(m * k + 1, generator=gen).to(torch.bfloat16)
    x = buffer[offset: offset + m * k].view(m, k)
    assert (x.data_ptr() % 4 == 0) == (offset == 0)
    out = w4a16_factored_matmul(x, qweight, scales, zeros, g_idx, group, _cfg(2, 32, 64, 2))
    _check(out, x, qweight, scales, zeros, g_idx)
    assert torch.equal(out, w4a16_factored_matmul(x.clone(), qweight, scales, zeros, g_idx, group,
                                                  _cfg(2, 32, 64, 2)))


def test_dot_path_refuses_groups_that_split_a_tile():
    gen = torch.Generator().manual_seed(1)
    qweight, scales, zeros, g_idx = random_int4_weights(256, 64, 32, gen)
    with pytest.raises(ValueError, match="whole K tiles"):
        w4a16_factored_matmul(torch.randn(2, 256).half(), qweight, scales, zeros, g_idx, 32,
                              _cfg(16, 64, 64, 1, dot=True))


def test_decode_configs_at_the_distill_shapes():
    h100 = 132
    shapes_7b = {"qkv": (4608, 3584), "o": (3584, 3584), "gate_up": (37888, 3584), "down": (3584, 18944)}
    for m in (1, 2, 3, 4):
        for layer, (n, k) in shapes_7b.items():
            cfg = w4a16_config(m, n, k, 128, h100)
            assert cfg["factored"] and not cfg["dot"]
            programs = -(-m // cfg["block_m"]) * -(-n // cfg["block_n"]) * cfg["split_k"]
            k_tiles = -(-k // cfg["block_k"])
            # ~8 warps per SM, unless each split is down to 2 K tiles or the 32-split cap
            assert (programs * cfg["num_warps"] >= 8 * h100 or cfg["split_k"] in (k_tiles // 2, 32)), (m, layer, cfg)
    assert w4a16_config(4, 3584, 3584, 128, h100)["block_m"] == 4  # up to 4 rows: one factored tile of 4
    assert "factored" not in w4a16_config(5, 3584, 3584, 128, h100)  # 5-16 rows: the dequantizing kernel (measured)
    assert w4a16_config(1, 3584, 3584, 128, h100)["split_k"] > 1  # the o projection: 14 column tiles
    assert factored_split(1, 3584, 128, dict(block_m=1, block_n=256, block_k=128, num_warps=1), h100) == 1  # 1 tile
    assert w4a16_config(1, 3584, 3584, 32, h100)["block_k"] == 32  # groups of 32: one scale row per K tile
    assert "factored" not in w4a16_config(17, 3584, 3584, 128, h100)  # larger M: the dequantizing kernel
    assert "factored" not in w4a16_config(16, 3584, 3584, 0, h100)  # act order with 5-16 rows: likewise
    assert legacy_w4a16_config(1, 3584, 18944, 128, h100)["split_k"] == 8  # the old default stays reachable


@pytest.mark.parametrize("cfg", [
    _cfg(1, 32, 64, 1),  # no split: added before the direct store
    _cfg(1, 32, 64, 5),  # tickets: added by the last program of the tile
    _cfg(1, 32, 64, 5, reduce="kernel"),  # partials and the two-launch reducer: added after it
    _cfg(16, 32, 64, 3, dot=True),
    {"dequant": True},  # prefill sizes: cuBLAS's epilogue after dequantizing
    dict(legacy_w4a16_config(3, 96, 512, 64, 4)),  # the in-register dequantizing GEMM: an add after
])
def test_bias_is_added_once_on_every_path(cfg):
    """The layer's bias (Qwen2's qkv) goes into the kernel's store rather than a separate add after it."""
    gen = torch.Generator().manual_seed(11)
    m, n, k, group = 3, 96, 512, 64
    qweight, scales, zeros, g_idx = random_int4_weights(k, n, group, gen)
    x = torch.randn(m, k, generator=gen).half()
    bias = torch.randn(n, generator=gen).half()
    want = w4a16_matmul(x, qweight, scales, zeros, g_idx, group, config=cfg).float() + bias.float()
    got = w4a16_matmul(x, qweight, scales, zeros, g_idx, group, config=cfg, bias=bias)
    torch.testing.assert_close(got.float(), want, atol=2e-3, rtol=2e-3)
