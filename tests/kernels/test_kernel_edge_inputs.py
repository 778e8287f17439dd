"""Kernels at inputs the engine produces that the other kernel tests do not build: strided 1-D parameter views,
empty batches. Each case failed before the fix it guards (see the test's docstring)."""

import torch

from vdeploy_kernels.sampling import gumbel_sample


def test_gumbel_sample_reads_strided_temperature_and_seed_columns():
    """SamplingTensors keeps temperature as floats[:, 0] of an [N, 6] float32 table (temperature, top_p, min_p, ...):
    a view of stride 6. The kernel read temperature_ptr + row, i.e. row 0's top_p, min_p, ... for rows 1, 2, ...
    (min_p 0.0 gave 1 / T = inf and a draw of token 0). The draws must equal those from contiguous copies."""
    gen = torch.Generator().manual_seed(3)
    rows, vocab = 6, 300
    logits = torch.randn(rows, vocab, generator=gen) * 3
    # the sampler's table: [temperature, top_p, min_p, repetition, presence, frequency] per row
    table = torch.tensor([[0.5 + 0.3 * r, 1.0, 0.0, 1.0, 0.0, 0.0] for r in range(rows)])
    temperature = table[:, 0]
    seed_table = torch.stack([torch.arange(rows) * 7919 + 11, torch.zeros(rows, dtype=torch.int64)], dim=1)
    seeds = seed_table[:, 0]  # [N], stride 2
    assert temperature.stride(0) == 6 and seeds.stride(0) == 2
    greedy, sampled = gumbel_sample(logits, temperature, seeds)
    want_greedy, want_sampled = gumbel_sample(logits, temperature.contiguous(), seeds.contiguous())
    assert torch.equal(greedy, want_greedy) and torch.equal(greedy, logits.argmax(dim=-1))
    assert torch.equal(sampled, want_sampled)


def test_empty_batch_through_paged_attention():
    """A step with no tokens (T = 0): make_paged_batch raised on max() of no requests, so the kernels' T = 0 path
    could not be built by the test helper; the kernel and the twin both return an empty [0, H, D]."""
    from vdeploy_kernels import reference
    from vdeploy_kernels.paged_attention import paged_attention
    from vdeploy_kernels.paged_batch import make_paged_batch

    batch = make_paged_batch([], [], num_heads=4, num_kv_heads=2, head_dim=16, block_size=4, dtype=torch.float32)
    assert batch.q.shape == (0, 4, 16) and batch.meta.block_tables.shape == (0, 1)
    empty_kv = (torch.empty(0, 2, 16), torch.empty(0, 2, 16))
    out = paged_attention(batch.q, batch.kv_cache, batch.meta, 0.25, new_kv=empty_kv)
    assert out.shape == (0, 4, 16)
    assert reference.paged_attention(batch.q, batch.kv_cache, batch.meta, 0.25).shape == (0, 4, 16)
