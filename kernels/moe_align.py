"""moe_align in three Triton launches: the (token, slot) pairs of a MoE layer grouped by expert, each expert's run
padded to a whole number of BLOCK_M tiles, for fused_moe's grouped GEMM.

moe_align(topk_ids [T, k], num_experts, block_m) -> sorted_slots int32 [P] (flat slot ids t*k+j, padding = T*k),
block_expert int32 [P / block_m] (the expert of each tile, -1 past the last expert's run).
P = capacity(T*k, E, block_m), the worst case, so shapes depend only on T (CUDA graphs capture them).

The torch twin (reference_deepseek.moe_align) is ~12 launches (a radix argsort, scatter_add, two cumsums, gather,
scatter, searchsorted, where): ~0.28 ms of a 5.4 ms V2-Lite batch-1 decode step over 26 MoE layers, and the sort
alone ~1.3 ms of an 8192-token prefill step. Here, after one memset of the per-expert counts:
  1. count:   one atomic add per slot into counts[e];
  2. tiles:   every program rebuilds the padded prefix sums from counts[E] (E <= 256: one small cumsum), writes
              block_expert and the padding value for its tiles, and program 0 sets the write cursors to the
              padded run starts;
  3. scatter: each slot takes the next position of its expert's run with one returning atomic add on the cursor.
The order of slots within one expert's run is therefore not deterministic; nothing depends on it (every slot
writes its own output row). No host synchronisation: it runs inside CUDA graph capture.
Up to SMALL_SLOTS slots (decode batches: 8 tokens at R1's top-8) one program does all of it in one launch, no memset
and no atomics: counts from an [S, E] comparison, each slot's place in its run from an [S, S] one (stable: the
twin's order). The three launches and the memset were ~4 short launches per MoE layer of a batch-1 step (26 layers
in V2-Lite).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from vdeploy_kernels.reference_deepseek import moe_align_capacity

SLOTS_PER_PROGRAM = 256  # count / scatter: enough programs to spread the atomics at prefill, one at decode
TILES_PER_PROGRAM = 64  # tiles: a [64, E_PAD] comparison per program (16k elements at E = 256)
SMALL_SLOTS = 64  # up to this many slots: the one-program path ([64, E] and [64, 64] comparisons)


@triton.jit
def _expert_of_tiles(run_end, e_valid, num_experts, block_expert_ptr, first_tile, num_tiles,
                     BLOCK_M: tl.constexpr, TILES: tl.constexpr):
    """block_expert for tiles first_tile.. (+TILES): how many padded runs end at or before the tile's first row
    (searchsorted(run_end, start, right=True)); -1 past the last expert's run."""
    tile = first_tile + tl.arange(0, TILES)  # [TILES]
    ended = (run_end[None, :] <= (tile * BLOCK_M)[:, None]) & e_valid[None, :]  # [TILES, E]
    expert = tl.sum(ended.to(tl.int32), axis=1)  # [TILES]
    expert = tl.where(expert >= num_experts, -1, expert)
    tl.store(block_expert_ptr + tile, expert, mask=tile < num_tiles)


@triton.jit
def _moe_align_small_kernel(ids_ptr, sorted_slots_ptr, block_expert_ptr, num_experts, num_slots, num_tiles,
                            BLOCK_M: tl.constexpr, E_PAD: tl.constexpr, S_PAD: tl.constexpr, TILES: tl.constexpr,
                            FILL: tl.constexpr):
    s = tl.arange(0, S_PAD)  # [S]
    valid = s < num_slots
    expert = tl.load(ids_ptr + s, mask=valid, other=-1).to(tl.int32)  # [S] (-1: no slot)
    e = tl.arange(0, E_PAD)  # [E]
    e_valid = e < num_experts
    onehot = expert[:, None] == e[None, :]  # [S, E]
    padded = (tl.sum(onehot.to(tl.int32), axis=0) + BLOCK_M - 1) // BLOCK_M * BLOCK_M  # [E]
    run_end = tl.cumsum(padded, 0)  # [E] inclusive
    earlier_same = (expert[:, None] == expert[None, :]) & (s[None, :] < s[:, None])  # [S, S]
    row = tl.sum(tl.where(onehot, (run_end - padded)[None, :], 0), axis=1) \
        + tl.sum(earlier_same.to(tl.int32), axis=1)  # [S]: the run's start + the slots of that expert before it
    for first in range(0, num_tiles, TILES):
        _expert_of_tiles(run_end, e_valid, num_experts, block_expert_ptr, first, num_tiles, BLOCK_M, TILES)
    rows_total = num_tiles * BLOCK_M
    for first in range(0, rows_total, FILL):  # every row starts as padding ...
        rows = first + tl.arange(0, FILL)
        tl.store(sorted_slots_ptr + rows, tl.full((FILL,), 0, tl.int32) + num_slots, mask=rows < rows_total)
    tl.debug_barrier()  # ... then the real slots overwrite theirs (the whole program's stores are ordered by it)
    tl.store(sorted_slots_ptr + row, s, mask=valid)


@triton.jit
def _moe_align_count_kernel(ids_ptr, counts_ptr, num_slots, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK]
    mask = offs < num_slots
    expert = tl.load(ids_ptr + offs, mask=mask, other=0).to(tl.int32)
    tl.atomic_add(counts_ptr + expert, 1, mask=mask)


@triton.jit
def _moe_align_tiles_kernel(
    counts_ptr, cursor_ptr, sorted_slots_ptr, block_expert_ptr, num_experts, num_slots, num_tiles,
    BLOCK_M: tl.constexpr, E_PAD: tl.constexpr, TILES: tl.constexpr,
):
    e = tl.arange(0, E_PAD)  # [E]
    e_valid = e < num_experts
    counts = tl.load(counts_ptr + e, mask=e_valid, other=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M  # [E], 0 for the padding lanes
    run_end = tl.cumsum(padded, 0)  # [E] inclusive: where each expert's padded run ends
    if tl.program_id(0) == 0:  # the cursors are read only by the next launch, so one writer suffices
        tl.store(cursor_ptr + e, run_end - padded, mask=e_valid)
    _expert_of_tiles(run_end, e_valid, num_experts, block_expert_ptr, tl.program_id(0) * TILES, num_tiles,
                     BLOCK_M, TILES)
    # every row starts as padding; the scatter overwrites the real ones
    rows = tl.program_id(0) * TILES * BLOCK_M + tl.arange(0, TILES * BLOCK_M)  # [TILES * BLOCK_M]
    padding = tl.full((TILES * BLOCK_M,), 0, tl.int32) + num_slots
    tl.store(sorted_slots_ptr + rows, padding, mask=rows < num_tiles * BLOCK_M)


@triton.jit
def _moe_align_scatter_kernel(ids_ptr, cursor_ptr, sorted_slots_ptr, num_slots, BLOCK: tl.constexpr):
    slot = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # [BLOCK]
    mask = slot < num_slots
    expert = tl.load(ids_ptr + slot, mask=mask, other=0).to(tl.int32)
    row = tl.atomic_add(cursor_ptr + expert, 1, mask=mask)  # the next free row of this expert's run
    tl.store(sorted_slots_ptr + row, slot, mask=mask)


def moe_align(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """-> sorted_slots [P], block_expert [P / block_m] as the twin (reference_deepseek.moe_align) returns them,
    up to the order of slots within each expert's run."""
    ids = topk_ids.reshape(-1).contiguous()  # [T*k]
    num_slots = ids.numel()
    cap = moe_align_capacity(num_slots, num_experts, block_m)
    num_tiles = cap // block_m
    device = ids.device
    sorted_slots = torch.empty(cap, dtype=torch.int32, device=device)  # [P]
    block_expert = torch.empty(num_tiles, dtype=torch.int32, device=device)  # [P / block_m]
    if num_slots <= SMALL_SLOTS:
        _moe_align_small_kernel[(1,)](ids, sorted_slots, block_expert, num_experts, num_slots, num_tiles,
                                      BLOCK_M=block_m, E_PAD=triton.next_power_of_2(num_experts),
                                      S_PAD=max(16, triton.next_power_of_2(num_slots)), TILES=TILES_PER_PROGRAM,
                                      FILL=1024, num_warps=8)
        return sorted_slots, block_expert
    counts = torch.zeros(num_experts, dtype=torch.int32, device=device)  # [E], the one memset
    cursor = torch.empty(num_experts, dtype=torch.int32, device=device)  # [E], set by the tiles launch
    slot_grid = (triton.cdiv(num_slots, SLOTS_PER_PROGRAM),)
    if num_slots:
        _moe_align_count_kernel[slot_grid](ids, counts, num_slots, BLOCK=SLOTS_PER_PROGRAM)
    _moe_align_tiles_kernel[(triton.cdiv(num_tiles, TILES_PER_PROGRAM),)](
        counts, cursor, sorted_slots, block_expert, num_experts, num_slots, num_tiles,
        BLOCK_M=block_m, E_PAD=triton.next_power_of_2(num_experts), TILES=TILES_PER_PROGRAM,
    )
    if num_slots:
        _moe_align_scatter_kernel[slot_grid](ids, cursor, sorted_slots, num_slots, BLOCK=SLOTS_PER_PROGRAM)
    return sorted_slots, block_expert
