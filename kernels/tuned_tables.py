"""Tuned kernel tile tables: one JSON file per (kernel kind, shape, GPU kind), mapping a token count to a config.

Files are written on the GPU by the tuners in benchmarks/kernels/ (minutes, once per shape and GPU kind) and looked
up first in `$VDEPLOY_HOME/kernel_configs/<kind>/` (a local tuning run), then in the shipped `configs/<kind>/`
beside this file. The nearest tabulated token count is used. A GPU kind with no table of its own borrows a sibling's
(SIBLINGS: the same chip with other memory). No file: the caller's heuristic (never a JIT sweep at engine start). File names use plain characters so they travel to and from lent machines.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from pathlib import Path

SHIPPED_ROOT = Path(__file__).resolve().parent / "configs"


def tuned_dirs(kind: str) -> list[Path]:
    home = os.environ.get("VDEPLOY_HOME") or str(Path.home() / ".cache" / "vdeploy")
    return [Path(home).expanduser() / "kernel_configs" / kind, SHIPPED_ROOT / kind]


def device_tag(device_name: str) -> str:
    """'NVIDIA H200' -> 'NVIDIA_H200' (the file-name spelling of a GPU kind)."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in device_name)


# Kinds whose tables stand in for each other: the H100 SXM and the H200 are the same Hopper chip (132 SMs, the same
# tensor cores and shared memory) with slower or faster HBM, so a tile that wins on one is a tuned start on the other
# (an own table, once tuned, always comes first).
SIBLINGS = {"NVIDIA H100 80GB HBM3": ("NVIDIA H200",), "NVIDIA H200": ("NVIDIA H100 80GB HBM3",)}


def find_table(kind: str, name_for, device: str):
    """The table for this GPU kind, else a sibling kind's; name_for(device_name) -> file name. None: no table."""
    for candidate in (device, *SIBLINGS.get(device, ())):
        table = load_table(kind, name_for(candidate))
        if table is not None:
            return table
    return None


def exact_row(kind: str, name_for, device: str, num_tokens: int) -> dict | None:
    """The row for exactly num_tokens in this GPU kind's table (or a sibling's); None where there is none (decode
    tiles, tuned per row count, are wrong for any other)."""
    table = find_table(kind, name_for, device)
    if table is None or num_tokens not in table[0]:
        return None
    keys, configs = table
    return configs[keys.index(num_tokens)]


def write_merged_table(kind: str, name: str, rows: dict[str, dict], folder: Path) -> Path:
    """folder/<kind>/<name>: the shipped table with `rows` (token count -> config) replaced or added, in token order
    (what a tuner writes for shipping: a run over some token counts keeps the shipped rows of the others)."""
    shipped = SHIPPED_ROOT / kind / name
    table = json.loads(shipped.read_text()) if shipped.is_file() else {}
    table.update(rows)
    path = Path(folder) / kind / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(table.items(), key=lambda kv: int(kv[0]))), indent=1) + "\n")
    return path


@functools.lru_cache(maxsize=128)
def load_table(kind: str, name: str) -> tuple[tuple[int, ...], tuple[dict, ...]] | None:
    for folder in tuned_dirs(kind):
        path = folder / name
        if path.is_file():
            table = {int(t): cfg for t, cfg in json.loads(path.read_text()).items()}
            keys = tuple(sorted(table))
            return keys, tuple(table[k] for k in keys)
    return None


def nearest(table: tuple[tuple[int, ...], tuple[dict, ...]], num_tokens: int) -> dict:
    keys, configs = table
    i = bisect.bisect_left(keys, num_tokens)
    if i == len(keys) or (i > 0 and num_tokens - keys[i - 1] < keys[i] - num_tokens):
        i -= 1
    return configs[i]


@functools.lru_cache(maxsize=16)
def device_name(index: int) -> str:
    import torch

    return torch.cuda.get_device_name(index)
