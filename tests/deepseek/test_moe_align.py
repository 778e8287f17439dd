"""The Triton moe_align against its torch twin, in the Triton interpreter on CPU. Above 64 slots the kernel places
slots with atomics, so the order within one expert's run is free: runs are compared as multisets, the layout
exactly; up to 64 one program keeps the twin's order."""

import pytest
import torch

from vdeploy_kernels import reference_deepseek as ref

pytest.importorskip("triton")


def distinct_routing(t, e, k, seed):
    """ids [T, k]: k distinct experts per token, as the router picks them."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(e, generator=gen)[:k] for _ in range(t)]) if t else torch.empty(0, k).long()


def skewed_routing(t, e, k, seed):
    """ids [T, k] drawn mostly from a few experts, so runs span several tiles and many experts stay empty."""
    gen = torch.Generator().manual_seed(seed)
    hot = torch.randint(0, e, (3,), generator=gen)
    return torch.where(torch.rand(t, k, generator=gen) < 0.8, hot[torch.randint(0, 3, (t, k), generator=gen)],
                       torch.randint(0, e, (t, k), generator=gen))


def check_against_twin(ids, num_experts, block_m, aligned=None):
    """aligned: moe_align's (sorted_slots, block_expert) for ids when already computed (a CUDA graph's outputs)."""
    from vdeploy_kernels.moe_align import moe_align

    num_slots = ids.numel()
    sorted_slots, block_expert = aligned if aligned is not None else moe_align(ids, num_experts, block_m)
    want_slots, want_experts = ref.moe_align(ids, num_experts, block_m)
    cap = ref.moe_align_capacity(num_slots, num_experts, block_m)
    assert sorted_slots.shape == (cap,) and block_expert.shape == (cap // block_m,)
    assert sorted_slots.dtype == block_expert.dtype == torch.int32
    assert torch.equal(block_expert, want_experts)  # the padded layout: every tile's expert
    assert torch.equal(sorted_slots == num_slots, want_slots == num_slots)  # padding in the same rows
    assert bool(((sorted_slots >= 0) & (sorted_slots <= num_slots)).all())
    # the same multiset of slots in each expert's run: sort rows by (expert of the row's tile, slot)
    row_expert = block_expert.long().repeat_interleave(block_m)  # [P]

    def by_expert_then_slot(slots):  # [P]
        return torch.sort(row_expert * (num_slots + 1) + slots.long()).values

    assert torch.equal(by_expert_then_slot(sorted_slots), by_expert_then_slot(want_slots))
    # and, independently of the twin: a real row belongs to its tile's expert; every slot appears once
    real = sorted_slots < num_slots
    assert torch.equal(ids.reshape(-1).long()[sorted_slots[real].long()], row_expert[real])
    assert torch.equal(sorted_slots[real].sort().values, torch.arange(num_slots, dtype=torch.int32, device=ids.device))


@pytest.mark.parametrize("t,e,k,block_m", [
    (1, 64, 6, 16),  # V2-Lite decode, batch 1
    (1, 256, 8, 128),  # R1 decode, batch 1: one real slot per tile, the rest padding
    (5, 64, 2, 32),  # most experts get no token
    (8, 256, 8, 16),  # 64 slots: the largest batch of the one-program path
    (9, 256, 8, 16),  # 72: the three-launch path
    (37, 8, 3, 16),
    (300, 256, 8, 64),  # R1's width: several programs in every launch
    (200, 64, 6, 128),
])
def test_moe_align_matches_twin_on_router_like_ids(t, e, k, block_m):
    check_against_twin(distinct_routing(t, e, k, t + e), e, block_m)


@pytest.mark.parametrize("t,e,k,block_m", [(150, 64, 6, 16), (90, 256, 8, 32), (64, 16, 4, 64)])
def test_moe_align_matches_twin_when_runs_span_many_tiles(t, e, k, block_m):
    check_against_twin(skewed_routing(t, e, k, t), e, block_m)


@pytest.mark.parametrize("k,block_m", [(1, 16), (3, 32), (8, 128)])
def test_moe_align_puts_every_slot_on_one_expert(k, block_m):
    check_against_twin(torch.full((41, k), 5), 8, block_m)
    check_against_twin(torch.full((41, k), 7), 8, block_m)  # the last expert: no -1 tiles before its run


def test_moe_align_takes_int32_ids_and_an_empty_batch():
    check_against_twin(distinct_routing(9, 16, 4, 0).int(), 16, 16)
    check_against_twin(distinct_routing(0, 16, 4, 0), 16, 16)  # only padding, every tile -1



def test_small_batches_keep_the_twins_order():
    from vdeploy_kernels.moe_align import SMALL_SLOTS, moe_align

    for t, e, k, block_m in ((1, 256, 8, 16), (8, 256, 8, 64), (10, 64, 6, 16)):
        ids = skewed_routing(t, e, k, t)
        assert ids.numel() <= SMALL_SLOTS
        for got, want in zip(moe_align(ids, e, block_m), ref.moe_align(ids, e, block_m)):
            assert torch.equal(got, want)

def test_moe_align_tiles_hold_one_expert_each():
    from vdeploy_kernels.moe_align import moe_align

    ids = torch.tensor([[3, 1], [1, 0], [3, 2], [1, 3]])
    sorted_slots, block_expert = moe_align(ids, 4, 4)
    flat = ids.flatten()
    for tile, expert in enumerate(block_expert.tolist()):
        slots = [s for s in sorted_slots[tile * 4:(tile + 1) * 4].tolist() if s < flat.numel()]
        if expert < 0:
            assert not slots
        else:
            assert slots and all(int(flat[s]) == expert for s in slots)
    real = sorted(s for s in sorted_slots.tolist() if s < flat.numel())
    assert real == list(range(flat.numel()))  # every (token, slot) pair exactly once


@pytest.mark.parametrize("ids_of", [skewed_routing, lambda t, e, k, seed: torch.full((t, k), 2)])
def test_fused_moe_with_triton_moe_align_matches_expert_loop(ids_of):
    from vdeploy_kernels.fused_moe import fused_moe

    torch.manual_seed(0)
    t, e, k = 23, 16, 3
    x, w13, w2 = torch.randn(t, 64), torch.randn(e, 96, 64) * 0.1, torch.randn(e, 64, 48) * 0.1
    ids, weights = ids_of(t, e, k, 4), torch.rand(t, k)
    out, want = fused_moe(x, w13, w2, ids, weights), ref.moe_loop(x, w13, w2, ids, weights)
    assert ((out - want).norm() / want.norm()).item() < 1e-5
