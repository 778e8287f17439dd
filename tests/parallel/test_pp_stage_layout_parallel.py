"""How a pipeline stage splits a model: balanced contiguous layers, embedding on the first stage, norm + LM head on
the last, other stages' checkpoint tensors skipped, a KV cache for the stage's layers only."""

from __future__ import annotations

import pytest
import torch

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint
from vdeploy.config import CacheConfig, EngineConfig, ModelConfig, ParallelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.errors import ConfigError
from vdeploy.models.pipeline_stage import (
    PipelineStage,
    StagePlaceholder,
    pp_layer_range,
)
from vdeploy.worker.model_runner import kv_cache_spec_for


def test_layer_ranges_are_balanced_contiguous_and_cover_every_layer():
    assert [pp_layer_range(61, r, 2) for r in range(2)] == [(0, 31), (31, 61)]
    assert [pp_layer_range(10, r, 4) for r in range(4)] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert pp_layer_range(28, 0, 1) == (0, 28)
    with pytest.raises(ConfigError, match="cannot be split"):
        pp_layer_range(2, 0, 3)


def test_checkpoint_tensors_go_to_their_stage():
    first, last = PipelineStage(4, 0, 2), PipelineStage(4, 1, 2)
    assert first.owns_checkpoint_tensor("model.embed_tokens.weight")
    assert not last.owns_checkpoint_tensor("model.embed_tokens.weight")
    assert first.owns_checkpoint_tensor("model.layers.1.mlp.down_proj.weight")
    assert not first.owns_checkpoint_tensor("model.layers.2.mlp.down_proj.weight")
    assert last.owns_checkpoint_tensor("model.layers.2.self_attn.q_proj.weight")
    assert last.owns_checkpoint_tensor("model.layers.4.eh_proj.weight")  # beyond the model (MTP): the last's call
    for name in ("model.norm.weight", "lm_head.weight"):
        assert last.owns_checkpoint_tensor(name) and not first.owns_checkpoint_tensor(name)


@pytest.mark.parametrize("family", ["llama", "deepseek_v3"])
def test_a_stage_builds_and_loads_only_its_share(tmp_path, family):
    from vdeploy.models.loader import load_model

    path = write_tiny_checkpoint(tmp_path, family, dtype="float32", num_shards=2,
                                 config_overrides={"num_hidden_layers": 3})
    cfg = ModelConfig.from_path(path)
    engine = EngineConfig(model=str(path), dtype="float32", device="cpu")
    full = load_model(engine, cfg, ParallelState(), "cpu", quiet=True)
    stages = [load_model(engine, cfg, ParallelState(pp_rank=r, pp_size=2), "cpu", quiet=True) for r in range(2)]
    first, last = (dict(m.named_parameters()) for m in stages)
    assert any(n.startswith("model.embed_tokens.") for n in first)
    assert not any(n.startswith(("model.embed_tokens.", "model.layers.0.")) for n in last)
    assert {n for n in last if n.startswith(("model.norm.", "lm_head."))} == {"model.norm.weight", "lm_head.weight"}
    assert not any(n.startswith(("model.norm.", "lm_head.", "model.layers.2.")) for n in first)
    assert isinstance(stages[0].model.layers[2], StagePlaceholder)
    assert isinstance(stages[1].model.layers[1], StagePlaceholder)
    # the stages together hold exactly the full model's weights, each loaded from the checkpoint
    reference = dict(full.named_parameters())
    assert set(first) | set(last) == set(reference) and not set(first) & set(last)
    for name, param in {**first, **last}.items():
        torch.testing.assert_close(param, reference[name], rtol=0, atol=0)
    other_stage = {"llama": "model.layers.2.mlp.down_proj.weight",
                   "deepseek_v3": "model.layers.2.self_attn.kv_b_proj.weight"}[family]
    assert stages[0].map_checkpoint_name(other_stage) is None


def test_tied_embeddings_give_the_last_stage_its_own_head(tmp_path):
    from vdeploy.models.loader import load_model

    path = write_tiny_checkpoint(tmp_path, "llama", dtype="float32", num_shards=1,
                                 config_overrides={"tie_word_embeddings": True})
    cfg = ModelConfig.from_path(path)
    engine = EngineConfig(model=str(path), dtype="float32", device="cpu")
    full = load_model(engine, cfg, ParallelState(), "cpu", quiet=True)
    last = load_model(engine, cfg, ParallelState(pp_rank=1, pp_size=2), "cpu", quiet=True)
    torch.testing.assert_close(last.lm_head.weight, full.model.embed_tokens.weight, rtol=0, atol=0)


def test_kv_cache_spec_holds_the_stage_layers_only(tmp_path):
    path = write_tiny_checkpoint(tmp_path, "llama", dtype="float32", num_shards=1,
                                 config_overrides={"num_hidden_layers": 5})
    cfg = ModelConfig.from_path(path)
    engine = EngineConfig(model=str(path), cache=CacheConfig(block_size=4),
                          parallel=ParallelConfig(tensor_parallel_size=2, pipeline_parallel_size=2))
    specs = [kv_cache_spec_for(engine, cfg, r) for r in range(2)]
    assert [s.num_layers for s in specs] == [3, 2]
    assert specs[0].bytes_per_block == 3 * specs[1].bytes_per_block // 2


@pytest.mark.parametrize("name,tp,pp", [("deepseek-r1", 8, 2), ("deepseek-r1-distill-llama-70b", 8, 2),
                                        ("deepseek-r1-distill-qwen-32b", 4, 3)])
def test_memory_planner_sizes_the_kv_cache_of_the_largest_stage_like_the_ranks(name, tp, pp):
    from vdeploy.checkpoint.planner import plan_memory
    from vdeploy.model_configs import config_path

    cfg = ModelConfig.from_path(config_path(name))
    engine = EngineConfig(model="unused", cache=CacheConfig(block_size=16, kv_cache_dtype="bfloat16"),
                          parallel=ParallelConfig(tensor_parallel_size=tp, pipeline_parallel_size=pp))
    stage_bytes = [kv_cache_spec_for(engine, cfg, r).bytes_per_token for r in range(pp)]
    plan = plan_memory(cfg, tp=tp, pp=pp, gpu_memory_bytes=80 << 30)
    assert plan.kv_bytes_per_token_per_gpu == max(stage_bytes) == stage_bytes[0]
