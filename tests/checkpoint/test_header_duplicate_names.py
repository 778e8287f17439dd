"""A tensor name that appears twice in ONE shard header: JSON parsers keep one of the two entries (Python's and serde's
the last), so which bytes load depends on the reader. The safetensors layout is written by hand here (8-byte
little-endian length, JSON with the duplicate key, data region), since no writer emits a duplicate."""

from __future__ import annotations

import json
import struct

import pytest

from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.checkpoint.validate import CheckpointInvalidError, validate_for_loading
from vdeploy.config import ModelConfig

TENSOR = "model.norm.weight"


def _append_duplicate(shard, tensor: str) -> None:
    """Keep `tensor`'s real entry, then name it again pointing at new bytes appended to the data region: the second
    entry leaves no overlap, only the first entry's bytes unused, so offsets alone do not give it away."""
    blob = shard.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8:8 + n]), blob[8 + n:]
    spec = header[tensor]
    begin, end = spec["data_offsets"]
    forged = {"dtype": spec["dtype"], "shape": spec["shape"], "data_offsets": [len(data), len(data) + end - begin]}
    raw = json.dumps(header)[:-1] + f', {json.dumps(tensor)}: {json.dumps(forged)}}}'
    raw_bytes = raw.encode() + b" " * (-len(raw) % 8)
    shard.write_bytes(struct.pack("<Q", len(raw_bytes)) + raw_bytes + data + b"\x00" * (end - begin))


@pytest.fixture
def ckpt(tmp_path):
    root = write_tiny_checkpoint(tmp_path / "llama", "llama", num_shards=1)
    _append_duplicate(root / "model.safetensors", TENSOR)
    return root


def test_inspect_reports_a_name_repeated_in_one_header(ckpt):
    report = inspect_checkpoint(ckpt, gpu_memory_gb=[24])
    found = [f for f in report.findings if f.kind == "duplicate_tensor"]
    assert found, [(f.severity, f.kind, f.tensor, f.message) for f in report.findings]
    assert found[0].severity == "error" and found[0].file == "model.safetensors" and found[0].tensor == TENSOR
    assert report.has_errors


def test_loader_refuses_a_name_repeated_in_one_header(ckpt):
    cfg = ModelConfig.from_dict(json.loads((ckpt / "config.json").read_text()))
    with pytest.raises(CheckpointInvalidError) as info:
        validate_for_loading(ckpt, cfg)
    assert "model.safetensors" in info.value.message and TENSOR in info.value.message
    assert "duplicate_tensor" in info.value.message


def _write_shard(path, raw_header: bytes, data: bytes = b"") -> None:
    path.write_bytes(struct.pack("<Q", len(raw_header)) + raw_header + data)


def test_an_entry_with_two_data_offsets_is_refused_naming_the_tensor(tmp_path):
    from vdeploy.checkpoint.safetensors_header import read_header

    raw = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "data_offsets": [8, 16]}}'
    _write_shard(tmp_path / "x.safetensors", raw, b"\x00" * 16)
    _, findings = read_header(tmp_path / "x.safetensors")
    bad = [f for f in findings if f.kind == "bad_header"]
    assert bad and bad[0].tensor == "w" and "data_offsets" in bad[0].message, findings


def test_deeply_nested_header_is_a_finding_not_a_traceback(tmp_path):
    from vdeploy.checkpoint.safetensors_header import read_header

    _write_shard(tmp_path / "x.safetensors", b"[" * 200_000)
    _, findings = read_header(tmp_path / "x.safetensors")
    assert [f.kind for f in findings] == ["bad_header"] and findings[0].file == "x.safetensors"
