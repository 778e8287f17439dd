"""Pipeline parallelism over gloo with real rank processes (one host): greedy tokens identical to one rank (fp32)
for tiny Llama (3 layers: unequal stages; tied embeddings too) and tiny DeepSeek-V3 (MLA + MoE)."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from parallel_testlib import greedy_tokens

from vdeploy.checkpoint.synthetic import write_tiny_checkpoint


@pytest.fixture(scope="module", params=["untied", "tied"])
def llama(request, tmp_path_factory):
    path = write_tiny_checkpoint(tmp_path_factory.mktemp(f"llama-{request.param}"), "llama", dtype="float32",
                                 num_shards=2, config_overrides={"num_hidden_layers": 3,
                                                                 "tie_word_embeddings": request.param == "tied"})
    return path, greedy_tokens(path)


@pytest.fixture(scope="module")
def deepseek(tmp_path_factory):
    from tests.deepseek.deepseek_fixtures import save_hf_model, tiny_v3_config

    path = tmp_path_factory.mktemp("deepseek-v3")
    save_hf_model(tiny_v3_config(), path)  # 3 layers: one dense, two MoE
    return path, greedy_tokens(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tp,pp", [(1, 2), (2, 2)])
def test_llama_pipeline_greedy_matches_single_rank(llama, tp, pp):
    path, expected = llama
    assert greedy_tokens(path, tensor_parallel_size=tp, pipeline_parallel_size=pp) == expected
    assert not [p for p in mp.active_children() if p.name.startswith("vdeploy-rank")]  # all ranks reaped


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tp,pp", [(1, 2), (2, 2)])
def test_deepseek_pipeline_greedy_matches_single_rank(deepseek, tp, pp):
    path, expected = deepseek
    assert greedy_tokens(path, tensor_parallel_size=tp, pipeline_parallel_size=pp) == expected


@pytest.mark.timeout(60)
def test_three_stages_and_the_kv_block_count_is_the_minimum_over_stages(llama, tmp_path):
    from vdeploy.config import ModelConfig
    from vdeploy.engine.llm import build_engine_config
    from vdeploy.executor import create_executor

    path, expected = llama
    assert greedy_tokens(path, pipeline_parallel_size=3) == expected
    # a byte budget on CPU: the stage with the most layers (2 of 3 with pp=2) holds the fewest blocks
    config = build_engine_config(str(path), dtype="float32", device="cpu", block_size=4, cpu_kv_cache_bytes=1 << 20,
                                 pipeline_parallel_size=2)
    with create_executor(config, ModelConfig.from_path(path)) as executor:
        per_layer_block = executor.kv_cache_spec.bytes_per_block // executor.kv_cache_spec.num_layers
        assert executor.kv_cache_spec.num_layers == 2
        assert executor.determine_num_kv_blocks() == (1 << 20) // (2 * per_layer_block)
