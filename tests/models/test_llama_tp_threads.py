"""Tensor-parallel forward without processes: each rank runs in a thread and the collectives exchange tensors
through shared memory; logits must equal the single-rank model's (fp32)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from vdeploy.config import EngineConfig, ModelConfig
from vdeploy.distributed.parallel_state import ParallelState
from vdeploy.models.loader import load_model
from vdeploy.testing.reference_runner import ReferenceRunner

TINY = dict(vocab_size=321, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128)  # vocab 321: the last vocab partition is padded


class _Exchange:
    def __init__(self, size: int):
        self.barrier = threading.Barrier(size, timeout=60)
        self.slots: list[Any] = [None] * size


@dataclass
class ThreadParallelState(ParallelState):
    exchange: _Exchange = field(default=None, repr=False)

    def _gather(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.exchange.slots[self.tp_rank] = x.clone()
        self.exchange.barrier.wait()
        parts = list(self.exchange.slots)
        self.exchange.barrier.wait()  # everyone has read before the next collective overwrites
        return parts

    def all_reduce(self, x):
        x.copy_(torch.stack(self._gather(x)).sum(0))
        return x

    def all_gather(self, x, dim=-1):
        return torch.cat(self._gather(x), dim=dim)


def run_thread_ranks(tp: int, fn) -> dict[int, Any]:
    """fn(parallel_state) on tp thread ranks that share one exchange; {rank: result}. A rank that raises aborts
    the barrier (the others stop waiting) and the error is raised here."""
    exchange, results, errors = _Exchange(tp), {}, []

    def target(rank):
        try:
            results[rank] = fn(ThreadParallelState(rank, tp, exchange=exchange))
        except BaseException as e:  # surface thread failures in the test
            errors.append(e)
            exchange.barrier.abort()

    threads = [threading.Thread(target=target, args=(rank,)) for rank in range(tp)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.fixture(scope="module", params=["qwen2", "llama_tied"])
def checkpoint(request, tmp_path_factory):
    torch.manual_seed(7)
    if request.param == "qwen2":
        hf = Qwen2ForCausalLM(Qwen2Config(**TINY))
    else:
        hf = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=True))
    with torch.no_grad():
        for param in hf.parameters():
            param.normal_(0.0, 0.08)
    path = tmp_path_factory.mktemp(request.param)
    hf.float().save_pretrained(path)
    return path


def _run_rank(path, parallel, prompts, results):
    cfg = ModelConfig.from_path(path)
    model = load_model(EngineConfig(model=str(path)), cfg, parallel, "cpu", "float32", quiet=True)
    kv_heads = model.model.layers[0].self_attn.attn.num_kv_heads
    runner = ReferenceRunner(model, num_kv_heads=kv_heads, head_dim=cfg.head_dim, num_layers=cfg.num_layers,
                             num_blocks=32, block_size=4)
    first = runner.step(prompts)
    second = runner.step({seq_id: [5] for seq_id in prompts})  # a decode step through the paged cache
    results[parallel.tp_rank] = (first, second)


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_logits_equal_single_rank(checkpoint, tp):
    prompts = {"a": [1, 2, 3, 4, 5, 6, 7], "b": [300, 320, 0]}
    single: dict[int, Any] = {}
    _run_rank(checkpoint, ParallelState(), prompts, single)
    results: dict[int, Any] = {}
    run_thread_ranks(tp, lambda parallel: _run_rank(checkpoint, parallel, prompts, results))
    for rank in range(tp):
        for step in range(2):
            for seq_id in prompts:
                torch.testing.assert_close(results[rank][step][seq_id], single[0][step][seq_id],
                                           atol=1e-5, rtol=1e-5)
