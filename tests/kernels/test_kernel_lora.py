"""The grouped LoRA kernel (shrink then expand over runs of tokens) against its torch twin, under the interpreter:
adapters mixed in one batch, base-model tokens left untouched, prefill runs longer than one tile, ranks and widths
that are not tile multiples."""

import pytest
import torch

from vdeploy_kernels import reference
from vdeploy_kernels.lora import add_lora


def runs_of(token_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """seg_starts [S + 1], seg_slots [S]: runs of consecutive equal slots (as the model runner builds them)."""
    slots = token_slots.tolist()
    starts = [i for i in range(len(slots)) if i == 0 or slots[i] != slots[i - 1]]
    return (torch.tensor(starts + [len(slots)], dtype=torch.int32),
            torch.tensor([slots[i] for i in starts], dtype=torch.int32))


# bf16 is left to benchmarks/kernels/lora_check.py on the GPU: this Triton interpreter's bf16 tl.dot returns garbage
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 1e-2)])
@pytest.mark.parametrize("rank,n", [(8, 40), (16, 96)])
def test_grouped_lora_matches_twin(dtype, tol, rank, n):
    gen = torch.Generator().manual_seed(rank + n)
    k, num_slots = 48, 3
    # a 21-token prefill of slot 1, base tokens, one-token decodes of slots 0 and 2, a 5-token run of slot 0
    token_slots = torch.tensor([1] * 21 + [-1] * 3 + [0, 2, 2, -1] + [0] * 5, dtype=torch.int32)
    t = token_slots.shape[0]
    x = torch.randn(t, k, generator=gen).to(dtype)
    a = (0.2 * torch.randn(num_slots, rank, k, generator=gen)).to(dtype)
    b = (0.2 * torch.randn(num_slots, n, rank, generator=gen)).to(dtype)
    y0 = torch.randn(t, n, generator=gen).to(dtype)
    seg_starts, seg_slots = runs_of(token_slots)
    y_kernel, y_twin = y0.clone(), y0.clone()
    add_lora(y_kernel, x, a, b, token_slots, seg_starts, seg_slots)
    reference.add_lora(y_twin, x, a, b, token_slots, seg_starts, seg_slots)
    torch.testing.assert_close(y_kernel.float(), y_twin.float(), rtol=tol, atol=tol)
    base = token_slots < 0
    assert torch.equal(y_kernel[base], y0[base]) and not torch.allclose(y_kernel[~base], y0[~base])
    # the twin against plain per-token math
    for i, s in enumerate(token_slots.tolist()):
        expected = y0[i].float() + (x[i].float() @ a[s].float().t()) @ b[s].float().t() if s >= 0 else y0[i].float()
        torch.testing.assert_close(y_twin[i].float(), expected, rtol=5 * tol, atol=5 * tol)


def test_one_run_per_token_gives_the_same_result():
    """CUDA graphs give every token its own run: the answer must not depend on how the runs are cut."""
    gen = torch.Generator().manual_seed(3)
    token_slots = torch.tensor([0, 0, 1, -1, 1, 1], dtype=torch.int32)
    x, a, b = torch.randn(6, 32, generator=gen), torch.randn(2, 8, 32, generator=gen), torch.randn(2, 24, 8, generator=gen)
    merged, per_token = torch.zeros(6, 24), torch.zeros(6, 24)
    add_lora(merged, x, a, b, token_slots, *runs_of(token_slots))
    add_lora(per_token, x, a, b, token_slots, torch.arange(7, dtype=torch.int32), token_slots.clone())
    torch.testing.assert_close(merged, per_token)


@pytest.mark.parametrize("max_run", [0, 21])
def test_split_shrink_and_tiled_runs_match_twin(max_run):
    """A hidden size long enough that the shrink splits K (partials summed by the expand in split order) and a run
    of 21 tokens spread over two tile programs; max_run given by the host (21) or found from seg_starts (0)."""
    from vdeploy_kernels.lora import shrink_splits

    gen = torch.Generator().manual_seed(5)
    k, rank, n = 2048, 8, 40
    token_slots = torch.tensor([1] * 21 + [-1] * 2 + [0], dtype=torch.int32)
    seg_starts, seg_slots = runs_of(token_slots)
    assert shrink_splits(seg_slots.shape[0], 21, rank, k) > 1
    x = torch.randn(token_slots.shape[0], k, generator=gen)
    a, b = 0.05 * torch.randn(2, rank, k, generator=gen), 0.2 * torch.randn(2, n, rank, generator=gen)
    y0 = torch.randn(token_slots.shape[0], n, generator=gen)
    y_kernel, y_twin = y0.clone(), y0.clone()
    add_lora(y_kernel, x, a, b, token_slots, seg_starts, seg_slots, max_run)
    reference.add_lora(y_twin, x, a, b, token_slots, seg_starts, seg_slots)
    torch.testing.assert_close(y_kernel, y_twin, rtol=1e-4, atol=1e-4)
    assert torch.equal(y_kernel[21:23], y0[21:23])
