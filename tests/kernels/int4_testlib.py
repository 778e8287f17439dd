"""Random 4-bit weights in the W4A16 kernels' layout, for the kernel tests (test_kernel_w4a16*.py)."""

import torch

from vdeploy_kernels import reference_quant as ref


def random_int4_weights(k: int, n: int, group: int, gen: torch.Generator, shuffled: bool = False):
    """(qweight [K/8, N] int32, scales [G, N] fp16, zeros [G, N] fp16, g_idx [K] int32) for groups of `group` rows.
    shuffled: g_idx permuted, as a TP rank's act-order rows are after vdeploy.layers.int4 sorts them (groups of
    unequal sizes, out of order)."""
    q = torch.randint(0, 16, (k, n), generator=gen)  # [K, N]
    groups = -(-k // group)
    scales = (torch.rand(groups, n, generator=gen) * 0.02 + 0.001).half()
    zeros = torch.randint(0, 16, (groups, n), generator=gen).half()
    g_idx = torch.arange(k) // group
    if shuffled:
        g_idx = g_idx[torch.randperm(k, generator=gen)]
    return ref.pack_int4_rows(q), scales, zeros, g_idx.to(torch.int32)
