"""The dense decode GEMV (vdeploy_kernels.dense_gemv) against x @ Wᵀ under the interpreter: 1-8 rows, N and K not
multiples of the tile, K splits summed by tickets (one split empty) and by the two-launch reducer, fp16 / bf16, the
bias added once on each path; and its dispatch: ops.dense_linear keeps F.linear off CUDA, and a tuned row serves only
its own M."""

import json

import pytest
import torch

from vdeploy_kernels import tuned_tables
from vdeploy_kernels.dense_gemv import dense_gemv
from vdeploy_kernels.dense_gemv_configs import KIND, config_name, tuned_gemv_config


def _cfg(bm, bn, bk, split, **extra):
    return dict(block_m=bm, block_n=bn, block_k=bk, split_k=split, num_warps=4, num_stages=1, **extra)


CASES = [  # m, n, k, config
    (1, 96, 512, _cfg(1, 32, 128, 1)),  # no split: stored directly
    (1, 72, 640, _cfg(1, 16, 128, 4)),  # 4 splits over 5 K tiles (the last split empty); N ragged
    (2, 64, 200, _cfg(2, 32, 64, 2)),  # K not a multiple of the tile: the last K tile masked
    (3, 40, 1024, _cfg(4, 16, 64, 12)),  # 3 rows in a 4-row tile; 12 splits: the last program sums two chunks
    (8, 48, 256, _cfg(8, 16, 32, 3)),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m,n,k,cfg", CASES)
def test_dense_gemv_matches_matmul(dtype, m, n, k, cfg):
    gen = torch.Generator().manual_seed(m * 1000 + n + k)
    x = torch.randn(m, k, generator=gen).to(dtype)
    w = torch.randn(n, k, generator=gen).to(dtype)
    out = dense_gemv(x, w, cfg)
    want = x.double() @ w.double().t()
    assert out.dtype == dtype and out.shape == (m, n)
    assert ((out.double() - want).norm() / want.norm()).item() < 8e-3  # the output dtype's rounding
    assert torch.equal(out, dense_gemv(x, w, cfg))  # fixed summation order: the same bits again


def test_two_launch_reducer_matches_tickets(monkeypatch):
    import vdeploy_kernels.split_k as split_k

    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(1, 512, generator=gen), torch.randn(64, 512, generator=gen)
    cfg = _cfg(1, 32, 64, 4)
    tickets = dense_gemv(x, w, cfg)
    monkeypatch.setattr(split_k, "TICKETS", 1)  # more column tiles than counters: partials, then the reducer
    torch.testing.assert_close(dense_gemv(x, w, cfg), tickets, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("split,tickets", [(1, True), (4, True), (4, False)])
def test_bias_is_added_in_the_store(monkeypatch, split, tickets):
    """Directly, by the last split's program, or after the two-launch reducer: once, on every path."""
    import vdeploy_kernels.split_k as split_k

    if not tickets:
        monkeypatch.setattr(split_k, "TICKETS", 1)
    gen = torch.Generator().manual_seed(5)
    x, w, b = (torch.randn(2, 512, generator=gen), torch.randn(64, 512, generator=gen),
               torch.randn(64, generator=gen))
    torch.testing.assert_close(dense_gemv(x, w, _cfg(2, 32, 64, split), b), x @ w.t() + b, atol=1e-4, rtol=1e-4)


def test_more_rows_than_the_tile_are_refused():
    with pytest.raises(ValueError, match="rows"):
        dense_gemv(torch.randn(3, 64), torch.randn(32, 64), _cfg(2, 16, 32, 1))


def test_dense_linear_on_cpu_is_f_linear():
    from vdeploy.layers import ops

    gen = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(2, 64, generator=gen), torch.randn(48, 64, generator=gen), torch.randn(48, generator=gen)
    torch.testing.assert_close(ops.dense_linear(x, w, b), torch.nn.functional.linear(x, w, b))


def test_a_tuned_row_serves_only_its_own_m(tmp_path, monkeypatch):
    gpu = "NVIDIA H100 80GB HBM3"
    folder = tmp_path / "kernel_configs" / KIND
    folder.mkdir(parents=True)
    row = _cfg(1, 16, 512, 4)
    (folder / config_name(4096, 4096, "bfloat16", gpu)).write_text(json.dumps({"1": row}))
    monkeypatch.setenv("VDEPLOY_HOME", str(tmp_path))
    tuned_tables.load_table.cache_clear()
    tuned_gemv_config.cache_clear()
    try:
        assert tuned_gemv_config(1, 4096, 4096, "bfloat16", gpu) == row
        assert tuned_gemv_config(1, 4096, 4096, "bfloat16", "NVIDIA H200") == row  # the sibling borrows it
        assert tuned_gemv_config(2, 4096, 4096, "bfloat16", gpu) is None  # other batches stay on cuBLAS
        assert tuned_gemv_config(1, 4096, 4096, "float16", gpu) is None
    finally:
        tuned_tables.load_table.cache_clear()
        tuned_gemv_config.cache_clear()
