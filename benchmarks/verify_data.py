"""`inspect-shards --verify-data` throughput against the raw read speed of the same files.

Writes (or takes) a checkpoint, warms the page cache, then alternates: a raw read of every shard (large positioned
reads into one reused buffer, nothing else) and the verification pass; reports the best of N for each and their
ratio. The target is ≥ 0.8: checking must cost (almost) nothing next to reading.

    python benchmarks/verify_data.py [--dir CKPT] [--gb 1.0] [--repeats 3] [--cold]

--cold evicts the files from the page cache (posix_fadvise DONTNEED) before every pass, so both passes read from
the disk, as they do for a real checkpoint (R1's 688 GB never fit the page cache). Warm (the default) is the
harder case: reads then run at memory speed and the checks compete with the copy itself.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def write_checkpoint(root: Path, gb: float) -> Path:
    """A BF16 + FP8 checkpoint of about `gb` GB of random (finite) values in 4 shards, written with safetensors."""
    import torch
    from safetensors.torch import save_file

    root.mkdir(parents=True, exist_ok=True)
    per_tensor = 64 << 20
    count = max(4, int(gb * 1e9 / per_tensor))
    gen = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    for shard in range(4):
        tensors = {}
        for i in range(shard, count, 4):
            if i % 2:
                tensors[f"t{i}.weight"] = (torch.randn(per_tensor // 2, generator=gen) * 0.02).to(torch.bfloat16)
            else:
                tensors[f"t{i}.weight"] = (torch.randn(per_tensor, generator=gen)).to(torch.float8_e4m3fn)
                tensors[f"t{i}.weight_scale_inv"] = torch.rand(64, generator=gen) + 0.1
        name = f"model-{shard + 1:05d}-of-00004.safetensors"
        save_file(tensors, str(root / name))
        weight_map.update(dict.fromkeys(tensors, name))
    (root / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return root


def raw_read(files: list[Path], chunk: int) -> tuple[int, float]:
    buffer = np.empty(chunk, dtype=np.uint8)
    view = memoryview(buffer)
    total, start = 0, time.perf_counter()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            offset = 0
            while (got := os.preadv(fd, [view], offset)) > 0:
                offset += got
            total += offset
        finally:
            os.close(fd)
    return total, time.perf_counter() - start


def evict(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    from vdeploy.checkpoint.checks import FindingList
    from vdeploy.checkpoint.data_verify import CHUNK_BYTES, verify_data
    from vdeploy.checkpoint.validate import validate_headers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="checkpoint directory (default: write one)")
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="read from the disk, not the page cache")
    args = parser.parse_args()
    root = args.dir or write_checkpoint(Path(tempfile.mkdtemp(prefix="verify-bench-")) / "ckpt", args.gb)
    validation = validate_headers(root, None)
    files = [root / f for f in validation.shard_map.files]
    raw_read(files, CHUNK_BYTES)  # warm the page cache: both passes then read the same cached pages
    raw_best = verify_best = 0.0
    nbytes = 0
    for _ in range(args.repeats):
        if args.cold:
            evict(files)
        nbytes, seconds = raw_read(files, CHUNK_BYTES)
        raw_best = max(raw_best, nbytes / seconds / 1e9)
        out = FindingList()
        if args.cold:
            evict(files)
        data = verify_data(root, validation.headers, out)
        verify_best = max(verify_best, data.gb_per_s)
        assert not [f for f in out.items if f.severity == "error"], out.items
    ratio = verify_best / raw_best
    print(json.dumps({"bytes": nbytes, "raw_read_gb_per_s": round(raw_best, 3),
                      "verify_data_gb_per_s": round(verify_best, 3), "ratio": round(ratio, 3),
                      "target": 0.8, "ok": ratio >= 0.8, "page_cache": "cold" if args.cold else "warm",
                      "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
