"""Building blocks of the load-time benchmark (benchmarks/load_time.py): write a real sharded safetensors
checkpoint of a config, make its files cold in the page cache, and time plain sequential reads of them.

The checkpoint is real (valid headers, every byte of data written, Hugging Face tensor names and shapes from
vdeploy.checkpoint.layout); the values are random bf16 drawn from a small pool, because a load benchmark needs the
bytes on disk, not trained weights.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import os
import platform
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vdeploy.checkpoint.layout import TensorSpec
from vdeploy.checkpoint.safetensors_header import DTYPE_SIZES
from vdeploy.checkpoint.synthetic import replica_tensors, shard_file_name
from vdeploy.config import ModelConfig
from vdeploy.env.host import cpu_model_name

READ_BLOCK_BYTES = 64 << 20  # raw reads: large enough that per-call overhead is noise, small enough to stay cached
WRITE_POOL_BYTES = 64 << 20  # random bytes recycled for every tensor: writing is then disk-bound, not RNG-bound
DEFAULT_SHARD_BYTES = 5_000_000_000  # save_pretrained's default max_shard_size ("5GB")
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


@dataclass(frozen=True)
class WrittenCheckpoint:
    directory: Path
    files: list[Path]
    data_bytes: int  # tensor bytes over all shards (what the index calls total_size)
    seconds: float  # writing plus the final fsync

    @property
    def gb_per_s(self) -> float:
        return self.data_bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ReadResult:
    bytes: int
    seconds: float
    resident_before: float | None  # fraction of the files' pages in the page cache when the read started

    @property
    def gb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------- writing


def pack_shards(specs: list[TensorSpec], shard_bytes: int) -> list[list[TensorSpec]]:
    """Consecutive tensors into shards of at most `shard_bytes` (a larger tensor gets a shard of its own), the
    way save_pretrained splits a state dict."""
    from vdeploy.checkpoint.synthetic import pack_greedy

    return pack_greedy([(spec, spec.numel * DTYPE_SIZES[spec.dtype]) for spec in specs], shard_bytes)


def write_checkpoint(directory: str | Path, config: dict[str, Any], *, shard_bytes: int = DEFAULT_SHARD_BYTES,
                     seed: int = 0) -> WrittenCheckpoint:
    """Write config.json, the shards and (for more than one shard) the index of `config`'s checkpoint."""
    import torch

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig.from_dict(config)
    shards = pack_shards(replica_tensors(cfg, include_mtp=False), shard_bytes)
    # N(0, 0.02) in bf16: plausible weights for every dtype width; raw bytes for fp8 or f32 tensors are fine too
    gen = torch.Generator().manual_seed(seed)
    pool = (torch.randn(WRITE_POOL_BYTES // 2, generator=gen) * 0.02).to(torch.bfloat16)  # [P]
    pool_bytes = memoryview(pool.view(torch.uint8).numpy())
    start = time.perf_counter()
    files: list[Path] = []
    weight_map: dict[str, str] = {}
    total = 0
    for i, specs in enumerate(shards, start=1):
        name = shard_file_name(i, len(shards)) if len(shards) > 1 else SINGLE_FILE
        total += _write_shard(root / name, specs, pool_bytes)
        weight_map.update(dict.fromkeys((s.name for s in specs), name))
        files.append(root / name)
    seconds = time.perf_counter() - start
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (root / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return WrittenCheckpoint(root, files, total, seconds)


def _write_shard(file: Path, specs: list[TensorSpec], pool: memoryview) -> int:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for s in specs:
        nbytes = s.numel * DTYPE_SIZES[s.dtype]
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header so the data starts 8-byte aligned
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, struct.pack("<Q", len(raw)) + raw)
        remaining, cursor = offset, 0
        while remaining:
            # rotate through the pool so neighbouring tensors do not hold identical bytes
            n = min(remaining, len(pool) - cursor)
            _write_all(fd, pool[cursor:cursor + n])
            remaining -= n
            cursor = (cursor + n + 4096) % (len(pool) - 4096)
        os.fsync(fd)  # the write is only done once it is on disk; also lets the page cache drop these pages
    finally:
        os.close(fd)
    return offset


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# ---------------------------------------------------------------------------------------------- page cache


def drop_page_cache(files: list[Path]) -> str:
    """Evict `files` from the page cache; returns how: "drop_caches" (the whole cache, needs root),
    "fadvise" (POSIX_FADV_DONTNEED on each file, works unprivileged for clean pages) or "none"."""
    os.sync()  # only clean pages can be dropped
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        pass
    if not hasattr(os, "posix_fadvise"):
        return "none"
    try:
        for file in files:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    except OSError:
        return "none"
    return "fadvise"


def resident_fraction(files: list[Path]) -> float | None:
    """Fraction of the files' pages now in the page cache (mincore), or None where it cannot be asked."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    page = mmap.PAGESIZE
    resident = total = 0
    for file in files:
        size = file.stat().st_size
        if size == 0:
            continue
        pages = (size + page - 1) // page
        with open(file, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mapped:
            address = _mapping_address(mapped)  # mincore asks about a mapping, not a file
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), vec) != 0:
                return None
            resident += int((np.frombuffer(vec, dtype=np.uint8) & 1).sum())  # bit 0: page resident
            total += pages
    return resident / total if total else None


def _mapping_address(mapped: mmap.mmap) -> int:
    """Start address of a read-only mapping (ctypes' from_buffer refuses read-only buffers; numpy does not)."""
    return np.frombuffer(mapped, dtype=np.uint8, count=1).ctypes.data


# ---------------------------------------------------------------------------------------------- reading


def read_files(files: list[Path], block_bytes: int = READ_BLOCK_BYTES) -> ReadResult:
    """Read every byte of `files` with large sequential positioned reads into one reused buffer: the raw
    bandwidth a loader of these files can at best reach, with the same system calls the loader uses."""
    resident = resident_fraction(files)
    buffer = bytearray(block_bytes)
    view = memoryview(buffer)
    done = 0
    start = time.perf_counter()
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        try:
            offset = 0
            while True:
                got = os.preadv(fd, [view], offset)
                if got <= 0:
                    break
                offset += got
            done += offset
        finally:
            os.close(fd)
    return ReadResult(done, time.perf_counter() - start, resident)


def filesystem_type(path: str | Path) -> str | None:
    """The type of the filesystem holding `path` (ext4, xfs, tmpfs, ...), from the longest matching mount."""
    target = os.path.realpath(path)
    best, fstype = "", None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, fstype = mount, fields[2]
    except OSError:
        return None
    return fstype


def checkpoint_shards(directory: Path) -> list[Path]:
    from vdeploy.models.loader import checkpoint_files

    return checkpoint_files(directory)


# ---------------------------------------------------------------------------------------------- host memory, context


def current_rss() -> int | None:
    return _status_kb("VmRSS")


def reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: 5 -> /proc/self/clear_refs) so each load's
    peak is its own; getrusage's ru_maxrss only ever grows over the process' life."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_peak() -> int | None:
    peak = _status_kb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------------------------- context


def git_revision() -> str:
    from vdeploy.bench.offline import git_revision as checkout_revision

    return checkout_revision() or "unknown"


def machine_info(device) -> dict:
    import torch

    info = {"hostname": platform.node(), "cpu": cpu_model_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "gpu": None}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
