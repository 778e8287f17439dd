"""The positioned-read safetensors reader: same values as the safetensors library for every window, only the
window's bytes read, and clear errors for corrupt files."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vdeploy.errors import CheckpointError
from vdeploy.layers.weight_loading import LazySlice, copy_checked
from vdeploy.models.shard_reader import SafetensorsShard

WINDOWS = [..., (slice(1, 3),), (slice(None), slice(2, 5)), (slice(0, 2), slice(1, 3), slice(0, 4)),
           (slice(1, 2), slice(0, 3), slice(2, 3)), (slice(0, 0),)]


@pytest.fixture()
def shard_path(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "f32": torch.randn(3, 4, 5), "bf16": torch.randn(3, 6, 4).bfloat16(),
        "fp8": torch.randn(3, 6, 5).to(torch.float8_e4m3fn), "i64": torch.arange(60).reshape(3, 4, 5),
        "scalar": torch.tensor(1.5), "vector": torch.randn(9).half(),
    }
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.uint8) if x.dtype.itemsize == 1 and x.is_floating_point() else x


@pytest.mark.parametrize("name", ["f32", "bf16", "fp8", "i64"])
def test_windows_match_the_safetensors_library(shard_path, name):
    with SafetensorsShard(shard_path) as ours, safe_open(str(shard_path), framework="pt") as reference:
        assert ours.get_slice(name).get_shape() == reference.get_slice(name).get_shape()
        for window in WINDOWS:
            expected = reference.get_tensor(name)[window]
            got = ours.get_slice(name)[window]
            assert got.dtype == expected.dtype and got.shape == expected.shape
            assert torch.equal(_bits(got), _bits(expected)), window


def test_scalars_vectors_and_metadata(shard_path):
    with SafetensorsShard(shard_path) as shard:
        assert set(shard.keys()) == {"f32", "bf16", "fp8", "i64", "scalar", "vector"}
        assert shard.get_tensor("scalar").item() == 1.5
        assert shard.get_slice("vector")[2:5].dtype == torch.float16


def test_only_the_window_bytes_are_read(shard_path):
    with SafetensorsShard(shard_path) as shard:
        reads = []
        original = shard.pread_exact
        shard.pread_exact = lambda buf, offset: (reads.append(len(buf)), original(buf, offset))
        shard.get_slice("f32")[1:3]  # rows: one contiguous read
        assert reads == [2 * 4 * 5 * 4]
        reads.clear()
        shard.get_slice("f32")[:, :, 1:3]  # columns: one read per row, only the two columns
        assert reads == [2 * 4] * 12


def test_read_straight_into_a_parameter(shard_path):
    with SafetensorsShard(shard_path) as shard, safe_open(str(shard_path), framework="pt") as reference:
        param = torch.empty(2, 4, 5)
        copy_checked(param, LazySlice(shard.get_slice("f32")).narrow(0, 1, 2))
        assert torch.equal(param, reference.get_tensor("f32")[1:3])
        widened = torch.empty(3, 6, 4)  # bf16 in the file, fp32 parameter: converted
        copy_checked(widened, shard.get_slice("bf16"))
        assert torch.equal(widened, reference.get_tensor("bf16").float())
        columns = torch.zeros(3, 4, 7)[:, :, 1:6]  # a non-contiguous destination (row-parallel partition)
        copy_checked(columns, shard.get_slice("f32"))
        assert torch.equal(columns, reference.get_tensor("f32"))


def test_truncated_and_corrupt_files_raise_checkpoint_errors(shard_path, tmp_path):
    data = shard_path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="truncated.safetensors: tensor .* end past the end of the file"):
        SafetensorsShard(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="garbage.safetensors: .*not a safetensors file"):
        SafetensorsShard(garbage)
