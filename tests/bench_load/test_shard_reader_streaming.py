"""Slices bound for another dtype (or device) stream through the reader's bounded staging chunks: any chunk size
gives the same values as the safetensors library, runs split across chunk borders included, and host memory
stays bounded by the slots, however large the tensor."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vdeploy.layers.weight_loading import LazySlice, copy_checked
from vdeploy.models.shard_reader import SafetensorsShard, StagingBuffer

WINDOWS = [(slice(0, 7), slice(0, 12)), (slice(2, 5), slice(0, 12)), (slice(0, 7), slice(3, 9)),
           (slice(1, 6), slice(5, 6)), (slice(0, 0), slice(0, 12))]


@pytest.fixture()
def shard_path(tmp_path):
    torch.manual_seed(0)
    tensors = {"bf16": torch.randn(7, 12).bfloat16(), "f32": torch.randn(7, 12), "f16": torch.randn(4, 3, 5).half()}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


@pytest.mark.parametrize("chunk_bytes", [2, 6, 20, 64, 1 << 20])  # smaller, equal, larger than a row's run
@pytest.mark.parametrize("name, target", [("bf16", torch.float32), ("f32", torch.bfloat16)])
def test_converted_windows_match_safetensors_at_any_chunk_size(shard_path, chunk_bytes, name, target):
    staging = StagingBuffer(chunk_bytes=chunk_bytes)
    with SafetensorsShard(shard_path, staging) as shard, safe_open(str(shard_path), framework="pt") as ref:
        for window in WINDOWS:
            rows, cols = window
            dst = torch.full((rows.stop - rows.start, cols.stop - cols.start), float("nan"), dtype=target)
            lazy = LazySlice(shard.get_slice(name)).narrow(0, rows.start, rows.stop - rows.start)
            copy_checked(dst, lazy.narrow(1, cols.start, cols.stop - cols.start))
            assert torch.equal(dst, ref.get_tensor(name)[window].to(target)), window


def test_three_dimensional_windows_stream_in_order(shard_path):
    staging = StagingBuffer(chunk_bytes=8)
    with SafetensorsShard(shard_path, staging) as shard, safe_open(str(shard_path), framework="pt") as ref:
        dst = torch.empty(2, 3, 2)  # float32 from float16: streamed
        copy_checked(dst, LazySlice(shard.get_slice("f16")).narrow(0, 1, 2).narrow(2, 2, 2))
        assert torch.equal(dst, ref.get_tensor("f16")[1:3, :, 2:4].float())


def test_staging_never_exceeds_its_slots(shard_path):
    staging = StagingBuffer(chunk_bytes=16, slots=2)
    with SafetensorsShard(shard_path, staging) as shard:
        dst = torch.empty(7, 12)
        copy_checked(dst, shard.get_slice("bf16"))  # 168 bytes through 16-byte chunks
        held = [b for b in staging._buffers if b is not None]
        assert len(held) == 2 and all(b.numel() <= 16 for b in held)


def test_each_chunk_is_one_read_when_the_window_is_contiguous(shard_path):
    staging = StagingBuffer(chunk_bytes=48)
    with SafetensorsShard(shard_path, staging) as shard:
        reads = []
        original = shard.pread_exact
        shard.pread_exact = lambda buf, offset: (reads.append(len(buf)), original(buf, offset))
        copy_checked(torch.empty(7, 12), shard.get_slice("bf16"))  # 168 bytes: 48 + 48 + 48 + 24
        assert reads == [48, 48, 48, 24]


@pytest.mark.parametrize("chunk_bytes", [8, 24, 50, 1 << 20])
@pytest.mark.parametrize("cols", [(0, 6), (3, 9), (11, 12)])
def test_column_bands_are_read_as_row_spans_in_place_and_streamed(shard_path, chunk_bytes, cols):
    """A column band of a 2-D tensor (a row-parallel TP slice) is read in whole-row spans, a chunk's rows at a
    time, never past the band's last column: in place (same dtype) and streamed (converted) alike."""
    c0, c1 = cols
    with SafetensorsShard(shard_path, StagingBuffer(chunk_bytes=chunk_bytes)) as shard, \
            safe_open(str(shard_path), framework="pt") as ref:
        reads = []
        original = shard.pread_exact
        shard.pread_exact = lambda buf, offset: (reads.append(len(buf)), original(buf, offset))
        expected = ref.get_tensor("bf16")[1:6, c0:c1]
        for dtype in (torch.bfloat16, torch.float32):
            reads.clear()
            dst = torch.empty(5, c1 - c0, dtype=dtype)
            copy_checked(dst, LazySlice(shard.get_slice("bf16")).narrow(0, 1, 5).narrow(1, c0, c1 - c0))
            assert torch.equal(dst, expected.to(dtype))
            rows_per_read = max(1, chunk_bytes // 24)  # 24-byte rows
            assert len(reads) == -(-5 // rows_per_read)
            band = 2 * (c1 - c0)  # each read: whole rows, the last one only up to the band's end
            assert sum(reads) == (5 - len(reads)) * 24 + len(reads) * band


def test_wide_gaps_are_skipped_with_one_read_per_row(tmp_path):
    path = tmp_path / "wide.safetensors"
    save_file({"w": torch.randn(4, 9000)}, str(path))  # 36 kB rows: a 400-byte band leaves gaps > 16 kB
    with SafetensorsShard(path) as shard, safe_open(str(path), framework="pt") as ref:
        reads = []
        original = shard.pread_exact
        shard.pread_exact = lambda buf, offset: (reads.append(len(buf)), original(buf, offset))
        dst = torch.empty(4, 100)
        copy_checked(dst, LazySlice(shard.get_slice("w")).narrow(1, 50, 100))
        assert torch.equal(dst, ref.get_tensor("w")[:, 50:150])
        assert reads == [400] * 4
