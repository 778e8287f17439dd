"""The synthetic-checkpoint builder: tiny real checkpoints load with safetensors and dequantize correctly; sparse
replicas are header-exact and cost almost no disk."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from vdeploy.checkpoint.layout import SCALE_SUFFIX, expected_tensors
from vdeploy.checkpoint.synthetic import (
    quantize_block_fp8,
    tiny_config,
    write_r1_replica,
    write_sparse_replica,
    write_tiny_checkpoint,
)
from vdeploy.config import ModelConfig

R1_FILE_BYTES = 688_586_727_753  # the published checkpoint's files, headers included


def _all_tensors(root):
    index = json.loads((root / "model.safetensors.index.json").read_text())
    out = {}
    for file in sorted(set(index["weight_map"].values())):
        with safe_open(str(root / file), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                out[name] = f.get_tensor(name)
    return index, out


@pytest.mark.parametrize("family", ["llama", "qwen2", "deepseek_v2", "deepseek_v3"])
def test_tiny_checkpoint_has_every_layout_tensor(tmp_path, family):
    root = write_tiny_checkpoint(tmp_path / family, family, seed=3)
    cfg = ModelConfig.from_path(root)
    assert cfg.family == family
    index, tensors = _all_tensors(root)
    expected = {s.name: s for s in expected_tensors(cfg)}
    assert set(tensors) == set(expected)
    assert set(index["weight_map"]) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    for name, spec in expected.items():
        assert tuple(tensors[name].shape) == spec.shape, name
    assert sorted(os.listdir(root)) == ["config.json", "generation_config.json", "model-00001-of-000002.safetensors",
                                        "model-00002-of-000002.safetensors", "model.safetensors.index.json"]
    if family == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in tensors


def test_tiny_checkpoint_is_deterministic_per_seed(tmp_path):
    _, a = _all_tensors(write_tiny_checkpoint(tmp_path / "a", "llama", seed=1))
    _, b = _all_tensors(write_tiny_checkpoint(tmp_path / "b", "llama", seed=1))
    _, c = _all_tensors(write_tiny_checkpoint(tmp_path / "c", "llama", seed=2))
    name = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(a[name], b[name])
    assert not torch.equal(a[name], c[name])


def test_tiny_single_file_checkpoint(tmp_path):
    root = write_tiny_checkpoint(tmp_path / "one", "qwen2", num_shards=1, dtype="float16")
    assert sorted(os.listdir(root)) == ["config.json", "generation_config.json", "model.safetensors"]
    with safe_open(str(root / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.float16


def test_deepseek_fp8_checkpoint_weights_and_block_scales(tmp_path):
    # hidden 192 with 128-wide blocks: partial blocks on every edge
    root = write_tiny_checkpoint(tmp_path / "fp8", "deepseek_v3", fp8=True,
                                 config_overrides={"hidden_size": 192, "intermediate_size": 320})
    _, tensors = _all_tensors(root)
    w = tensors["model.layers.0.mlp.gate_proj.weight"]
    s = tensors["model.layers.0.mlp.gate_proj.weight" + SCALE_SUFFIX]
    assert w.dtype == torch.float8_e4m3fn and w.shape == (320, 192)
    assert s.dtype == torch.float32 and s.shape == (3, 2)  # ceil(320/128), ceil(192/128)
    # not quantized: embeddings, norms, router (and its F32 correction bias), lm_head
    assert tensors["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert tensors["model.layers.1.mlp.gate.weight"].dtype == torch.bfloat16
    assert tensors["model.layers.1.mlp.gate.e_score_correction_bias"].dtype == torch.float32
    assert tensors["lm_head.weight"].dtype == torch.bfloat16
    assert not any(n.endswith(SCALE_SUFFIX) and "embed" in n for n in tensors)


def test_block_fp8_quantization_round_trips():
    weight = torch.randn(300, 200) * 0.05  # [R, C]
    fp8, scale = quantize_block_fp8(weight, (128, 128))
    assert scale.shape == (3, 2)
    dequant = fp8.float() * scale.repeat_interleave(128, 0)[:300].repeat_interleave(128, 1)[:, :200]
    # e4m3 keeps 3 mantissa bits: relative error per element ≤ 2^-4 of the block's max
    assert (dequant - weight).abs().max() <= weight.abs().max() / 16


def test_sparse_replica_greedy_packing(tmp_path):
    config = tiny_config("llama", overrides={"hidden_size": 256, "intermediate_size": 512, "vocab_size": 1000})
    root = write_sparse_replica(tmp_path / "rep", config, shard_bytes=1_000_000)
    index = json.loads((root / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and all(f.endswith(f"-of-{len(files):06d}.safetensors") for f in files)


def test_r1_replica_is_header_exact_and_sparse(tmp_path):
    root = write_r1_replica(tmp_path / "r1")
    shards = sorted(p for p in root.iterdir() if p.suffix == ".safetensors")
    assert len(shards) == 163
    assert shards[0].name == "model-00001-of-000163.safetensors"
    assert shards[-1].name == "model-00163-of-000163.safetensors"
    total = sum(p.stat().st_size for p in shards)
    assert abs(total - R1_FILE_BYTES) < 1_000_000  # within a megabyte of the real 688.6 GB
    assert sum(p.stat().st_blocks * 512 for p in shards) < 100_000_000  # the data is a hole
    index = json.loads((root / "model.safetensors.index.json").read_text())
    last = {k for k, v in index["weight_map"].items() if v == shards[-1].name}
    assert "model.layers.61.eh_proj.weight" in last and "model.layers.61.shared_head.head.weight" in last
    assert all(k.startswith("model.layers.61.") for k in last)
    assert index["weight_map"]["model.layers.3.self_attn.kv_a_proj_with_mqa.weight" + SCALE_SUFFIX] != shards[-1].name
