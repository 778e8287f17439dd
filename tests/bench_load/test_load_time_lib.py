"""The load benchmark's building blocks: the written checkpoint is a real, complete safetensors checkpoint of the
config; raw reads read every byte; evicting the page cache is reported truthfully."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from vdeploy.checkpoint.synthetic import replica_tensors, tiny_config
from vdeploy.config import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # benchmarks/ is not a package

import load_time_lib as lib


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    config = tiny_config("llama", overrides={"num_hidden_layers": 3})
    return config, lib.write_checkpoint(tmp_path_factory.mktemp("ckpt"), config, shard_bytes=60_000)


def test_checkpoint_has_every_tensor_of_the_config_with_its_shape(written):
    config, ckpt = written
    expected = {s.name: s.shape for s in replica_tensors(ModelConfig.from_dict(config), include_mtp=False)}
    found = {}
    for file in ckpt.files:
        with safe_open(str(file), framework="pt") as f:
            names = f.keys()
            for name in names:
                tensor = f.get_tensor(name)
                assert tensor.dtype == torch.bfloat16 and torch.isfinite(tensor).all()
                found[name] = tuple(tensor.shape)
    assert found == expected
    assert ckpt.data_bytes == sum(2 * torch.Size(s).numel() for s in expected.values())


def test_shards_are_bounded_and_indexed(written):
    _, ckpt = written
    assert len(ckpt.files) > 2
    index = json.loads((ckpt.directory / lib.INDEX_FILE).read_text())
    assert set(index["weight_map"].values()) == {f.name for f in ckpt.files}
    assert index["metadata"]["total_size"] == ckpt.data_bytes
    lm_head_bytes = 256 * 64 * 2  # the largest tensor gets a shard of its own when it exceeds the limit
    for file in ckpt.files:
        assert file.stat().st_size < max(60_000, lm_head_bytes) + 8_192  # + header
    assert json.loads((ckpt.directory / "config.json").read_text())["num_hidden_layers"] == 3
    assert lib.checkpoint_shards(ckpt.directory) == sorted(ckpt.files)


def test_pack_shards_keeps_file_order_and_splits_at_the_limit():
    specs = replica_tensors(ModelConfig.from_dict(tiny_config("qwen2")), include_mtp=False)
    shards = lib.pack_shards(specs, 40_000)
    assert [s for shard in shards for s in shard] == specs
    assert all(shard for shard in shards) and len(shards) > 1


def test_raw_read_reads_every_byte(written):
    _, ckpt = written
    result = lib.read_files(ckpt.files, block_bytes=4096)
    assert result.bytes == sum(f.stat().st_size for f in ckpt.files)
    assert result.seconds > 0 and result.gb_per_s > 0
    assert lib.resident_fraction(ckpt.files) in (None, 1.0)  # everything just read is cached


def test_dropping_the_cache_is_reported_truthfully(written):
    _, ckpt = written
    lib.read_files(ckpt.files)
    method = lib.drop_page_cache(ckpt.files)
    assert method in ("drop_caches", "fadvise", "none")
    resident = lib.resident_fraction(ckpt.files)
    ram_backed = lib.filesystem_type(ckpt.directory) in ("tmpfs", "ramfs", "overlay")
    if method != "none" and resident is not None and not ram_backed:
        assert resident < 0.05
