"""Test checkpoints in real Hugging Face format.

- `write_tiny_checkpoint`: small models with real (random, seeded) tensors for Llama, Qwen2, DeepSeek-V2 and
  DeepSeek-V3, optionally DeepSeek block-FP8 (F8_E4M3 weights + float32 `weight_scale_inv`, quantized by torch).
- `write_random_checkpoint`: full-size checkpoints with such random tensors, shard by shard (benchmarks that load the
  same weights into vdeploy and vLLM).
- `write_sparse_replica`: header-exact replicas of full-size checkpoints: every real tensor name, shape and dtype in
  valid shard headers, the data region left as a hole (truncate), so a 688 GB DeepSeek-R1 costs ~12 MB of disk.

Tensor names and shapes come from vdeploy.checkpoint.layout, the same description the inspector checks against.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from vdeploy.checkpoint.index import INDEX_FILE, SINGLE_FILE
from vdeploy.checkpoint.layout import (
    SCALE_SUFFIX,
    TensorSpec,
    expected_tensors,
    fp8_block,
    scale_shape,
)
from vdeploy.checkpoint.safetensors_header import DTYPE_SIZES
from vdeploy.dtypes import ACTIVATION, DType, lookup
from vdeploy.config import ModelConfig

T = TypeVar("T")

FP8_E4M3_MAX = 448.0
R1_NUM_SHARDS = 163
REFERENCE_CONFIGS = Path(__file__).resolve().parent.parent / "model_configs"  # the bundled published configs

_TINY_BASE: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu",
}
_TINY_FAMILIES: dict[str, dict[str, Any]] = {
    "llama": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2"},
    "deepseek_v2": {
        "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "num_hidden_layers": 3,
        "num_key_value_heads": 4, "q_lora_rank": None, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8, "n_shared_experts": 2,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "n_group": 1, "topk_group": 1, "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": False,
        "routed_scaling_factor": 1.0,
    },
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "num_hidden_layers": 3,
        "num_key_value_heads": 4, "q_lora_rank": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8, "v_head_dim": 16, "n_routed_experts": 8, "n_shared_experts": 1,
        "num_experts_per_tok": 2, "moe_intermediate_size": 32, "first_k_dense_replace": 1, "moe_layer_freq": 1,
        "n_group": 2, "topk_group": 1, "topk_method": "noaux_tc", "scoring_func": "sigmoid", "norm_topk_prob": True,
        "routed_scaling_factor": 2.5, "num_nextn_predict_layers": 1,
    },
}


def tiny_config(family: str, *, dtype: str = "bfloat16", fp8: bool = False,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config.json of a tiny model of `family` (llama | qwen2 | deepseek_v2 | deepseek_v3)."""
    if family not in _TINY_FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {sorted(_TINY_FAMILIES)}")
    cfg = {**_TINY_BASE, **_TINY_FAMILIES[family], "torch_dtype": _activation_dtype(dtype).name}
    if fp8:
        cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                      "weight_block_size": [128, 128]}
    cfg.update(overrides or {})
    return cfg


def shard_file_name(i: int, n: int) -> str:
    """HF shard name with DeepSeek's widths: 5-digit index, 6-digit total (`model-00001-of-000163.safetensors`)."""
    return f"model-{i:05d}-of-{n:06d}.safetensors"


def _activation_dtype(name: str) -> DType:
    dtype = lookup(name)
    if dtype is None or dtype not in ACTIVATION:
        raise KeyError(name)
    return dtype


def write_tiny_checkpoint(path: str | Path, family: str, *, dtype: str = "bfloat16", fp8: bool = False, seed: int = 0,
                          num_shards: int = 2, config_overrides: dict[str, Any] | None = None) -> Path:
    """Write a small checkpoint with real seeded tensors; returns its directory."""
    import torch
    from safetensors.torch import save_file

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    config = tiny_config(family, dtype=dtype, fp8=fp8, overrides=config_overrides)
    cfg = ModelConfig.from_dict(config)
    block = fp8_block(cfg)
    gen = torch.Generator().manual_seed(seed)
    torch_dtype = getattr(torch, _activation_dtype(dtype).torch_attr)
    tensors: dict[str, torch.Tensor] = {}
    for spec in expected_tensors(cfg):
        tensors.update(_stored(spec, random_value(spec, gen), block, torch_dtype))
    groups = _split_evenly([(n, t.numel() * t.element_size()) for n, t in tensors.items()], num_shards)
    _write_common_files(root, config)
    if len(groups) == 1:
        save_file(tensors, str(root / SINGLE_FILE), metadata={"format": "pt"})
        return root
    weight_map: dict[str, str] = {}
    for i, names in enumerate(groups, start=1):
        file = shard_file_name(i, len(groups))
        save_file({n: tensors[n] for n in names}, str(root / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(names, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _write_index(root, weight_map, total)
    return root


def random_value(spec: TensorSpec, gen, device: str = "cpu"):
    """A seeded float32 value at the scale of a trained model's: norms near 1, biases (the router's correction bias
    too) near 0, matrices N(0, 0.02) — activations stay O(1) and MoE routers spread the tokens over the experts."""
    import torch

    if len(spec.shape) == 1:
        base = torch.zeros(spec.shape, device=device) if spec.name.endswith(("bias", "e_score_correction_bias")) \
            else torch.ones(spec.shape, device=device)
        return base + 0.01 * torch.randn(spec.shape, generator=gen, device=device)
    return torch.randn(spec.shape, generator=gen, device=device) * 0.02  # [rows, cols]


def _stored(spec: TensorSpec, value, block: tuple[int, int] | None, torch_dtype) -> dict[str, Any]:
    """The checkpoint tensors of one parameter: block FP8 (weight + float32 scale_inv) or the stored dtype."""
    import torch

    if spec.quantized and block is not None:
        weight, scale = quantize_block_fp8(value, block)
        return {spec.name: weight, spec.name + SCALE_SUFFIX: scale}
    return {spec.name: value.to(torch.float32 if spec.dtype == "F32" else torch_dtype)}


def write_random_checkpoint(path: str | Path, config: dict[str, Any], *, seed: int = 0, device: str = "cpu",
                            shard_bytes: int = 5_000_000_000, include_mtp: bool = False) -> Path:
    """A full-size checkpoint of `config` with random_value tensors (block FP8 where the config says so), written
    shard by shard (one shard's tensors in memory at a time; generated on `device`, e.g. a GPU for R1's sizes).
    Both vdeploy and vLLM load it, so a comparison runs the same weights: no dummy draw decides the routing."""
    import torch
    from safetensors.torch import save_file

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig.from_dict(config)
    block = fp8_block(cfg)
    torch_dtype = getattr(torch, _activation_dtype(str(config.get("torch_dtype") or "bfloat16")).torch_attr)
    specs = list(expected_tensors(cfg, include_mtp=include_mtp))
    stored = {s.name: s for s in replica_tensors(cfg, quantized=block is not None, include_mtp=include_mtp)}
    sized = [(spec, sum(stored[n].numel * DTYPE_SIZES[stored[n].dtype] for n in (spec.name, spec.name + SCALE_SUFFIX)
                        if n in stored)) for spec in specs]
    groups = pack_greedy(sized, shard_bytes)
    gen = torch.Generator(device=device).manual_seed(seed)
    weight_map: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        file = shard_file_name(i, len(groups)) if len(groups) > 1 else SINGLE_FILE
        tensors: dict[str, Any] = {}
        for spec in group:
            tensors.update({k: v.cpu() for k, v in _stored(spec, random_value(spec, gen, device), block,
                                                           torch_dtype).items()})
        save_file(tensors, str(root / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, file))
    _write_common_files(root, config)
    if len(groups) > 1:
        _write_index(root, weight_map, sum(b for _, b in sized))
    return root


def quantize_block_fp8(weight, block: tuple[int, int]):
    """DeepSeek block FP8: one float32 scale per [block_r, block_c] tile, stored as `weight_scale_inv` so that
    dequantized = fp8 × scale_inv. Returns (fp8 weight [R, C], scale_inv [ceil(R/br), ceil(C/bc)])."""
    import torch

    rows, cols = weight.shape
    br, bc = block
    sr, sc = scale_shape((rows, cols), block)
    padded = torch.zeros(sr * br, sc * bc, dtype=torch.float32, device=weight.device)  # [SR*br, SC*bc]
    padded[:rows, :cols] = weight.float()
    tiles = padded.view(sr, br, sc, bc)  # [SR, br, SC, bc]
    amax = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12)  # [SR, SC]
    scale_inv = amax / FP8_E4M3_MAX
    q = (tiles / scale_inv[:, None, :, None]).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX)
    fp8 = q.view(sr * br, sc * bc)[:rows, :cols].contiguous().to(torch.float8_e4m3fn)
    return fp8, scale_inv.contiguous()


def replica_tensors(cfg: ModelConfig, *, quantized: bool = True, include_mtp: bool = True) -> list[TensorSpec]:
    """Parameters plus (for block-FP8) each weight's float32 scale, in file order."""
    block = fp8_block(cfg) if quantized else None
    out: list[TensorSpec] = []
    for spec in expected_tensors(cfg, include_mtp=include_mtp, quantized=block is not None):
        out.append(spec)
        if spec.quantized and block is not None:
            out.append(TensorSpec(spec.name + SCALE_SUFFIX, scale_shape(spec.shape, block), "F32", spec.component,
                                  spec.tp, spec.layer))
    return out


def write_sparse_replica(path: str | Path, config: dict[str, Any], *, num_shards: int | None = None,
                         shard_bytes: int = 5_000_000_000, quantized: bool = True, include_mtp: bool = True) -> Path:
    """Write a header-exact replica of the full checkpoint described by `config`.

    num_shards: exact shard count; the main model is spread evenly over all but the last shard and the MTP layer
    (when present) fills the last one, as in DeepSeek-R1. Otherwise shards are packed up to `shard_bytes` each,
    the way `save_pretrained` does.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig.from_dict(config)
    specs = replica_tensors(cfg, quantized=quantized, include_mtp=include_mtp)
    sized = [(s.name, s.numel * DTYPE_SIZES[s.dtype]) for s in specs]
    if num_shards is None:
        groups = pack_greedy(sized, shard_bytes)
    else:
        main = [x for x, s in zip(sized, specs) if s.component != "mtp"]
        mtp = [x for x, s in zip(sized, specs) if s.component == "mtp"]
        if mtp and num_shards > 1:
            groups = _split_evenly(main, num_shards - 1) + [[n for n, _ in mtp]]
        else:
            groups = _split_evenly(sized, num_shards)
    by_name = {s.name: s for s in specs}
    weight_map: dict[str, str] = {}
    for i, names in enumerate(groups, start=1):
        file = shard_file_name(i, len(groups)) if len(groups) > 1 else SINGLE_FILE
        write_sparse_shard(root / file, [by_name[n] for n in names])
        weight_map.update(dict.fromkeys(names, file))
    _write_common_files(root, config)
    if len(groups) > 1:
        _write_index(root, weight_map, sum(b for _, b in sized))
    return root


def write_r1_replica(path: str | Path, *, include_mtp: bool = True) -> Path:
    """The 163-shard, ~688.6 GB DeepSeek-R1 checkpoint as a sparse replica, from its published config."""
    config = json.loads((REFERENCE_CONFIGS / "deepseek-r1.config.json").read_text())
    return write_sparse_replica(path, config, num_shards=R1_NUM_SHARDS, include_mtp=include_mtp)


def write_sparse_shard(file: Path, specs: Iterable[TensorSpec], metadata: dict[str, str] | None = None) -> None:
    """A valid safetensors header for `specs` followed by a hole of the exact data size."""
    header: dict[str, Any] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for s in specs:
        nbytes = s.numel * DTYPE_SIZES[s.dtype]
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    write_raw_header(file, header, data_bytes=offset)


def write_raw_header(file: Path, header: dict[str, Any], *, data_bytes: int, data: bytes = b"") -> None:
    """Write `header` (padded with spaces to 8 bytes, as safetensors does), then `data`, and size the file to hold
    `data_bytes` after the header, leaving what `data` does not cover as a hole."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(data)
        f.truncate(8 + len(raw) + data_bytes)


def _split_evenly(sized: list[tuple[str, int]], n: int) -> list[list[str]]:
    """Cut the ordered tensors into exactly n contiguous groups of near-equal bytes: each tensor goes to the group
    its byte midpoint falls in (no group is empty while tensors are smaller than the target size)."""
    total = sum(b for _, b in sized) or 1
    n = max(1, min(n, len(sized)))
    groups: list[list[str]] = [[] for _ in range(n)]
    cursor = 0
    for name, nbytes in sized:
        groups[min(n - 1, int((cursor + nbytes / 2) * n / total))].append(name)
        cursor += nbytes
    return [g for g in groups if g]


def pack_greedy(sized: list[tuple[T, int]], limit: int) -> list[list[T]]:
    """Consecutive items into groups of at most `limit` bytes (a larger item gets a group of its own), the way
    save_pretrained splits a state dict into shards."""
    groups: list[list[T]] = [[]]
    used = 0
    for item, nbytes in sized:
        if groups[-1] and used + nbytes > limit:
            groups.append([])
            used = 0
        groups[-1].append(item)
        used += nbytes
    return groups


def _write_common_files(root: Path, config: dict[str, Any]) -> None:
    (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"_from_model_config": True, "bos_token_id": config.get("bos_token_id"),
                  "eos_token_id": config.get("eos_token_id")}
    (root / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")


def _write_index(root: Path, weight_map: dict[str, str], total_size: int) -> None:
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (root / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
