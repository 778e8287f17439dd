"""Building the engine for a benchmark, driving a batch of requests through it with a time limit, and giving
its memory back before the next benchmark builds another."""

from __future__ import annotations

import gc
import random
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class EngineOptions:
    """Engine settings the suite passes through (None: the engine's default)."""

    device: str = "auto"
    dtype: str = "auto"
    block_size: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    enforce_eager: bool = False
    cpu_kv_bytes: int | None = None

    def engine_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class RunResult:
    """One batch of requests driven to completion (or to the time limit)."""

    num_requests: int
    completed: int
    elapsed_s: float
    input_tokens: int  # prompt tokens of the requests that were prefilled (all, unless truncated)
    output_tokens: int  # tokens generated within elapsed_s
    truncated: bool  # the time limit stopped the run; the rates cover the part that ran

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def total_tokens_per_s(self) -> float:
        """(prompt + generated) tokens per second."""
        return (self.input_tokens + self.output_tokens) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(output_tokens_per_s=self.output_tokens_per_s, total_tokens_per_s=self.total_tokens_per_s,
                 requests_per_s=self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0)
        return d


def open_llm(model_path: str, options: EngineOptions, *, seed: int = 0) -> Any:
    """The engine on random weights at the config's shapes."""
    from vdeploy.engine.llm import LLM

    return LLM(model_path, load_format="dummy", seed=seed, **options.engine_kwargs())


def release(llm: Any) -> None:
    """Close the engine (if any) and hand device memory back, so the next engine's KV budget sees all of it.
    Never raises: after a failed benchmark the device may be in a bad state, and the next one reports that."""
    import torch

    try:
        if llm is not None:
            llm.close()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001 - see the docstring
        print(f"[suite] releasing the engine failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def random_prompts(lengths: list[int], vocab_size: int, seed: int) -> list[list[int]]:
    """Random token ids away from the special tokens at both ends of most vocabularies. Each benchmark uses its
    own seed so that no prompt shares a prefix with another benchmark's (the prefix cache would skip it)."""
    rng = random.Random(seed)
    low, high = min(100, vocab_size // 8), max(min(vocab_size, 32_000) - 1, 2)
    return [[rng.randint(low, high) for _ in range(n)] for n in lengths]


def uniform_lengths(num: int, low: int, high: int, seed: int) -> list[tuple[int, int]]:
    """(input_len, output_len) pairs, each uniform in [low, high] (the nano-vllm benchmark's workload)."""
    rng = random.Random(seed)
    return [(rng.randint(low, high), rng.randint(low, high)) for _ in range(num)]


def run_requests(llm: Any, prompts: list[list[int]], output_lens: list[int], *,
                 time_limit_s: float | None = None, tag: str = "bench") -> RunResult:
    """Greedy, ignore_eos: every request generates exactly its output length. Continuous batching through the
    engine's step loop (what LLM.generate does), stopping at `time_limit_s` if given: the remaining requests are
    aborted and the result is marked truncated."""
    from vdeploy.engine.sampling_params import SamplingParams

    core = llm.core
    ids = [f"{tag}-{i}" for i in range(len(prompts))]
    generated = dict.fromkeys(ids, 0)
    finished: set[str] = set()
    start = time.perf_counter()
    for rid, prompt, n in zip(ids, prompts, output_lens):
        core.add_request(rid, prompt, SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True))
    truncated = False
    try:
        while len(finished) < len(ids):
            for out in core.step():
                generated[out.request_id] = len(out.outputs[0].token_ids)
                if out.finished:
                    finished.add(out.request_id)
            if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
                truncated = len(finished) < len(ids)
                break
    finally:
        elapsed = time.perf_counter() - start
        unfinished = [rid for rid in ids if rid not in finished]
        if unfinished:
            core.abort_request(unfinished)
            while core.has_unfinished_requests():  # let the aborts release their blocks
                core.step()
    prefilled = sum(len(p) for rid, p in zip(ids, prompts) if generated[rid] > 0)
    return RunResult(num_requests=len(ids), completed=len(finished), elapsed_s=elapsed, input_tokens=prefilled,
                     output_tokens=sum(generated.values()), truncated=truncated)
