"""Split-K for decode GEMVs (one to a few rows): too few output tiles to keep every SM streaming weights, so K is
split over programs, and their fp32 partials are summed in the same launch.

Each program writes its partial [BM, BN] to a workspace and takes a ticket from a per-output-tile counter (atomic,
acq_rel); the program that draws the last ticket adds the S partials in a fixed order (chunks of 8 splits, each
summed by the same compiled reduction tree) — so results do not depend on which program finishes last — writes the
output, and resets the counter to 0. Counters are zero between launches, so CUDA-graph replays find them ready.
Launches sharing counters must be stream-ordered, so each stream has its own (the DeepSeek shared experts' side
stream runs split launches beside the main stream's). REDUCE 2 (partials only) leaves the sum to a second launch
(sum_splits): the fallback when a grid has more tiles than counters. A bias, where given, is added to the output
once: by the direct store, by the last split's sum, or after the second launch.
Users: w4a16_factored.py, dense_gemv.py, fp8_gemm.py (the fused decode kernel; its tiled GEMM's split-K too).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

TICKETS = 1 << 16  # output tiles per launch the counters cover (M ≤ 16 x N up to 65536 at BLOCK_N 16)


@triton.jit
def split_k_tiles(K, BLOCK_K: tl.constexpr, SPLIT_K, pid_k):
    """The K tiles [start, end) of split pid_k: ceil(tiles / SPLIT_K) each, the last split the rest."""
    k_blocks = tl.cdiv(K, BLOCK_K)
    per_split = tl.cdiv(k_blocks, SPLIT_K)
    kb_start = pid_k * per_split
    return kb_start, min(kb_start + per_split, k_blocks)


@triton.jit
def store_split_k(acc, offs_m, offs_n, M, N, pid_k, c_ptr, ws_ptr, tickets_ptr, tile, SPLIT_K, REDUCE: tl.constexpr,
                  bias_ptr, HAS_BIAS: tl.constexpr):
    """Store acc [BM, BN] (fp32), or this split's partial; with tickets, the last split of the tile sums them all.
    HAS_BIAS: bias [N] is added to the output (not to partials: with REDUCE 2 the caller adds it after the sum)."""
    out_mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    mn = offs_m[:, None] * N + offs_n[None, :]  # [BM, BN] (the output is contiguous)
    if REDUCE == 0:
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
        tl.store(c_ptr + mn, acc.to(c_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(ws_ptr + pid_k * M * N + mn, acc, mask=out_mask)
        if REDUCE == 1:
            tl.debug_barrier()  # every thread's partial is written before this program's ticket (CUTLASS's pattern)
            ticket = tl.atomic_add(tickets_ptr + tile, 1, sem="acq_rel", scope="gpu")
            if ticket == SPLIT_K - 1:  # the last of the tile's splits: sum all, in a fixed order
                total = tl.zeros_like(acc)
                CHUNK: tl.constexpr = 8  # partials loaded at once: one L2 round trip per 8 splits, not per split
                for first in range(0, SPLIT_K, CHUNK):
                    sk = first + tl.arange(0, CHUNK)  # [CH]
                    parts = tl.load(ws_ptr + sk[:, None, None] * M * N + mn[None, :, :],
                                    mask=(sk < SPLIT_K)[:, None, None] & out_mask[None, :, :], other=0.0,
                                    cache_modifier=".cg")  # [CH, BM, BN] (L2: written by other SMs)
                    total += tl.sum(parts, axis=0)
                if HAS_BIAS:
                    total += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
                tl.store(c_ptr + mn, total.to(c_ptr.dtype.element_ty), mask=out_mask)
                tl.atomic_xchg(tickets_ptr + tile, 0, sem="relaxed", scope="gpu")  # ready for the next launch


@triton.jit
def _sum_splits_kernel(ws_ptr, out_ptr, numel, SPLIT_K: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    acc = tl.load(ws_ptr + offs, mask=mask, other=0.0)
    for s in range(1, SPLIT_K):  # a fixed order: split 0 + split 1 + ...
        acc += tl.load(ws_ptr + s * numel + offs, mask=mask, other=0.0)
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def split_plan(out: torch.Tensor, k_blocks: int, requested: int, tiles: int, tickets: bool = True):
    """(split, reduce, ws, counters) for a launch writing `out` [M, N] with `tiles` output tiles: the requested split
    evened out over the K tiles (no empty split), REDUCE 0 without a split, 1 (in-launch sum by tickets) where the
    counters cover the tiles and `tickets`, else 2; ws the fp32 partials [split, M, N] (out when unused), counters
    the stream's tickets (ws when unused)."""
    split = triton.cdiv(k_blocks, triton.cdiv(k_blocks, max(1, requested)))
    reduce = 0 if split == 1 else 1 if tickets and tiles <= TICKETS else 2
    ws = out if split == 1 else torch.empty(split, *out.shape, dtype=torch.float32, device=out.device)
    return split, reduce, ws, split_tickets(out.device) if reduce == 1 else ws


def sum_splits(ws: torch.Tensor, out: torch.Tensor, split: int, bias: torch.Tensor | None = None) -> torch.Tensor:
    """REDUCE 2's second launch: out = Σ_s ws[s] in a fixed order (+ bias, which the kernel did not add)."""
    numel, chunk = out.numel(), 1024
    _sum_splits_kernel[(triton.cdiv(numel, chunk),)](ws, out, numel, SPLIT_K=split, BLOCK=chunk)
    return out if bias is None else out.add_(bias)


def split_tickets(device: torch.device) -> torch.Tensor:
    """The split-K ticket counters of the current stream on this device ([TICKETS] int32, zero between launches: the
    last program of each output tile resets its own): two streams' launches may run at once, so they never share."""
    stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
    return _stream_tickets(device, stream)


@functools.lru_cache(maxsize=None)
def _stream_tickets(device: torch.device, stream: int) -> torch.Tensor:
    """An explicit per-(device, stream) cache (256 KiB each), created by the stream's first split launch; if that
    happens inside a CUDA-graph capture, the tensor lives in the graph's pool (kept alive by this cache) and its
    zero-fill is replayed with the graph, which is harmless."""
    return torch.zeros(TICKETS, dtype=torch.int32, device=device)
