"""Break a (synthetic) checkpoint in one specific way, the way downloads and hand edits break real ones, so that
tests can assert that `inspect_checkpoint` names the problem. Each helper returns where it broke it.

Header rewrites keep the data region's size; on sparse replicas (data is a hole) nothing is read, on real files the
data bytes are copied.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdeploy.checkpoint.index import INDEX_FILE
from vdeploy.checkpoint.layout import SCALE_SUFFIX, TensorSpec
from vdeploy.checkpoint.synthetic import write_raw_header, write_sparse_shard


@dataclass(frozen=True)
class Damage:
    file: str | None
    tensor: str | None = None


def read_index(root: Path) -> dict[str, Any]:
    return json.loads((root / INDEX_FILE).read_text())


def write_index(root: Path, index: dict[str, Any]) -> None:
    (root / INDEX_FILE).write_text(json.dumps(index, indent=2))


def shard_files(root: Path) -> list[str]:
    return sorted(set(read_index(root)["weight_map"].values()))


def read_raw_header(file: Path) -> dict[str, Any]:
    with open(file, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def rewrite_header(file: Path, mutate: Callable[[dict[str, Any]], None]) -> None:
    """Apply `mutate` to the header dict and write it back in front of the unchanged data region."""
    with open(file, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        size = os.fstat(f.fileno()).st_size
        sparse = os.fstat(f.fileno()).st_blocks * 512 < size // 2
        data = b"" if sparse else f.read()
    mutate(header)
    write_raw_header(file, header, data_bytes=size - 8 - n, data=data)


def _tensor_in(file: Path, predicate: Callable[[str, dict[str, Any]], bool]) -> str:
    header = read_raw_header(file)
    return next(k for k, v in header.items() if k != "__metadata__" and predicate(k, v))


def delete_shard(root: Path, position: int = -1) -> Damage:
    name = shard_files(root)[position]
    (root / name).unlink()
    return Damage(name)


def add_unlisted_shard(root: Path, name: str = "model-extra.safetensors") -> Damage:
    write_sparse_shard(root / name, [TensorSpec("extra.weight", (4, 4), "BF16", "other", "replicated")])
    return Damage(name)


def misplace_in_index(root: Path) -> Damage:
    """The index says a tensor of shard 1 lives in shard 2: shard 2's header lacks it, shard 1 holds an unlisted one."""
    index = read_index(root)
    first, second = shard_files(root)[:2]
    tensor = next(k for k, v in index["weight_map"].items() if v == first)
    index["weight_map"][tensor] = second
    write_index(root, index)
    return Damage(second, tensor)


def duplicate_tensor(root: Path) -> Damage:
    """Copy one tensor's header entry of shard 1 into shard 2 (pointing at shard 2's first tensor's bytes)."""
    first, second = shard_files(root)[:2]
    tensor = _tensor_in(root / first, lambda k, v: len(v["shape"]) == 1)
    entry = read_raw_header(root / first)[tensor]
    nbytes = entry["data_offsets"][1] - entry["data_offsets"][0]

    def add(header: dict[str, Any]) -> None:
        end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
        header[tensor] = {**entry, "data_offsets": [end, end + nbytes]}

    _grow_data(root / second, nbytes, add)
    return Damage(second, tensor)


def _grow_data(file: Path, extra: int, mutate: Callable[[dict[str, Any]], None]) -> None:
    rewrite_header(file, mutate)
    with open(file, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.truncate(f.tell() + extra)


def set_header_length(file: Path, length: int) -> Damage:
    """Overwrite the 8-byte length prefix (e.g. 2**40 for an absurd header)."""
    with open(file, "r+b") as f:
        f.write(struct.pack("<Q", length))
    return Damage(file.name)


def garble_header_json(file: Path) -> Damage:
    with open(file, "r+b") as f:
        f.seek(8)
        f.write(b"{\"oops\":[")
    return Damage(file.name)


def truncate_shard(file: Path, remove_bytes: int = 1024) -> Damage:
    size = file.stat().st_size
    os.truncate(file, size - remove_bytes)
    last = max(((k, v) for k, v in read_raw_header(file).items() if k != "__metadata__"),
               key=lambda kv: kv[1]["data_offsets"][1])[0]
    return Damage(file.name, last)


def overlap_offsets(file: Path) -> Damage:
    """Shift the second tensor (by offset) back into the first one's bytes."""
    header = read_raw_header(file)
    ordered = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    victim = ordered[1]

    def shift(h: dict[str, Any]) -> None:
        b, e = h[victim]["data_offsets"]
        h[victim]["data_offsets"] = [b - 2, e - 2]

    rewrite_header(file, shift)
    return Damage(file.name, victim)


def invert_offsets(file: Path) -> Damage:
    tensor = _tensor_in(file, lambda k, v: v["data_offsets"][1] > v["data_offsets"][0])

    def invert(h: dict[str, Any]) -> None:
        h[tensor]["data_offsets"] = h[tensor]["data_offsets"][::-1]

    rewrite_header(file, invert)
    return Damage(file.name, tensor)


def set_dtype(file: Path, dtype: str = "C64") -> Damage:
    tensor = _tensor_in(file, lambda k, v: True)

    def change(h: dict[str, Any]) -> None:
        h[tensor]["dtype"] = dtype

    rewrite_header(file, change)
    return Damage(file.name, tensor)


def reshape_tensor(root: Path, tensor: str, shape: list[int]) -> Damage:
    """Give `tensor` another shape of the same byte size (e.g. a hidden size the config does not have)."""
    file = read_index(root)["weight_map"][tensor]

    def change(h: dict[str, Any]) -> None:
        h[tensor]["shape"] = shape

    rewrite_header(root / file, change)
    return Damage(file, tensor)


def drop_scale(root: Path) -> Damage:
    """Remove one FP8 weight's `weight_scale_inv` from its shard and the index."""
    index = read_index(root)
    scale = next(k for k in index["weight_map"] if k.endswith(SCALE_SUFFIX))
    file = index["weight_map"].pop(scale)
    write_index(root, index)
    rewrite_header(root / file, lambda h: h.pop(scale))
    weight = scale[: -len(SCALE_SUFFIX)]
    return Damage(index["weight_map"][weight], weight)


def write_tokenizer_config(root: Path, *, model_max_length: int | None = None,
                           highest_token_id: int | None = None) -> Damage:
    doc: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if model_max_length is not None:
        doc["model_max_length"] = model_max_length
    if highest_token_id is not None:
        doc["added_tokens_decoder"] = {str(highest_token_id): {"content": "<extra>", "special": True}}
    (root / "tokenizer_config.json").write_text(json.dumps(doc))
    return Damage("tokenizer_config.json")


def add_foreign_weights(root: Path, kind: str = "bin") -> Damage:
    """A PyTorch pickle (`pytorch_model.bin`) or GGUF (`model.gguf`) file next to (or instead of) safetensors."""
    name = {"bin": "pytorch_model.bin", "gguf": "model-Q4_K_M.gguf"}[kind]
    magic = b"GGUF\x03\x00\x00\x00" if kind == "gguf" else b"PK\x03\x04"  # GGUF v3 / zip (torch.save) magic
    (root / name).write_bytes(magic + b"\x00" * 56)
    return Damage(name)
