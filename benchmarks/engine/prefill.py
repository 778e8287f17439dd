"""Benchmark 3: prefill against the matmul peak.

N prompts of T random tokens, max_tokens=1 (one sampled token each), through LLM.generate: the wall time covers
the chunked prefill steps, the lm_head on each prompt's last token and the sampling. FLOPs: 2 per weight per token
in the linear layers, the lm_head once per prompt, and causal attention (roofline.prefill_flops); the fraction is
of the dense matmul throughput measured in the same run, in the engine's dtype.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.engine.engine_runs import random_prompts
from vdeploy.bench.hardware import Ceilings
from vdeploy.bench.model_cost import model_cost
from vdeploy.bench.roofline import fraction_of, prefill_flops

TARGET_FRACTION_OF_MATMUL_PEAK = 0.6


def timed_prefill(llm: Any, prompts: list[list[int]]) -> float:
    from vdeploy.engine.sampling_params import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=1, ignore_eos=True)
    start = time.perf_counter()
    outputs = llm.generate(prompts, params)
    elapsed = time.perf_counter() - start
    if any(len(o.outputs[0].token_ids) != 1 for o in outputs):
        raise RuntimeError("a prefill request did not produce exactly one token")
    return elapsed


def allocator_counts() -> dict[str, int]:
    """The CUDA caching allocator's device calls so far (empty off a GPU): a timed run that calls cudaMalloc or
    retries an allocation (freeing the cache, which synchronizes) has host stalls no kernel time shows."""
    import torch

    if not torch.cuda.is_available():
        return {}
    stats = torch.cuda.memory_stats()
    return {k: int(stats.get(k, 0)) for k in ("num_alloc_retries", "num_device_alloc", "num_device_free")}


def run_prefill(llm: Any, ceilings: Ceilings | None, *, num_prompts: int, prompt_len: int, repeats: int,
                seed: int) -> dict[str, Any]:
    if prompt_len + 1 > llm.max_model_len:
        raise ValueError(f"prompt_len {prompt_len} + 1 exceeds the engine's max_model_len {llm.max_model_len}")
    vocab = llm.core.model_config.vocab_size
    lengths = [prompt_len] * num_prompts
    timed_prefill(llm, random_prompts(lengths, vocab, seed))  # warm-up: kernels compiled for these shapes
    # fresh prompts every repeat, so the prefix cache never serves a block
    allocator_before = allocator_counts()
    seconds = [timed_prefill(llm, random_prompts(lengths, vocab, seed + 1 + i)) for i in range(repeats)]
    allocator = {k: v - allocator_before.get(k, 0) for k, v in allocator_counts().items()}
    elapsed = statistics.median(seconds)
    tokens = num_prompts * prompt_len

    cost, cost_source = model_cost(llm)
    flops = prefill_flops(cost, lengths)
    achieved = flops["total"] / elapsed
    metrics: dict[str, Any] = {
        "elapsed_s": elapsed,
        "prefill_tokens_per_s": tokens / elapsed,
        "flops": flops,
        "achieved_flops_per_s": achieved,
        "achieved_tflop_per_s": round(achieved / 1e12, 3),
        "cost_source": cost_source,
        # over the timed runs: cudaMalloc/cudaFree calls and allocation retries (each retry frees the cache, a sync)
        "allocator_during_runs": allocator,
    }
    if ceilings is not None:
        metrics.update(matmul_peak_flops_per_s=ceilings.matmul_flops_per_s,
                       fraction_of_matmul_peak=fraction_of(achieved, ceilings.matmul_flops_per_s))
    return {
        "workload": {"num_prompts": num_prompts, "prompt_len": prompt_len, "max_tokens": 1, "repeats": repeats,
                     "seed": seed},
        "metrics": metrics,
        "runs_s": seconds,
        "target": {"metric": "fraction_of_matmul_peak", "min": TARGET_FRACTION_OF_MATMUL_PEAK},
        "cost": cost.to_dict(),
    }
