"""`inspect-shards --verify-data`: read every tensor's bytes once, streaming, and check the values that corrupt
downloads and bad conversions produce: NaN/Inf anywhere, FP8 block scales that are not finite and positive, weights
(and norms) that are all zero.

Speed is the point (R1 is 688 GB): shards are read in 1 MiB positioned reads by a few threads, each read checked
with numpy on the raw bits right after it lands (still in the CPU cache; no float conversion): two read-only max
reductions per tensor segment, vectorised and releasing the GIL, so threads overlap reading and checking. Time spent
in reads is reported as the raw read speed of the same files (benchmarks/verify_data.py measures both apart).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vdeploy.checkpoint.checks import FindingList
from vdeploy.checkpoint.findings import error
from vdeploy.checkpoint.layout import SCALE_SUFFIX
from vdeploy.checkpoint.report import DataVerification
from vdeploy.checkpoint.safetensors_header import DTYPE_SIZES, ShardHeader, TensorEntry
from vdeploy.checkpoint.value_checks import is_norm

# Each read is checked right after it lands, while it is still in the CPU cache (checking from memory instead
# halved the speed on the 2-core machine): 1 MiB reads are large enough that per-call overheads vanish.
CHUNK_BYTES = 1 << 20
TASK_CHUNKS = 256  # chunks per task (256 MiB): long sequential runs per thread keep the kernel's readahead working
_MAX_WORKERS = 4  # reads and numpy reductions release the GIL

# dtype -> (unsigned view, signed view, unsigned bits from which a negative value is Inf/NaN, signed bits from
# which a positive one is). Two read-only reductions (max of each view) find any Inf/NaN without writing a mask:
# negative non-finite values are the largest unsigned patterns, positive ones the largest signed ones.
_BITS = {
    "F64": (np.uint64, np.int64, 0xFFF0_0000_0000_0000, 0x7FF0_0000_0000_0000),
    "F32": (np.uint32, np.int32, 0xFF80_0000, 0x7F80_0000),
    "F16": (np.uint16, np.int16, 0xFC00, 0x7C00),
    "BF16": (np.uint16, np.int16, 0xFF80, 0x7F80),
    "F8_E4M3": (np.uint8, np.int8, 0xFF, 0x7F),  # e4m3fn: no Inf, NaN is S.1111.111
    "F8_E5M2": (np.uint8, np.int8, 0xFC, 0x7C),
}
SCAN_BLOCK = CHUNK_BYTES


@dataclass
class _TensorState:
    entry: TensorEntry
    nonzero: bool = False
    nonfinite: bool = False
    nonpositive: bool = False  # scales only


def verify_data(root: Path, headers: list[ShardHeader], out: FindingList) -> DataVerification:
    start = time.perf_counter()
    tasks = []
    for shard in headers:
        if shard.readable and shard.tensors:
            available = shard.file_size - shard.data_start
            ordered = sorted((t for t in shard.tensors if t.begin < t.end <= available), key=lambda t: t.begin)
            chunks = _chunks(shard, ordered)
            for i in range(0, len(chunks), TASK_CHUNKS):
                tasks.append((root / shard.file, shard, ordered, chunks[i:i + TASK_CHUNKS]))
    workers = max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda task: _scan(*task), tasks))
    merged: dict[tuple[str, str], _TensorState] = {}
    failures: dict[str, str] = {}
    nbytes, read_seconds = 0, 0.0
    for (path, shard, _, _), (states, done, seconds, failure) in zip(tasks, results):
        nbytes += done
        read_seconds += seconds
        if failure:
            failures.setdefault(shard.file, failure)
        for state in states:
            key = (shard.file, state.entry.name)
            seen = merged.setdefault(key, _TensorState(state.entry))
            seen.nonzero |= state.nonzero
            seen.nonfinite |= state.nonfinite
            seen.nonpositive |= state.nonpositive
    for file, failure in failures.items():
        out.add(error("unreadable_data", f"reading tensor data failed: {failure}", file=file,
                      hint="re-download this shard"))
    for (file, _), state in merged.items():
        _report(state, file, out)
    # reads ran on `workers` threads at once: their summed time over the thread count is the raw read time
    return DataVerification(bytes=nbytes, seconds=time.perf_counter() - start,
                            read_seconds=read_seconds / workers,
                            tensors=sum(len(h.tensors) for h in headers if h.readable))


def _chunks(shard: ShardHeader, ordered: list[TensorEntry]) -> list[tuple[int, int]]:
    """Absolute [begin, end) chunks covering the tensors' data, each end moved back to an element boundary of the
    tensor it cuts, so no element is split between two chunks."""
    available = shard.file_size - shard.data_start
    end = min(max((t.end for t in ordered), default=0), available)
    chunks, position, i = [], 0, 0
    while position < end:
        stop = min(position + CHUNK_BYTES, end)
        while i < len(ordered) and ordered[i].end <= stop:
            i += 1
        if i < len(ordered) and ordered[i].begin < stop < ordered[i].end:
            cut = stop - (stop - ordered[i].begin) % DTYPE_SIZES.get(ordered[i].dtype, 1)
            stop = cut if cut > position else stop
        chunks.append((shard.data_start + position, shard.data_start + stop))
        position = stop
    return chunks


def _scan(path: Path, shard: ShardHeader, ordered: list[TensorEntry],
          chunks: list[tuple[int, int]]) -> tuple[list[_TensorState], int, float, str | None]:
    """Read `chunks` of one shard and check each right after its read, while it is still in the CPU cache."""
    buffer = np.empty(CHUNK_BYTES, dtype=np.uint8)
    states: dict[int, _TensorState] = {}
    nbytes, read_seconds = 0, 0.0
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return [], 0, 0.0, str(e)
    try:
        first = 0
        for begin, end in chunks:
            view = memoryview(buffer)[: end - begin]
            started = time.perf_counter()
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], begin + done)
                if got <= 0:
                    return list(states.values()), nbytes, read_seconds, f"unexpected end of file at {begin + done:,}"
                done += got
            read_seconds += time.perf_counter() - started
            c0, c1 = begin - shard.data_start, end - shard.data_start
            while first < len(ordered) and ordered[first].end <= c0:
                first += 1
            i = first
            while i < len(ordered) and ordered[i].begin < c1:
                t = ordered[i]
                s, e = max(t.begin, c0), min(t.end, c1)
                if e > s:
                    state = states.setdefault(i, _TensorState(t))
                    _check_segment(state, buffer[s - c0:e - c0], s - t.begin)
                i += 1
            nbytes += end - begin
    except OSError as e:
        return list(states.values()), nbytes, read_seconds, str(e)
    finally:
        os.close(fd)
    return list(states.values()), nbytes, read_seconds, None


def _check_segment(state: _TensorState, raw: np.ndarray, offset_in_tensor: int) -> None:
    bits = _BITS.get(state.entry.dtype)
    if bits is None:  # integers, bool: any bytes are valid values
        state.nonzero = state.nonzero or bool(raw.any())
        return
    unsigned, signed, negative_from, positive_from = bits
    size = np.dtype(unsigned).itemsize
    lead = -offset_in_tensor % size  # chunks end on element boundaries; this only guards odd headers
    usable = (len(raw) - lead) // size * size
    if usable <= 0:
        return
    step = SCAN_BLOCK // size * size
    for begin in range(lead, lead + usable, step):
        block = raw[begin:min(begin + step, lead + usable)]
        u, i = block.view(unsigned), block.view(signed)
        umax = int(u.max())
        if umax:
            state.nonzero = True
        if umax >= negative_from or int(i.max()) >= positive_from:
            state.nonfinite = True
    if state.entry.name.endswith(SCALE_SUFFIX) and state.entry.dtype in ("F32", "F16", "BF16"):
        values = raw[lead:lead + usable].view(signed)
        if int(values.min()) <= 0:  # negative (sign bit set) or +0: a scale must be > 0
            state.nonpositive = True


def _report(state: _TensorState, file: str, out: FindingList) -> None:
    t = state.entry
    is_scale = t.name.endswith(SCALE_SUFFIX)
    if state.nonfinite:
        what = "FP8 block scales" if is_scale else "values"
        out.add(error("nan_or_inf", f"{t.dtype} {list(t.shape)}: {what} include NaN or Inf", file=file, tensor=t.name,
                      hint="re-download this shard; a checkpoint with NaN/Inf produces garbage (all token ids 0)"))
    elif is_scale and state.nonpositive:
        out.add(error("bad_scale", f"{t.dtype} {list(t.shape)}: FP8 block scales must be > 0; some are zero or "
                      "negative", file=file, tensor=t.name, hint="re-download this shard"))
    elif not state.nonzero and t.numel and (len(t.shape) >= 2 or is_norm(t.name) or is_scale):
        out.add(error("all_zero", f"{t.dtype} {list(t.shape)}: every value is zero (a hole left by an interrupted "
                      "download or a failed conversion)", file=file, tensor=t.name, hint="re-download this shard"))
