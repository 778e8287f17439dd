"""Tensor parallelism over gloo with real rank processes: greedy tokens identical to one rank (fp32)."""

from __future__ import annotations

import multiprocessing as mp

import pytest
from worker_checkpoints import engine_config, greedy_generate, model_config, save_tiny_checkpoint

from vdeploy.executor import create_executor
from vdeploy.executor.multiproc import MultiProcExecutor

PROMPTS = [[1, 5, 9, 33, 17, 80, 4], [1, 100, 3, 3, 3], [1, 42]]
STEPS = 10


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def family_reference(request, tmp_path_factory):
    path = save_tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param, seed=3)
    single = create_executor(engine_config(path), model_config(path))
    try:
        single.initialize_kv_cache(single.determine_num_kv_blocks())
        tokens = greedy_generate(single, PROMPTS, STEPS, chunk=4)
    finally:
        single.shutdown()
    return path, tokens


@pytest.mark.parametrize("tp", [2, 4])
@pytest.mark.timeout(60)
def test_tp_greedy_tokens_match_single_rank(family_reference, tp):
    path, expected = family_reference
    executor = create_executor(engine_config(path, tp=tp), model_config(path))
    try:
        assert isinstance(executor, MultiProcExecutor)
        assert executor.kv_cache_spec.num_kv_heads == 4 // tp
        num_blocks = executor.determine_num_kv_blocks()
        assert num_blocks == 128
        executor.initialize_kv_cache(num_blocks)
        assert greedy_generate(executor, PROMPTS, STEPS, chunk=4) == expected
    finally:
        executor.shutdown()
    assert not any(p.is_alive() for p in mp.active_children())
