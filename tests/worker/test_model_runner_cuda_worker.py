"""The GPU path of the runner: Triton kernels, decode CUDA graphs, memory profiling, NCCL ranks (skipped on CPU).

Tiny fp32 Llama with head dim 64 (a shape the Triton kernels are tuned for); tokens are compared with the CPU
torch-reference path on the same weights."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from vdeploy.executor import create_executor
from vdeploy.executor.multiproc import MultiProcExecutor
from worker_checkpoints import engine_config, greedy_generate, model_config, save_tiny_checkpoint

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

PROMPTS = [[1, 5, 9, 33, 17, 80, 4], [1, 100, 3], [1, 7, 7, 7, 7, 7, 60], [1, 2, 3, 4, 5]]
STEPS = 16


@pytest.fixture(scope="module")
def gpu_llama(tmp_path_factory):
    path = save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llama-gpu"), "llama", seed=4, hidden_size=256,
                                num_attention_heads=4, num_key_value_heads=2, intermediate_size=512)
    cpu = create_executor(engine_config(path), model_config(path))
    try:
        cpu.initialize_kv_cache(cpu.determine_num_kv_blocks())
        expected = greedy_generate(cpu, PROMPTS, STEPS, chunk=4)
    finally:
        cpu.shutdown()
    return path, expected


def cuda_config(path, **overrides):
    return engine_config(path, device="cuda", **{"cache.block_size": 16, **overrides})


def run_on_cuda(path, **overrides) -> tuple[bool, list[list[int]]]:
    """(whether decode graphs were captured, greedy tokens)."""
    executor = create_executor(cuda_config(path, **overrides), model_config(path))
    try:
        executor.initialize_kv_cache(executor.determine_num_kv_blocks())
        return executor.runner.graphs is not None, greedy_generate(executor, PROMPTS, STEPS, chunk=4)
    finally:
        executor.shutdown()


def test_cuda_graphs_and_eager_match_the_cpu_reference(gpu_llama):
    path, expected = gpu_llama
    assert run_on_cuda(path, enforce_eager=True) == (False, expected)
    assert run_on_cuda(path) == (True, expected)


def test_graphs_are_captured_and_replayed(gpu_llama):
    path, expected = gpu_llama
    executor = create_executor(cuda_config(path), model_config(path))
    try:
        executor.initialize_kv_cache(64)
        graphs = executor.runner.graphs
        assert graphs is not None and graphs.batch_sizes == [1, 2, 4, 8]
        replays = []
        original = graphs.run
        graphs.run = lambda hb, fill=None: replays.append(hb.num_reqs) or original(hb, fill)
        assert greedy_generate(executor, PROMPTS, STEPS, chunk=4) == expected
        assert replays and set(replays) <= {1, 2, 3, 4}
    finally:
        executor.shutdown()


def test_memory_profile_sizes_the_kv_cache(gpu_llama):
    path, _ = gpu_llama
    base = cuda_config(path)
    cfg = replace(base, cache=replace(base.cache, num_gpu_blocks_override=None, gpu_memory_utilization=0.5))
    executor = create_executor(cfg, model_config(path))
    try:
        blocks = executor.determine_num_kv_blocks()
        _, total = torch.cuda.mem_get_info()
        assert 0 < blocks * executor.kv_cache_spec.bytes_per_block < 0.5 * total
    finally:
        executor.shutdown()


@pytest.mark.timeout(120)
def test_nccl_rank_process_matches(gpu_llama):
    path, expected = gpu_llama
    tp = 2 if torch.cuda.device_count() >= 2 else 1
    cfg = cuda_config(path, tp=tp)
    executor = MultiProcExecutor(cfg, model_config(path))  # TP=1 still goes through a NCCL rank process
    try:
        executor.initialize_kv_cache(executor.determine_num_kv_blocks())
        assert greedy_generate(executor, PROMPTS, STEPS, chunk=4) == expected
    finally:
        executor.shutdown()
