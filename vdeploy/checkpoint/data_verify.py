"""`inspect-shards --verify-data`: read every tensor's bytes once, streaming, and check the values that corrupt
downloads and bad conversions produce: NaN/Inf anywhere, FP8 block scales that are not finite and positive, weights
(and norms) that are all zero.

Speed is the point (R1 is 688 GB): each shard is read in large chunks by a reader thread into two reused buffers
while the main thread checks the previous chunk with numpy on the raw bits (no float conversion): one AND and one
max per chunk of a tensor, both vectorised and releasing the GIL, so checking overlaps reading. Time spent waiting
in reads is reported as the raw read speed of the same files (benchmarks/verify_data.py compares the two).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue

import numpy as np

from vdeploy.checkpoint.checks import FindingList
from vdeploy.checkpoint.findings import error
from vdeploy.checkpoint.layout import SCALE_SUFFIX
from vdeploy.checkpoint.report import DataVerification
from vdeploy.checkpoint.safetensors_header import DTYPE_SIZES, ShardHeader, TensorEntry
from vdeploy.checkpoint.value_checks import is_norm

CHUNK_BYTES = 32 << 20  # large enough that per-call overheads vanish, small enough to stay cheap in memory

# dtype -> (unsigned view, mask clearing the sign bit, smallest |bits| that is Inf or NaN)
_BITS = {
    "F64": (np.uint64, 0x7FFF_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000),
    "F32": (np.uint32, 0x7FFF_FFFF, 0x7F80_0000),
    "F16": (np.uint16, 0x7FFF, 0x7C00),
    "BF16": (np.uint16, 0x7FFF, 0x7F80),
    "F8_E4M3": (np.uint8, 0x7F, 0x7F),  # e4m3fn: no Inf, NaN is S.1111.111
    "F8_E5M2": (np.uint8, 0x7F, 0x7C),
}


@dataclass
class _TensorState:
    entry: TensorEntry
    nonzero: bool = False
    nonfinite: bool = False
    nonpositive: bool = False  # scales only


@dataclass
class _Reader:
    """Reads [start, end) of a file chunk by chunk into two alternating buffers (the checker holds the other)."""

    path: Path
    chunks: list[tuple[int, int]]  # absolute [begin, end) per chunk
    buffers: list[np.ndarray]
    filled: Queue = field(default_factory=lambda: Queue(maxsize=1))
    free: Queue = field(default_factory=Queue)
    read_seconds: float = 0.0
    failure: BaseException | None = None

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for n, (begin, end) in enumerate(self.chunks):
                    slot = self.free.get() if n >= len(self.buffers) else n
                    view = memoryview(self.buffers[slot])[: end - begin]
                    start = time.perf_counter()
                    done = 0
                    while done < len(view):
                        got = os.preadv(fd, [view[done:]], begin + done)
                        if got <= 0:
                            raise OSError(f"unexpected end of file at byte {begin + done:,}")
                        done += got
                    self.read_seconds += time.perf_counter() - start
                    self.filled.put((slot, begin, end))
            finally:
                os.close(fd)
        except BaseException as e:  # handed to the checking thread, which reports it as a finding
            self.failure = e
        self.filled.put(None)


def verify_data(root: Path, headers: list[ShardHeader], out: FindingList) -> DataVerification:
    start = time.perf_counter()
    total = read_seconds = 0.0
    count = 0
    buffers = [np.empty(CHUNK_BYTES, dtype=np.uint8) for _ in range(2)]
    scratch = np.empty(CHUNK_BYTES, dtype=np.uint8)  # AND results, reused
    for shard in headers:
        if not shard.readable or not shard.tensors:
            continue
        nbytes, seconds = _verify_shard(root / shard.file, shard, buffers, scratch, out)
        total += nbytes
        read_seconds += seconds
        count += len(shard.tensors)
    return DataVerification(bytes=int(total), seconds=time.perf_counter() - start, read_seconds=read_seconds,
                            tensors=count)


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


def _verify_shard(path: Path, shard: ShardHeader, buffers: list[np.ndarray], scratch: np.ndarray,
                  out: FindingList) -> tuple[int, float]:
    available = shard.file_size - shard.data_start
    ordered = sorted((t for t in shard.tensors if t.begin < t.end <= available), key=lambda t: t.begin)
    states = [_TensorState(t) for t in ordered]
    reader = _Reader(path, _chunks(shard, ordered), buffers)
    thread = threading.Thread(target=reader.run, name=f"verify-{shard.file}", daemon=True)
    thread.start()
    first = 0  # first tensor that may still intersect the next chunk
    nbytes = 0
    while (item := reader.filled.get()) is not None:
        slot, begin, end = item
        c0, c1 = begin - shard.data_start, end - shard.data_start
        while first < len(ordered) and ordered[first].end <= c0:
            first += 1
        i = first
        while i < len(ordered) and ordered[i].begin < c1:
            t = ordered[i]
            s, e = max(t.begin, c0), min(t.end, c1)
            if e > s:
                _check_segment(states[i], buffers[slot][s - c0:e - c0], s - t.begin, scratch)
            i += 1
        nbytes += end - begin
        reader.free.put(slot)
    thread.join()
    if reader.failure is not None:
        out.add(error("unreadable_data", f"reading tensor data failed: {reader.failure}", file=shard.file,
                      hint="re-download this shard"))
    for state in states:
        _report(state, shard.file, out)
    return nbytes, reader.read_seconds


def _check_segment(state: _TensorState, raw: np.ndarray, offset_in_tensor: int, scratch: np.ndarray) -> None:
    bits = _BITS.get(state.entry.dtype)
    if bits is None:  # integers, bool: any bytes are valid values
        state.nonzero = state.nonzero or bool(raw.any())
        return
    view_type, abs_mask, nonfinite_from = bits
    size = np.dtype(view_type).itemsize
    lead = -offset_in_tensor % size  # chunks end on element boundaries; this only guards odd headers
    usable = (len(raw) - lead) // size * size
    if usable <= 0:
        return
    values = raw[lead:lead + usable].view(view_type)
    magnitude = np.bitwise_and(values, view_type(abs_mask), out=scratch[:usable].view(view_type))
    largest = int(magnitude.max())
    if largest >= nonfinite_from:
        state.nonfinite = True
    if largest:
        state.nonzero = True
    if state.entry.name.endswith(SCALE_SUFFIX) and state.entry.dtype in ("F32", "F16", "BF16"):
        # a scale must be > 0: the sign bit set (negative) or a zero magnitude both fail
        if bool((values >> (size * 8 - 1)).any()) or int(magnitude.min()) == 0:
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
