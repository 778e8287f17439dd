"""Benchmark 2: offline throughput, and HF transformers `generate` as the peer in the same run.

Workloads (greedy, ignore_eos, random token prompts, each with its own seed so no prefix is shared):
- fixed: N requests x (input_len in / output_len out), 1000 x 1000/1000 at full scale;
- nano: the nano-vllm benchmark's workload, N requests with input and output lengths uniform in [low, high];
- hf_slice: the reduced slice that HF runs (e.g. 32 x 1000/1000 at batch 32), also run through vdeploy, so the
  peer comparison is like for like.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.engine.engine_runs import RunResult, random_prompts, run_requests, uniform_lengths

TARGET_OUTPUT_TOKENS_PER_S = 10_000  # on the fixed 1000 x 1000/1000 workload, H100, Qwen2-7B shape
HF_PEER_NOTE = ("HF transformers model built from the same config.json with transformers' own random "
                "initialisation: its weights differ from the engine's dummy weights, which does not change speed")


@dataclass(frozen=True)
class ThroughputPlan:
    fixed_requests: int = 1000
    fixed_input_len: int = 1000
    fixed_output_len: int = 1000
    nano_requests: int = 256
    nano_low: int = 100
    nano_high: int = 1024
    hf_requests: int = 32
    hf_input_len: int = 1000
    hf_output_len: int = 1000
    hf_batch_size: int = 32
    time_limit_s: float | None = None  # per workload; a longer run is stopped and marked truncated
    seed: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _workloads(plan: ThroughputPlan, vocab: int) -> dict[str, tuple[list[list[int]], list[int], dict[str, Any]]]:
    nano = uniform_lengths(plan.nano_requests, plan.nano_low, plan.nano_high, plan.seed + 2)
    return {
        "fixed": (
            random_prompts([plan.fixed_input_len] * plan.fixed_requests, vocab, plan.seed + 1),
            [plan.fixed_output_len] * plan.fixed_requests,
            {"num_requests": plan.fixed_requests, "input_len": plan.fixed_input_len,
             "output_len": plan.fixed_output_len},
        ),
        "nano": (
            random_prompts([i for i, _ in nano], vocab, plan.seed + 3),
            [o for _, o in nano],
            {"num_requests": plan.nano_requests, "input_len": f"uniform {plan.nano_low}-{plan.nano_high}",
             "output_len": f"uniform {plan.nano_low}-{plan.nano_high}"},
        ),
        "hf_slice": hf_slice(plan, vocab),
    }


def hf_slice(plan: ThroughputPlan, vocab: int) -> tuple[list[list[int]], list[int], dict[str, Any]]:
    return (
        random_prompts([plan.hf_input_len] * plan.hf_requests, vocab, plan.seed + 4),
        [plan.hf_output_len] * plan.hf_requests,
        {"num_requests": plan.hf_requests, "input_len": plan.hf_input_len, "output_len": plan.hf_output_len},
    )


def run_engine_throughput(llm: Any, plan: ThroughputPlan, log: Any = print,
                          time_cap: Callable[[str], float | None] = lambda name: None) -> dict[str, Any]:
    """The three workloads through one engine; a failing workload is recorded and the next one still runs.
    `time_cap(workload)` may lower the plan's time limit (the suite's overall budget)."""
    vocab = llm.core.model_config.vocab_size
    warm_n = min(16, plan.fixed_requests)
    run_requests(llm, random_prompts([min(128, plan.fixed_input_len)] * warm_n, vocab, plan.seed),
                 [8] * warm_n, tag="warmup")
    results: dict[str, Any] = {}
    for name, (prompts, out_lens, shape) in _workloads(plan, vocab).items():
        start = time.perf_counter()
        try:
            limits = [t for t in (plan.time_limit_s, time_cap(name)) if t is not None]
            run = run_requests(llm, prompts, out_lens, time_limit_s=min(limits, default=None), tag=name)
            results[name] = {"workload": shape, **run.to_dict()}
            log(f"  vdeploy {name}: {run.output_tokens_per_s:,.1f} output tok/s, "
                f"{run.total_tokens_per_s:,.1f} total tok/s in {run.elapsed_s:.1f} s"
                + (" (truncated at the time limit)" if run.truncated else ""))
        except Exception as e:  # noqa: BLE001 - one workload's failure must not lose the others
            results[name] = {"workload": shape, "error": f"{type(e).__name__}: {e}",
                             "elapsed_s": round(time.perf_counter() - start, 2)}
            log(f"  vdeploy {name}: FAILED {type(e).__name__}: {e}")
    return results


def run_hf_peer(model_path: str, device: str, dtype: str, plan: ThroughputPlan, vocab: int,
                time_limit_s: float | None = None) -> dict[str, Any]:
    """The HF slice through transformers `generate`: left-padded batches, greedy, exactly output_len new tokens
    (min_new_tokens forbids EOS), stopped by `max_time` at the plan's time limit."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    prompts, out_lens, shape = hf_slice(plan, vocab)
    limits = [t for t in (plan.time_limit_s, time_limit_s) if t is not None]
    limit = min(limits, default=None)
    torch_device = torch.device(device)
    torch_dtype = getattr(torch, dtype)
    start = time.perf_counter()
    config = AutoConfig.from_pretrained(model_path)
    with torch_device:  # initialise on the device: a 7B random init on the host would take minutes
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    model.eval()
    startup = time.perf_counter() - start
    pad_id = 0
    generated = completed = prefilled = 0
    truncated = False
    with torch.inference_mode():
        model.generate(torch.tensor([prompts[0][:16]], device=torch_device), max_new_tokens=2, do_sample=False,
                       pad_token_id=pad_id)  # warm-up
        _sync(torch_device)
        begin = time.perf_counter()
        for i in range(0, len(prompts), plan.hf_batch_size):
            remaining = None if limit is None else limit - (time.perf_counter() - begin)
            if remaining is not None and remaining <= 0:
                truncated = True
                break
            batch, lens = prompts[i:i + plan.hf_batch_size], out_lens[i:i + plan.hf_batch_size]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [B, S] left-padded
            mask = torch.zeros_like(ids)  # [B, S]
            for row, p in enumerate(batch):
                ids[row, width - len(p):] = torch.tensor(p)
                mask[row, width - len(p):] = 1
            new = max(lens)
            out = model.generate(ids.to(torch_device), attention_mask=mask.to(torch_device), max_new_tokens=new,
                                 min_new_tokens=new, do_sample=False, pad_token_id=pad_id, max_time=remaining)
            made = out.shape[1] - width  # [B, S + made]
            generated += made * len(batch)
            prefilled += sum(map(len, batch))
            if made < new:
                truncated = True
                break
            completed += len(batch)
        _sync(torch_device)
        elapsed = time.perf_counter() - begin
    attn = getattr(model.config, "_attn_implementation", None)
    del model
    run = RunResult(num_requests=len(prompts), completed=completed, elapsed_s=elapsed,
                    input_tokens=prefilled, output_tokens=generated, truncated=truncated)
    return {"workload": shape, **run.to_dict(), "batch_size": plan.hf_batch_size, "startup_s": round(startup, 2),
            "attn_implementation": attn, "dtype": dtype, "device": device, "note": HF_PEER_NOTE}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
