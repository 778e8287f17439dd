"""A battery of corrupt checkpoints for tests: each `Corruption` breaks a copy of a synthetic checkpoint (tiny FP8
DeepSeek-V3 "ds" or sharded Llama "llama") in one way and says where (file, tensor) the refusal must point.

stage "header": found from the index and headers alone (the loader refuses before reading data; inspect-shards
reports it); "values": found by the loader's per-tensor checks and `inspect-shards --verify-data`;
"scan": found only by `--verify-data` (a full read).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vdeploy.testing import corruptions as damage
from vdeploy.testing.corruptions import Damage, read_index, read_raw_header, rewrite_header, write_index


@dataclass(frozen=True)
class Corruption:
    name: str
    base: str  # "ds" | "llama"
    apply: Callable[[Path], Damage]
    stage: str = "header"  # "header" | "values" | "scan"
    tp: int = 1


def _file_of(root: Path, tensor: str) -> str:
    return read_index(root)["weight_map"][tensor]


def _poke(root: Path, tensor: str, data: bytes, at: int = 0) -> Damage:
    """Overwrite bytes of `tensor`'s data (a value corruption that leaves the header valid)."""
    file = _file_of(root, tensor)
    path = root / file
    with open(path, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        begin, _ = json.loads(f.read(n))[tensor]["data_offsets"]
        f.seek(8 + n + begin + at)
        f.write(data)
    return Damage(file, tensor)


def _zero(root: Path, tensor: str) -> Damage:
    file = _file_of(root, tensor)
    header = read_raw_header(root / file)
    begin, end = header[tensor]["data_offsets"]
    return _poke(root, tensor, b"\x00" * (end - begin))


def _edit_config(root: Path, **changes) -> None:
    path = root / "config.json"
    cfg = json.loads(path.read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    path.write_text(json.dumps(cfg))


def _set_entry(root: Path, tensor: str, **fields) -> Damage:
    file = _file_of(root, tensor)
    rewrite_header(root / file, lambda h: h[tensor].update(fields))
    return Damage(file, tensor)


def _retensor(root: Path, tensor: str, make) -> Damage:
    """Rewrite `tensor`'s shard with safetensors, replacing the tensor by make(old)."""
    from safetensors.torch import load_file, save_file

    file = _file_of(root, tensor)
    tensors = load_file(str(root / file))
    tensors[tensor] = make(tensors[tensor])
    save_file(tensors, str(root / file), metadata={"format": "pt"})
    return Damage(file, tensor)


def _redirect(root: Path, target: str) -> Damage:
    """Point the index entry of the first shard's tensors at `target` (a path outside the directory)."""
    index = read_index(root)
    first = sorted(set(index["weight_map"].values()))[0]
    tensor = next(k for k, v in index["weight_map"].items() if v == first)
    for k, v in index["weight_map"].items():
        if v == first:
            index["weight_map"][k] = target
    write_index(root, index)
    return Damage(target, tensor)


def _traversal(root: Path) -> Damage:
    first = sorted(set(read_index(root)["weight_map"].values()))[0]
    (root.parent / "stolen.safetensors").write_bytes((root / first).read_bytes())
    return _redirect(root, "../stolen.safetensors")


def _absolute(root: Path) -> Damage:
    first = sorted(set(read_index(root)["weight_map"].values()))[0]
    outside = root.parent / "elsewhere.safetensors"
    outside.write_bytes((root / first).read_bytes())
    return _redirect(root, str(outside))


def _symlink_out(root: Path) -> Damage:
    first = sorted(set(read_index(root)["weight_map"].values()))[0]
    outside = root.parent / "secret.bin"
    outside.write_bytes((root / first).read_bytes())
    (root / first).unlink()
    os.symlink(outside, root / first)
    tensor = next(k for k, v in read_index(root)["weight_map"].items() if v == first)
    return Damage(first, tensor)


def _directory_entry(root: Path) -> Damage:
    (root / "shards").mkdir()
    return _redirect(root, "shards")


def _drop_tensor(root: Path, tensor: str) -> Damage:
    file = _file_of(root, tensor)
    index = read_index(root)
    index["weight_map"].pop(tensor)
    write_index(root, index)
    rewrite_header(root / file, lambda h: h.pop(tensor))
    return Damage(None, tensor)


def _unindexed(root: Path, tensor: str) -> Damage:
    index = read_index(root)
    file = index["weight_map"].pop(tensor)
    write_index(root, index)
    return Damage(file, tensor)


def _add_tensor(root: Path, tensor: str, shape: list[int]) -> Damage:
    import torch

    file = sorted(set(read_index(root)["weight_map"].values()))[0]
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(root / file))
    tensors[tensor] = torch.ones(shape, dtype=torch.bfloat16)
    save_file(tensors, str(root / file), metadata={"format": "pt"})
    index = read_index(root)
    index["weight_map"][tensor] = file
    write_index(root, index)
    return Damage(file, tensor)


def _first_shard(root: Path) -> Path:
    return root / sorted(set(read_index(root)["weight_map"].values()))[0]


def _config_only(root: Path, **changes) -> Damage:
    _edit_config(root, **changes)
    return Damage(None)


def _bf16_with_scale(root: Path) -> Damage:
    import torch

    return _retensor(root, DS_FP8, lambda t: t.to(torch.float32).to(torch.bfloat16))


def _write_bad_index(root: Path, text: str) -> Damage:
    (root / damage.INDEX_FILE).write_text(text)
    return Damage(damage.INDEX_FILE)


DS_FP8 = "model.layers.0.self_attn.o_proj.weight"
DS_SCALE = DS_FP8 + "_scale_inv"
DS_NORM = "model.layers.1.post_attention_layernorm.weight"
LL_NORM = "model.layers.0.input_layernorm.weight"
LL_W = "model.layers.1.mlp.down_proj.weight"
NAN_BF16, INF_F32, NEG_F32 = b"\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xbf"

BATTERY: list[Corruption] = [
    Corruption("missing_shard", "ds", lambda r: damage.delete_shard(r)),
    Corruption("index_path_traversal", "llama", _traversal),
    Corruption("index_absolute_path", "llama", _absolute),
    Corruption("symlink_outside", "llama", _symlink_out),
    Corruption("index_names_a_directory", "llama", _directory_entry),
    Corruption("misplaced_in_index", "llama", lambda r: damage.misplace_in_index(r)),
    Corruption("duplicate_tensor", "llama", lambda r: damage.duplicate_tensor(r)),
    Corruption("absurd_header_length", "ds", lambda r: damage.set_header_length(_first_shard(r), 2**40)),
    Corruption("header_past_eof", "llama", lambda r: damage.set_header_length(_first_shard(r), 10**7)),
    Corruption("garbled_header", "llama", lambda r: damage.garble_header_json(_first_shard(r))),
    Corruption("file_too_short", "llama", lambda r: (_first_shard(r).write_bytes(b"\x01\x02"),
                                                     Damage(_first_shard(r).name))[1]),
    Corruption("truncated_shard", "ds", lambda r: damage.truncate_shard(_first_shard(r))),
    Corruption("overlapping_offsets", "ds", lambda r: damage.overlap_offsets(_first_shard(r))),
    Corruption("inverted_offsets", "llama", lambda r: damage.invert_offsets(_first_shard(r))),
    Corruption("unsupported_dtype", "llama", lambda r: damage.set_dtype(_first_shard(r), "C64")),
    Corruption("size_mismatch", "llama", lambda r: _set_entry(r, LL_W, shape=[64, 64])),
    Corruption("shape_contradicts_config", "llama", lambda r: _set_entry(r, LL_W, shape=[128, 64])),
    Corruption("dropped_scale", "ds", lambda r: damage.drop_scale(r)),
    Corruption("f8_e5m2_for_e4m3", "ds", lambda r: _set_entry(r, DS_FP8, dtype="F8_E5M2")),
    Corruption("bf16_weight_with_scale", "ds", _bf16_with_scale),
    Corruption("scale_as_int", "ds", lambda r: _set_entry(r, DS_SCALE, dtype="I32")),
    Corruption("scale_block_shape", "ds", lambda r: _retensor(r, DS_SCALE, lambda t: t.repeat(2, 1))),
    Corruption("norm_as_int", "llama", lambda r: _set_entry(r, LL_NORM, dtype="I16")),
    Corruption("config_fewer_layers_ds", "ds", lambda r: _config_only(r, num_hidden_layers=2)),
    Corruption("config_more_layers_ds", "ds", lambda r: _config_only(r, num_hidden_layers=4)),
    Corruption("config_fewer_layers_llama", "llama", lambda r: _config_only(r, num_hidden_layers=1)),
    Corruption("config_more_layers_llama", "llama", lambda r: _config_only(r, num_hidden_layers=3)),
    Corruption("config_other_intermediate", "llama", lambda r: _config_only(r, intermediate_size=96)),
    Corruption("fp8_without_quant_config", "ds", lambda r: _config_only(r, quantization_config=None)),
    Corruption("missing_tensor", "llama", lambda r: _drop_tensor(r, LL_W)),
    Corruption("tensor_not_in_index", "llama", lambda r: _unindexed(r, LL_NORM)),
    Corruption("extra_unknown_tensor", "llama", lambda r: _add_tensor(r, "model.layers.0.mlp.extra_proj.weight",
                                                                      [4, 4])),
    Corruption("extra_layer_tensor", "llama", lambda r: _add_tensor(r, "model.layers.7.input_layernorm.weight",
                                                                    [64])),
    Corruption("invalid_index_json", "llama", lambda r: _write_bad_index(r, "{not json")),
    Corruption("index_without_weight_map", "llama", lambda r: _write_bad_index(r, '{"metadata": {}}')),
    Corruption("tp2_partial_fp8_blocks", "ds", lambda r: Damage("config.json"), tp=2),
    Corruption("nan_in_norm_ds", "ds", lambda r: _poke(r, DS_NORM, NAN_BF16, at=6), stage="values"),
    Corruption("nan_in_norm_llama", "llama", lambda r: _poke(r, LL_NORM, NAN_BF16), stage="values"),
    Corruption("inf_in_scale", "ds", lambda r: _poke(r, DS_SCALE, INF_F32), stage="values"),
    Corruption("negative_scale", "ds", lambda r: _poke(r, DS_SCALE, NEG_F32), stage="values"),
    Corruption("zero_scale", "ds", lambda r: _zero(r, DS_SCALE), stage="values"),
    Corruption("zero_norm", "llama", lambda r: _zero(r, LL_NORM), stage="values"),
    Corruption("all_zero_weight", "llama", lambda r: _zero(r, LL_W), stage="scan"),
    Corruption("nan_in_weight", "llama", lambda r: _poke(r, LL_W, NAN_BF16, at=100), stage="scan"),
]
