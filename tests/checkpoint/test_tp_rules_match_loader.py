"""The tensor-parallel rule the planner uses (tp_rules.tp_problem: inspect-shards, env check, serve's pre-load check)
refuses exactly the block-FP8 layouts the weight loader refuses, K/V projections included: a rank holds whole KV
heads (one head, replicated, when TP exceeds the KV heads), so head_dim 64 with 2 KV heads gives each rank 64 rows
at TP 2, not whole 128-row blocks; and k_proj must end on a block even at TP 1, because v_proj's scales follow it in
the merged q ‖ k ‖ v partition. Checkpoints are packed by the tests (fp8_testlib)."""

from __future__ import annotations

import pytest
import torch

from tests.checkpoint.fp8_testlib import block_fp8_config, block_fp8_pack, tiny_llama, write_checkpoint
from vdeploy.checkpoint.inspect import inspect_checkpoint
from vdeploy.checkpoint.tp_rules import tp_problem
from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed import ParallelState
from vdeploy.errors import CheckpointError, VdeployError
from vdeploy.models.loader import build_on_meta, load_model, load_safetensors, materialize

# name -> (model shape, FP8 block, TP sizes to try, the TP sizes the loader accepts)
SHAPES = {
    # 2 KV heads of 64: 128 K rows at TP 1, 64 per rank at TP 2, one 64-row head per rank at TP 4
    "kv_heads_of_64_block_128": (dict(hidden=256, heads=4, kv_heads=2, head_dim=64, intermediate=512), (128, 128),
                                 (1, 2, 4), {1}),
    # one KV head of 16 rows: k_proj ends inside a 32-row block, so v_proj cannot follow it, even at TP 1
    "one_kv_head_of_16_block_32": (dict(hidden=64, heads=4, kv_heads=1, head_dim=16, intermediate=128), (32, 32),
                                   (1, 2), set()),
    "whole_blocks_everywhere": (dict(hidden=256, heads=4, kv_heads=4, head_dim=64, intermediate=512), (64, 64),
                                (1, 2, 4), {1, 2, 4}),
    # one 64-row KV head replicated on 2 / 4 ranks: whole 64-row blocks
    "replicated_kv_head_block_64": (dict(hidden=256, heads=4, kv_heads=1, head_dim=64, intermediate=256), (64, 64),
                                    (1, 2, 4), {1, 2, 4}),
    # the MLP's 192 rows split in two: 96 per rank
    "intermediate_96_per_rank": (dict(hidden=128, heads=2, kv_heads=2, head_dim=64, intermediate=192), (64, 64),
                                 (1, 2), {1}),
    # 3 KV heads: TP 2 cannot share them; TP 3 and TP 6 (one head per 2 ranks) can
    "three_kv_heads": (dict(hidden=192, heads=6, kv_heads=3, head_dim=32, intermediate=384), (32, 32),
                       (1, 2, 3, 6), {1, 3, 6}),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for name, (shape, block, _, _) in SHAPES.items():
        model = tiny_llama(**shape)
        path = write_checkpoint(model, tmp_path_factory.mktemp(name) / "m", block_fp8_config(block),
                                lambda w, block=block: block_fp8_pack(w, block), dtype=torch.float32)
        out[name] = (path, model)
    return out


def _loader_refusal(path, cfg: ModelConfig, tp: int) -> str | None:
    """Every rank's weights through the layers' own weight loaders, without the planner's pre-check
    (vdeploy.checkpoint.validate): the first refusal, or None when every rank loads."""
    for rank in range(tp):
        try:
            model = build_on_meta(cfg, ParallelState(rank, tp), torch.float32)
            materialize(model, torch.device("cpu"))
            load_safetensors(model, [path / "model.safetensors"], show_progress=False)
        except VdeployError as e:
            return str(e)
    return None


@pytest.mark.parametrize("name", list(SHAPES))
def test_planner_verdict_is_the_loaders_outcome(checkpoints, name):
    path, _ = checkpoints[name]
    cfg = ModelConfig.from_path(path)
    _, _, tp_sizes, accepted = SHAPES[name]
    planner = {tp for tp in tp_sizes if tp_problem(cfg, tp) is None}
    loader = {tp for tp in tp_sizes if _loader_refusal(path, cfg, tp) is None}
    assert planner == loader == accepted


def test_kv_projection_split_is_refused_before_any_data_is_read(checkpoints):
    path, reference = checkpoints["kv_heads_of_64_block_128"]
    cfg = ModelConfig.from_path(path)
    reason = tp_problem(cfg, 2)
    assert reason == ("TP 2 splits model.layers.N.self_attn.k_proj.weight (128 output features, 2 KV heads) into 64 "
                      "per rank, not whole 128×128 FP8 blocks")
    # the loader's own refusal (without the pre-check) is about the same tensor's block scales
    assert "self_attn.k_proj.weight_scale_inv" in _loader_refusal(path, cfg, 2) or \
        "self_attn.v_proj.weight_scale_inv" in _loader_refusal(path, cfg, 2)
    plans = {p.tp: p for p in inspect_checkpoint(path, gpu_memory_gb=[80], tp_sizes=[1, 2]).plans[0].plans}
    assert plans[1].verdict == "fits"
    assert plans[2].verdict == "does_not_fit" and plans[2].advice.startswith(reason) and "--tp 1" in plans[2].advice
    with pytest.raises(CheckpointError) as refused:
        load_model(EngineConfig(model=str(path)), cfg, ParallelState(0, 2), "cpu", "float32", quiet=True)
    assert reason in str(refused.value) and "--tp 1" in refused.value.hint
    _assert_qkv_loaded(path, cfg, reference, tp=1)


def test_k_proj_ending_inside_a_block_is_refused_at_tp_1(checkpoints):
    path, _ = checkpoints["one_kv_head_of_16_block_32"]
    cfg = ModelConfig.from_path(path)
    reason = tp_problem(cfg, 1)
    assert reason == ("model.layers.N.self_attn.k_proj.weight (16 output features) does not end on a whole 32×32 "
                      "FP8 block, so the weight merged after it cannot be loaded")
    assert tp_problem(cfg, 2) == ("TP 2 gives each rank one whole KV head of model.layers.N.self_attn.k_proj.weight: "
                                  "16 output features, not whole 32×32 FP8 blocks")
    assert "v_proj.weight_scale_inv" in _loader_refusal(path, cfg, 1)
    with pytest.raises(CheckpointError, match="does not end on a whole 32×32 FP8 block"):
        load_model(EngineConfig(model=str(path)), cfg, ParallelState(), "cpu", "float32", quiet=True)


@pytest.mark.parametrize("tp", [1, 2])
def test_accepted_layout_loads_each_ranks_heads(checkpoints, tp):
    path, reference = checkpoints["whole_blocks_everywhere"]
    _assert_qkv_loaded(path, ModelConfig.from_path(path), reference, tp)


def _assert_qkv_loaded(path, cfg: ModelConfig, reference, tp: int) -> None:
    """Each rank's fused q ‖ k ‖ v holds its heads of the packed weights (dequantized at load on the CPU)."""
    attn = reference.model.layers[1].self_attn
    kv_part = max(1, cfg.num_kv_heads // tp) * cfg.head_dim
    q_part = cfg.num_heads * cfg.head_dim // tp
    for rank in range(tp):
        model = load_model(EngineConfig(model=str(path)), cfg, ParallelState(rank, tp), "cpu", "float32", quiet=True)
        kv_rank = rank * min(tp, cfg.num_kv_heads) // tp
        want = torch.cat([attn.q_proj.weight[rank * q_part:(rank + 1) * q_part],
                          attn.k_proj.weight[kv_rank * kv_part:(kv_rank + 1) * kv_part],
                          attn.v_proj.weight[kv_rank * kv_part:(kv_rank + 1) * kv_part]])
        torch.testing.assert_close(model.model.layers[1].self_attn.qkv_proj.weight.data, want, rtol=0, atol=0)
