"""Benchmark 1: single-stream decode against the memory-bandwidth limit.

One request, greedy, ignore_eos. The decode phase runs from the first generated token (which the prefill step
produces) to the last, so tokens/s = (output_len - 1) / (t_last - t_first). The limit: every step reads all the
weights once plus the KV cache of the tokens so far, at the copy bandwidth measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.engine.engine_runs import random_prompts
from vdeploy.bench.hardware import Ceilings
from vdeploy.bench.model_cost import model_cost
from vdeploy.bench.roofline import fraction_of, single_stream_decode_bound

TARGET_FRACTION_OF_BANDWIDTH = 0.85


def stream_timings(llm: Any, prompt: list[int], output_len: int) -> tuple[float, float, int]:
    """(time to first token, decode-phase seconds, tokens generated) of one streamed greedy request."""
    from vdeploy.engine.sampling_params import SamplingParams

    params = SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True)
    start = time.perf_counter()
    first = last = None
    generated = 0
    for out in llm.generate_stream(prompt, params):
        if out.outputs and out.outputs[0].delta_token_ids:
            now = time.perf_counter()
            first = now if first is None else first
            last = now
            generated = len(out.outputs[0].token_ids)
    if first is None or last is None:
        raise RuntimeError("the request produced no tokens")
    return first - start, last - first, generated


def run_decode(llm: Any, ceilings: Ceilings | None, *, prompt_len: int, output_len: int, repeats: int,
               seed: int) -> dict[str, Any]:
    if output_len < 2:
        raise ValueError("single-stream decode needs output_len >= 2 (the first token comes from the prefill)")
    vocab = llm.core.model_config.vocab_size
    # warm-up on its own prompt: kernel compilation and allocator growth are not decode speed
    (warm,) = random_prompts([prompt_len], vocab, seed)
    stream_timings(llm, warm, min(output_len, 32))
    runs = []
    for i in range(repeats):
        (prompt,) = random_prompts([prompt_len], vocab, seed + 1 + i)  # fresh: no prefix-cache hit
        ttft, decode_s, generated = stream_timings(llm, prompt, output_len)
        if generated != output_len:
            raise RuntimeError(f"generated {generated} tokens, expected {output_len} (ignore_eos)")
        runs.append({"ttft_s": ttft, "decode_s": decode_s, "tokens_per_s": (generated - 1) / decode_s})
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in runs)

    cost, cost_source = model_cost(llm)
    metrics: dict[str, Any] = {
        "decode_tokens_per_s": tokens_per_s,
        "ms_per_token": 1000 / tokens_per_s,
        "ttft_ms": 1000 * statistics.median(r["ttft_s"] for r in runs),
        "weight_bytes": cost.param_bytes,
        "weight_bytes_strict": cost.decode_weight_bytes_strict,
        "kv_bytes_per_token": cost.kv_bytes_per_token,
        "cost_source": cost_source,
    }
    if ceilings is not None:
        bandwidth = ceilings.copy_bandwidth_bytes_per_s
        bound = single_stream_decode_bound(cost.param_bytes, cost.kv_bytes_per_token, prompt_len, output_len,
                                           bandwidth)
        strict = single_stream_decode_bound(cost.decode_weight_bytes_strict, cost.kv_bytes_per_token, prompt_len,
                                            output_len, bandwidth)
        metrics.update(
            copy_bandwidth_bytes_per_s=bandwidth,
            bandwidth_bound_tokens_per_s=bound,
            fraction_of_bandwidth_bound=fraction_of(tokens_per_s, bound),
            bandwidth_bound_strict_tokens_per_s=strict,
            fraction_of_bandwidth_bound_strict=fraction_of(tokens_per_s, strict),
        )
    return {
        "workload": {"prompt_len": prompt_len, "output_len": output_len, "batch_size": 1, "repeats": repeats,
                     "temperature": 0.0, "ignore_eos": True, "seed": seed},
        "metrics": metrics,
        "runs": runs,
        "target": {"metric": "fraction_of_bandwidth_bound", "min": TARGET_FRACTION_OF_BANDWIDTH},
        "cost": cost.to_dict(),
    }
